from __future__ import annotations

import time

import pytest

from app.errors import InvalidModelDescription, TooManyVariables, UnsupportedFMIVersion
from app.fmi.model_description import DefaultExperiment, ModelInfo, Variable, parse_model_description

from .fmu_archives import FMI2_XML, FMI3_XML, fmi2_xml, fmi3_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<fmiModelDescription fmiVersion="2.0" modelName="&lol9;" guid="g">
  <CoSimulation modelIdentifier="m"/><ModelVariables/>
</fmiModelDescription>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE fmiModelDescription [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<fmiModelDescription fmiVersion="2.0" modelName="&secret;" guid="g">
  <CoSimulation modelIdentifier="m"/><ModelVariables/>
</fmiModelDescription>
"""


def scalar(attributes: str, value: str = "<Real/>") -> str:
    return f'<ScalarVariable name="x" valueReference="0" {attributes}>{value}</ScalarVariable>'


def only_variable(xml: bytes) -> Variable:
    (variable,) = parse_model_description(xml).variables
    return variable


@pytest.fixture(scope="module")
def fmi2() -> ModelInfo:
    return parse_model_description(FMI2_XML)


@pytest.fixture(scope="module")
def fmi3() -> ModelInfo:
    return parse_model_description(FMI3_XML)


class TestFMI2:
    @pytest.fixture
    def info(self, fmi2: ModelInfo) -> ModelInfo:
        return fmi2

    def test_model_attributes_are_read(self, info: ModelInfo) -> None:
        assert info.fmi_version == "2.0"
        assert info.model_name == "Tank"
        assert info.description == "A tank"
        assert info.generation_tool == "hand"
        assert info.generation_date_and_time == "2024-01-01T00:00:00Z"
        assert info.guid == "{8c4e810f-3df3-4a00-8276-176fa3c9f000}"
        assert info.supports_model_exchange and info.supports_co_simulation
        assert info.model_identifiers == {"ModelExchange": "Tank", "CoSimulation": "Tank"}
        assert info.default_experiment == DefaultExperiment(start_time=0, stop_time=10, tolerance=1e-6, step_size=0.01)
        assert info.platforms == []

    def test_a_variable_is_read_with_its_attributes(self, info: ModelInfo) -> None:
        assert info.variable("level") == Variable(
            name="level",
            value_reference=0,
            causality="output",
            variability="continuous",
            type="Real",
            unit="m",
            start=0.5,
            description="Fill level",
            initial="exact",
        )

    def test_omitted_attributes_take_the_fmi_defaults(self, info: ModelInfo) -> None:
        derivative = info.variable("der(level)")

        assert derivative is not None
        assert (derivative.causality, derivative.variability, derivative.initial) == (
            "local",
            "continuous",
            "calculated",
        )
        assert derivative.start is None

    def test_starts_have_the_variables_python_type(self, info: ModelInfo) -> None:
        starts = {v.name: v.start for v in info.variables if v.start is not None}

        assert starts == {
            "level": 0.5,
            "area": 2.0,
            "inflow": 0.0,
            "n": -3,
            "open": True,
            "closed": False,
            "label": "tank one",
            "mode": 2,
            "g": 9.81,
        }
        assert type(starts["area"]) is float
        assert type(starts["n"]) is int

    def test_a_declared_types_unit_is_inherited(self, info: ModelInfo) -> None:
        assert info.variable("p") == Variable(
            name="p", value_reference=4, causality="output", type="Real", unit="Pa", initial="calculated"
        )

    @pytest.mark.parametrize(
        ("name", "settable"),
        [
            ("level", True),  # output with initial="exact"
            ("der(level)", False),
            ("area", True),
            ("inflow", True),
            ("p", False),
            ("n", True),
            ("open", True),
            ("label", True),
            ("mode", True),
            ("volume", False),  # calculatedParameter
            ("g", False),  # constant
            ("time", False),  # independent
        ],
    )
    def test_settable_follows_what_fmpy_can_set(self, info: ModelInfo, name: str, settable: bool) -> None:
        variable = info.variable(name)

        assert variable is not None
        assert info.settable(variable) is settable

    def test_kinds_map_fmi2_types(self, info: ModelInfo) -> None:
        kinds = {v.name: info.kind(v) for v in info.variables}

        assert [kinds[n] for n in ("level", "n", "open", "label", "mode")] == [
            "real",
            "integer",
            "boolean",
            "string",
            "enumeration",
        ]

    def test_an_unknown_variable_is_none(self, info: ModelInfo) -> None:
        assert info.variable("nope") is None

    def test_it_survives_a_json_round_trip_with_types_intact(self, info: ModelInfo) -> None:
        restored = ModelInfo.model_validate_json(info.model_dump_json())

        assert restored == info
        assert [type(v.start) for v in restored.variables] == [type(v.start) for v in info.variables]


class TestFMI3:
    @pytest.fixture
    def info(self, fmi3: ModelInfo) -> ModelInfo:
        return fmi3

    def test_model_attributes_are_read(self, info: ModelInfo) -> None:
        assert info.fmi_version == "3.0"
        assert info.guid == "{2f7e1b44-0000-4000-8000-000000000003}"
        assert info.model_identifiers == {"ModelExchange": "Ball", "CoSimulation": "Ball"}
        assert info.default_experiment == DefaultExperiment(stop_time=3)

    def test_variables_are_typed_by_their_element(self, info: ModelInfo) -> None:
        types = {v.name: v.type for v in info.variables}

        assert types == {
            "time": "Float64",
            "h": "Float64",
            "v": "Float64",
            "e": "Float32",
            "count": "Int32",
            "big": "UInt64",
            "enabled": "Boolean",
            "label": "String",
            "blob": "Binary",
            "shape": "Enumeration",
            "tick": "Clock",
            "n": "UInt64",
            "xs": "Float64",
            "grid": "Int8",
        }

    def test_starts_are_read_from_attributes_and_start_elements(self, info: ModelInfo) -> None:
        starts = {v.name: v.start for v in info.variables}

        assert starts["h"] == 1.0
        assert starts["e"] == 0.7
        assert starts["big"] == 2**64 - 1
        assert starts["enabled"] is True
        assert starts["label"] == "ball"
        assert starts["blob"] == "0a0b"
        assert starts["shape"] == 1
        assert starts["count"] is None

    def test_units_come_from_the_variable_or_its_declared_type(self, info: ModelInfo) -> None:
        assert [info.variable(n).unit for n in ("h", "v", "e")] == ["m", "m/s", None]  # type: ignore[union-attr]

    def test_default_variability_depends_on_causality_and_type(self, info: ModelInfo) -> None:
        variability = {v.name: v.variability for v in info.variables}

        assert variability["e"] == "fixed"  # parameter
        assert variability["count"] == "discrete"  # not a float
        assert variability["h"] == "continuous"

    def test_arrays_resolve_their_shape_and_are_not_settable(self, info: ModelInfo) -> None:
        xs, grid = info.variable("xs"), info.variable("grid")

        assert xs is not None and grid is not None
        assert (xs.shape, xs.start) == ([3], [1.0, 2.0, 3.0])
        assert (grid.shape, grid.start) == ([2, 2], [1, 2, 3, 4])
        assert not info.settable(xs)
        assert info.variable("h").shape is None  # type: ignore[union-attr]

    def test_kinds_map_fmi3_types(self, info: ModelInfo) -> None:
        kinds = {v.name: info.kind(v) for v in info.variables}

        assert kinds["e"] == "real"
        assert kinds["big"] == "integer"
        assert kinds["shape"] == "enumeration"
        assert kinds["blob"] == kinds["tick"] == "other"

    @pytest.mark.parametrize(
        ("name", "settable"),
        [("e", True), ("enabled", True), ("label", True), ("blob", False), ("tick", False), ("count", False)],
    )
    def test_settable(self, info: ModelInfo, name: str, settable: bool) -> None:
        variable = info.variable(name)

        assert variable is not None
        assert info.settable(variable) is settable


class TestHostileXML:
    def test_billion_laughs_is_refused_fast(self) -> None:
        started = time.perf_counter()
        with pytest.raises(InvalidModelDescription) as raised:
            parse_model_description(BILLION_LAUGHS)

        assert time.perf_counter() - started < 0.5
        assert raised.value.code == "invalid_model_description"

    def test_an_external_entity_is_never_resolved(self) -> None:
        with pytest.raises(InvalidModelDescription) as raised:
            parse_model_description(EXTERNAL_ENTITY)

        assert "root:" not in raised.value.detail

    def test_any_doctype_is_refused(self) -> None:
        xml = b'<?xml version="1.0"?><!DOCTYPE fmiModelDescription>' + fmi2_xml().split(b"?>", 1)[1]

        with pytest.raises(InvalidModelDescription, match="DTD"):
            parse_model_description(xml)

    def test_malformed_xml_is_invalid(self) -> None:
        with pytest.raises(InvalidModelDescription, match="not well-formed"):
            parse_model_description(fmi2_xml()[:-10])

    def test_another_root_element_is_invalid(self) -> None:
        with pytest.raises(InvalidModelDescription, match="root element"):
            parse_model_description(b"<html/>")


class TestRejectedDescriptions:
    @pytest.mark.parametrize("root", ['fmiVersion="1.0"', 'fmiVersion="4.0"', ""])
    def test_other_fmi_versions_are_unsupported(self, root: str) -> None:
        with pytest.raises(UnsupportedFMIVersion) as raised:
            parse_model_description(fmi2_xml(root=root))
        assert raised.value.code == "unsupported_fmi_version"

    def test_an_fmu_without_me_or_cs_is_invalid(self) -> None:
        with pytest.raises(InvalidModelDescription, match="neither"):
            parse_model_description(fmi2_xml(interfaces=""))

    def test_a_missing_guid_is_invalid(self) -> None:
        with pytest.raises(InvalidModelDescription, match="guid"):
            parse_model_description(fmi2_xml().replace(b' guid="{g}"', b""))

    def test_a_missing_instantiation_token_is_invalid(self) -> None:
        with pytest.raises(InvalidModelDescription, match="instantiationToken"):
            parse_model_description(fmi3_xml().replace(b' instantiationToken="{t}"', b""))

    @pytest.mark.parametrize(
        ("attributes", "value", "message"),
        [
            ('causality="parameter"', "<Real/>", "forbids"),  # parameter with continuous variability
            ('causality="global"', "<Real/>", "unknown causality"),
            ('variability="sometimes"', "<Real/>", "unknown variability"),
            ('initial="maybe"', "<Real/>", "unknown initial"),
            ("", '<Real start="fast"/>', "number"),
            ('variability="discrete"', '<Integer start="1.5"/>', "integer"),
            ('variability="discrete"', '<Boolean start="yes"/>', "Boolean"),
            ("", "", "has no Real"),
        ],
    )
    def test_a_bad_variable_is_invalid_and_named(self, attributes: str, value: str, message: str) -> None:
        with pytest.raises(InvalidModelDescription, match=message) as raised:
            parse_model_description(fmi2_xml(scalar(attributes, value)))
        assert raised.value.extra["variable"] == "x"

    def test_duplicate_variable_names_are_invalid(self) -> None:
        variables = scalar("") + scalar("").replace('valueReference="0"', 'valueReference="1"')

        with pytest.raises(InvalidModelDescription, match="more than once"):
            parse_model_description(fmi2_xml(variables))

    def test_an_unknown_fmi3_variable_type_is_invalid(self) -> None:
        with pytest.raises(InvalidModelDescription, match="unknown type"):
            parse_model_description(fmi3_xml('<Real name="x" valueReference="0"/>'))

    def test_an_fmi3_dimension_without_a_size_is_invalid(self) -> None:
        xml = fmi3_xml('<Float64 name="x" valueReference="0"><Dimension valueReference="7"/></Float64>')

        with pytest.raises(InvalidModelDescription, match="dimension"):
            parse_model_description(xml)


def test_booleans_accept_numeric_literals() -> None:
    assert only_variable(fmi2_xml(scalar('variability="discrete"', '<Boolean start="0"/>'))).start is False


@pytest.mark.parametrize("literal", ["INF", "-inf", "NaN"])
def test_non_finite_starts_are_dropped_because_json_cannot_hold_them(literal: str) -> None:
    variable = only_variable(
        fmi2_xml(scalar('causality="parameter" variability="fixed"', f'<Real start="{literal}"/>'))
    )

    assert variable.start is None


def many_scalars(count: int) -> str:
    return "".join(f'<ScalarVariable name="v{i}" valueReference="{i}"><Real/></ScalarVariable>' for i in range(count))


class TestVariableLimit:
    def test_a_model_at_the_limit_is_read(self) -> None:
        assert len(parse_model_description(fmi2_xml(many_scalars(50)), max_variables=50).variables) == 50

    def test_one_variable_more_is_refused_with_the_limit(self) -> None:
        with pytest.raises(TooManyVariables) as raised:
            parse_model_description(fmi2_xml(many_scalars(51)), max_variables=50)

        assert raised.value.extra["limit"] == 50
        assert raised.value.status == 413

    def test_fmi3_variables_are_counted_too(self) -> None:
        xml = fmi3_xml("".join(f'<Float64 name="x{i}" valueReference="{i}"/>' for i in range(3)))

        with pytest.raises(TooManyVariables):
            parse_model_description(xml, max_variables=2)

    def test_elements_elsewhere_do_not_count(self) -> None:
        # Type definitions and model structure sit beside <ModelVariables>, not in it.
        xml = fmi2_xml(many_scalars(2)).replace(
            b"<ModelVariables>", b"<TypeDefinitions><SimpleType name='a'><Real/></SimpleType></TypeDefinitions>"
                                 b"<ModelVariables>")

        assert len(parse_model_description(xml, max_variables=2).variables) == 2

    def test_220k_variables_are_refused_before_a_tree_is_built(self) -> None:
        xml = fmi2_xml(many_scalars(220_000))  # ~16 MB, under the XML cap
        started = time.process_time()

        with pytest.raises(TooManyVariables):
            parse_model_description(xml, max_variables=100_000)

        # Building this model takes seconds (the tree alone ~1 s); counting to the limit ~0.25 s.
        assert time.process_time() - started < 0.8

    def test_the_count_is_refused_like_the_parse_for_hostile_xml(self) -> None:
        with pytest.raises(InvalidModelDescription, match="DTD"):
            parse_model_description(BILLION_LAUGHS, max_variables=10)
