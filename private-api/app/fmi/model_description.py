"""Parse an FMU's modelDescription.xml (FMI 2.0 or 3.0) into JSON-able pydantic models.

The XML comes from an untrusted upload, so it is parsed with defusedxml and any DTD,
entity declaration or external reference is refused outright, and its variables are counted
(keeping nothing in memory) before the tree is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Literal, cast, get_args
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree
from pydantic import BaseModel, ConfigDict, ValidationError

from app.errors import InvalidModelDescription, TooManyVariables, UnsupportedFMIVersion

FMIVersion = Literal["2.0", "3.0"]
Causality = Literal[
    "parameter", "calculatedParameter", "input", "output", "local", "independent", "structuralParameter"
]
Variability = Literal["constant", "fixed", "tunable", "discrete", "continuous"]
Initial = Literal["exact", "approx", "calculated"]
VariableType = Literal[
    "Real", "Integer", "Boolean", "String", "Enumeration",
    "Float64", "Float32", "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
    "Binary", "Clock",
]  # fmt: skip
Kind = Literal["real", "integer", "boolean", "string", "enumeration", "other"]
Scalar = bool | int | float | str

_FMI2_TYPES = frozenset({"Real", "Integer", "Boolean", "String", "Enumeration"})
_FMI3_TYPES = frozenset(get_args(VariableType)) - {"Real", "Integer"}
_CAUSALITIES = frozenset(get_args(Causality))
_VARIABILITIES = frozenset(get_args(Variability))
_INITIALS = frozenset(get_args(Initial))
_KINDS: dict[str, Kind] = {
    "Real": "real", "Float64": "real", "Float32": "real",
    "Integer": "integer", "Int8": "integer", "UInt8": "integer", "Int16": "integer",
    "UInt16": "integer", "Int32": "integer", "UInt32": "integer", "Int64": "integer",
    "UInt64": "integer",
    "Boolean": "boolean", "String": "string", "Enumeration": "enumeration",
}  # fmt: skip
_PARAMETERS = frozenset({"parameter", "calculatedParameter", "structuralParameter"})
# FMI's default for `initial` by variability and causality; a missing pair is illegal
# (the same table FMPy applies, so what we accept FMPy can load).
_DEFAULT_INITIAL: dict[str, dict[str, Initial | None]] = {
    "constant": {"output": "exact", "local": "exact"},
    "fixed": {
        "structuralParameter": "exact", "parameter": "exact", "calculatedParameter": "calculated", "local": "calculated"
    },
    "tunable": {
        "structuralParameter": "exact", "parameter": "exact", "calculatedParameter": "calculated", "local": "calculated"
    },
    "discrete": {"input": "exact", "output": "calculated", "local": "calculated"},
    "continuous": {"input": "exact", "output": "calculated", "local": "calculated", "independent": None},
}  # fmt: skip
_FMI3_VERSION = re.compile(r"^3\.0(\.\d+)?$")


class Variable(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    value_reference: int
    causality: Causality = "local"
    variability: Variability = "continuous"
    type: VariableType
    unit: str | None = None
    start: Scalar | list[Scalar] | None = None
    description: str | None = None
    initial: Initial | None = None
    # None for scalars; the resolved dimensions of an FMI 3 array variable otherwise.
    shape: list[int] | None = None


class DefaultExperiment(BaseModel):
    model_config = ConfigDict(frozen=True)

    start_time: float | None = None
    stop_time: float | None = None
    tolerance: float | None = None
    step_size: float | None = None


class ModelInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    fmi_version: FMIVersion
    model_name: str
    description: str | None = None
    generation_tool: str | None = None
    generation_date_and_time: str | None = None
    guid: str  # FMI 2 guid or FMI 3 instantiationToken
    supports_model_exchange: bool
    supports_co_simulation: bool
    model_identifiers: dict[str, str]
    default_experiment: DefaultExperiment | None = None
    variables: list[Variable] = []
    # Folders under binaries/ that hold a shared library, as named in the archive.
    platforms: list[str] = []
    # Shared library file names per platform folder, for the host-platform check.
    binaries: dict[str, list[str]] = {}

    @cached_property
    def _variables_by_name(self) -> dict[str, Variable]:
        # Run validation looks names up one by one in models with up to ~1e5 variables. Not
        # refreshed by model_copy(update={"variables": ...}): build a new model for that.
        return {v.name: v for v in self.variables}

    def variable(self, name: str) -> Variable | None:
        return self._variables_by_name.get(name)

    @staticmethod
    def kind(v: Variable) -> Kind:
        return _KINDS.get(v.type, "other")

    @staticmethod
    def settable(v: Variable) -> bool:
        """Whether FMPy's ``simulate_fmu(start_values=...)`` may set ``v`` (a subset of its rules)."""
        if v.shape is not None or ModelInfo.kind(v) == "other":
            return False
        if v.causality == "input":
            return True
        if v.variability == "constant" or v.causality in ("calculatedParameter", "independent"):
            return False
        return v.initial in ("exact", "approx")


def parse_model_description(xml: bytes, *, max_variables: int | None = None) -> ModelInfo:
    """``max_variables``: refuse a model declaring more (``TooManyVariables``) before building it."""
    if max_variables is not None:
        _count_variables(xml, max_variables)
    root = _parse_xml(xml)
    version = _fmi_version(root)
    variables = _fmi2_variables(root) if version == "2.0" else _fmi3_variables(root)
    _check_unique_names(variables)
    identifiers = _model_identifiers(root)
    _check_column_widths(root)
    try:
        return ModelInfo(
            fmi_version=version,
            model_name=_required(root, "modelName"),
            description=root.get("description"),
            generation_tool=root.get("generationTool"),
            generation_date_and_time=root.get("generationDateAndTime"),
            guid=_required(root, "guid" if version == "2.0" else "instantiationToken"),
            supports_model_exchange="ModelExchange" in identifiers,
            supports_co_simulation="CoSimulation" in identifiers,
            model_identifiers=identifiers,
            default_experiment=_default_experiment(root),
            variables=variables,
        )
    except ValidationError as exc:
        raise InvalidModelDescription(f"modelDescription.xml is not valid: {exc}") from exc


class _VariableCounter:
    """An XML parser target that counts the children of <ModelVariables> and keeps no element."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._depth = 0
        self._in_variables = False

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._depth += 1
        if self._depth == 2:
            self._in_variables = tag == "ModelVariables"
        elif self._depth == 3 and self._in_variables:
            self.count += 1
            if self.count > self.limit:
                # Raised inside the parser, so nothing past the limit is even read.
                raise TooManyVariables(
                    f"modelDescription.xml declares more than {self.limit} variables; "
                    f"at most {self.limit} are allowed.", limit=self.limit)

    def end(self, tag: str) -> None:
        self._depth -= 1

    def close(self) -> int:
        return self.count


def _count_variables(xml: bytes, limit: int) -> int:
    counter = _VariableCounter(limit)
    with _xml_errors():
        parser = defusedxml.ElementTree.DefusedXMLParser(
            target=counter, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        parser.feed(xml)
        parser.close()
    return counter.count


@contextmanager
def _xml_errors() -> Iterator[None]:
    try:
        yield
    except defusedxml.DefusedXmlException as exc:
        raise InvalidModelDescription(
            f"modelDescription.xml must not contain a DTD, entities or external references ({exc})."
        ) from exc
    except ParseError as exc:
        raise InvalidModelDescription(f"modelDescription.xml is not well-formed XML: {exc}.") from exc


def _parse_xml(xml: bytes) -> Element:
    with _xml_errors():
        root = defusedxml.ElementTree.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    root = cast(Element, root)
    if root.tag != "fmiModelDescription":
        raise InvalidModelDescription(f"The root element is <{root.tag}>, not <fmiModelDescription>.")
    return root


def _fmi_version(root: Element) -> FMIVersion:
    version = root.get("fmiVersion", "")
    if version == "2.0":
        return "2.0"
    if _FMI3_VERSION.match(version):
        return "3.0"
    raise UnsupportedFMIVersion(
        f"FMI version {version or '(missing)'} is not supported; upload an FMI 2.0 or 3.0 FMU.",
        fmi_version=version or None,
    )


def _model_identifiers(root: Element) -> dict[str, str]:
    identifiers = {
        interface: _required(element, "modelIdentifier")
        for interface in ("ModelExchange", "CoSimulation")
        if (element := root.find(interface)) is not None
    }
    if not identifiers:
        raise InvalidModelDescription("The FMU implements neither Model Exchange nor Co-Simulation.")
    return identifiers


def _default_experiment(root: Element) -> DefaultExperiment | None:
    element = root.find("DefaultExperiment")
    if element is None:
        return None
    return DefaultExperiment(
        start_time=_optional_float(element, "startTime"),
        stop_time=_optional_float(element, "stopTime"),
        tolerance=_optional_float(element, "tolerance"),
        step_size=_optional_float(element, "stepSize"),
    )


def _fmi2_variables(root: Element) -> list[Variable]:
    units = _declared_units(root, "TypeDefinitions/SimpleType", lambda t: next(iter(t), None))
    return [_fmi2_variable(element, units) for element in _model_variables(root)]


def _fmi2_variable(element: Element, units: dict[str, str]) -> Variable:
    name = _required(element, "name")
    value = next((child for child in element if child.tag in _FMI2_TYPES), None)
    if value is None:
        raise _invalid_variable(name, "has no Real, Integer, Boolean, String or Enumeration element")
    type_ = cast(VariableType, value.tag)
    causality = _causality(element, name)
    variability = _variability(element, "continuous", name)
    start = value.get("start")
    return Variable(
        name=name,
        value_reference=_value_reference(element, name),
        causality=causality,
        variability=variability,
        type=type_,
        unit=_unit(value, units),
        start=None if start is None else _json_safe(_scalar(type_, start, name)),
        description=element.get("description"),
        initial=_initial(element, causality, variability, name),
    )


def _fmi3_variables(root: Element) -> list[Variable]:
    units = _declared_units(root, "TypeDefinitions/*", lambda t: t)
    elements = _model_variables(root)
    return _resolve_shapes([_fmi3_variable(element, units) for element in elements], elements)


def _fmi3_variable(element: Element, units: dict[str, str]) -> Variable:
    name = _required(element, "name")
    if element.tag not in _FMI3_TYPES:
        raise _invalid_variable(name, f"has the unknown type <{element.tag}>")
    type_ = cast(VariableType, element.tag)
    causality = _causality(element, name)
    variability = _variability(element, _fmi3_default_variability(type_, causality), name)
    is_array = element.find("Dimension") is not None
    return Variable(
        name=name,
        value_reference=_value_reference(element, name),
        causality=causality,
        variability=variability,
        type=type_,
        unit=_unit(element, units),
        start=_json_safe(_fmi3_start(element, type_, name, is_array=is_array)),
        description=element.get("description"),
        initial=_initial(element, causality, variability, name),
        shape=[] if is_array else None,  # placeholder until _resolve_shapes sees every variable
    )


def _fmi3_default_variability(type_: str, causality: str) -> Variability:
    if causality in _PARAMETERS:
        return "fixed"
    return "continuous" if type_ in ("Float32", "Float64") else "discrete"


def _fmi3_start(element: Element, type_: str, name: str, *, is_array: bool) -> Scalar | list[Scalar] | None:
    if type_ in ("String", "Binary"):
        # FMI 3 puts these starts in <Start value="..."/> children, one per array element.
        raw = [start.get("value", "") for start in element.findall("Start")]
    else:
        attribute = element.get("start")
        raw = [] if attribute is None else attribute.split() if is_array else [attribute]
    if not raw:
        return None
    values = [_scalar(type_, text, name) for text in raw]
    return values if is_array else values[0]


def _resolve_shapes(variables: list[Variable], elements: list[Element]) -> list[Variable]:
    # A dimension is a literal size or the value reference of a structural parameter's start.
    by_reference = {v.value_reference: v for v in variables}
    resolved = []
    for variable, element in zip(variables, elements, strict=True):
        if variable.shape is None:
            resolved.append(variable)
            continue
        shape = [_dimension(d, by_reference, variable.name) for d in element.findall("Dimension")]
        resolved.append(variable.model_copy(update={"shape": shape}))
    return resolved


def _dimension(element: Element, by_reference: dict[int, Variable], name: str) -> int:
    if (start := element.get("start")) is not None:
        return _int(start, name)
    reference = _int(element.get("valueReference", ""), name)
    size = by_reference[reference].start if reference in by_reference else None
    if not isinstance(size, int) or isinstance(size, bool):
        raise _invalid_variable(
            name, f"has a dimension referring to value reference {reference}, which has no integer start"
        )
    return size


def _model_variables(root: Element) -> list[Element]:
    container = root.find("ModelVariables")
    if container is None:
        raise InvalidModelDescription("modelDescription.xml has no <ModelVariables> element.")
    return list(container)


def _declared_units(root: Element, path: str, value_of: Callable[[Element], Element | None]) -> dict[str, str]:
    """Map declared type names to their unit (FMI 2 nests the type element, FMI 3 does not)."""
    units: dict[str, str] = {}
    for definition in root.findall(path):
        value = value_of(definition)
        name, unit = definition.get("name"), None if value is None else value.get("unit")
        if name is not None and unit is not None:
            units[name] = unit
    return units


def _unit(value: Element, units: dict[str, str]) -> str | None:
    unit = value.get("unit")
    if unit is None and (declared := value.get("declaredType")) is not None:
        unit = units.get(declared)
    return unit


def _initial(element: Element, causality: str, variability: str, name: str) -> Initial | None:
    if element.get("initial") is not None:
        return cast(Initial, _choice(element, "initial", _INITIALS, "exact", name))
    defaults = _DEFAULT_INITIAL[variability]
    if causality not in defaults:
        raise _invalid_variable(
            name, f"combines causality {causality!r} with variability {variability!r}, which FMI forbids"
        )
    return defaults[causality]


def _causality(element: Element, name: str) -> Causality:
    return cast(Causality, _choice(element, "causality", _CAUSALITIES, "local", name))


def _variability(element: Element, default: Variability, name: str) -> Variability:
    return cast(Variability, _choice(element, "variability", _VARIABILITIES, default, name))


def _choice(element: Element, attribute: str, allowed: frozenset[str], default: str, name: str) -> str:
    value = element.get(attribute, default)
    if value not in allowed:
        raise _invalid_variable(name, f"has the unknown {attribute} {value!r}")
    return value


def _scalar(type_: str, text: str, name: str) -> Scalar:
    kind = _KINDS.get(type_, "other")
    if kind == "real" or type_ == "Clock":
        return _float(text, name)
    if kind in ("integer", "enumeration"):
        return _int(text, name)
    if kind == "boolean":
        return _bool(text, name)
    return text


def _value_reference(element: Element, name: str) -> int:
    return _int(_required(element, "valueReference"), name)


def _float(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise _invalid_variable(name, f"has {text!r} where a number is required") from None


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _invalid_variable(name, f"has {text!r} where an integer is required") from None


def _bool(text: str, name: str) -> bool:
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise _invalid_variable(name, f"has {text!r} where a Boolean is required")


def _optional_float(element: Element, attribute: str) -> float | None:
    text = element.get(attribute)
    value = None if text is None else _float(text, f"<{element.tag}>")
    return value if value is None or math.isfinite(value) else None  # see _json_safe


def _json_safe(start: Scalar | list[Scalar] | None) -> Scalar | list[Scalar] | None:
    """Drop inf/nan: JSON (and PostgreSQL's json columns) cannot store them; the FMU keeps its own."""
    values = start if isinstance(start, list) else [start]
    return None if any(isinstance(v, float) and not math.isfinite(v) for v in values) else start


# Attributes the fmus table keeps in String(255) columns: longer is refused, not cut, at upload.
_COLUMN_ATTRIBUTES = ("modelName", "generationTool", "guid", "instantiationToken")
_MAX_COLUMN_CHARS = 255


def _check_column_widths(root: Element) -> None:
    for attribute in _COLUMN_ATTRIBUTES:
        if len(root.get(attribute) or "") > _MAX_COLUMN_CHARS:
            raise InvalidModelDescription(
                f"The {attribute} attribute exceeds {_MAX_COLUMN_CHARS} characters.", attribute=attribute)


def _required(element: Element, attribute: str) -> str:
    value = element.get(attribute)
    if value is None:
        raise InvalidModelDescription(f"<{element.tag}> lacks the required attribute {attribute!r}.")
    return value


def _check_unique_names(variables: list[Variable]) -> None:
    seen: set[str] = set()
    for variable in variables:
        if variable.name in seen:
            raise _invalid_variable(variable.name, "is declared more than once")
        seen.add(variable.name)


def _invalid_variable(name: str, reason: str) -> InvalidModelDescription:
    return InvalidModelDescription(f"Variable {name!r} {reason}.", variable=name)
