"""A sweep's parameter space → the start values of each child run.

``grid`` is the cartesian product of value lists (the last parameter varies fastest), ``list`` the
explicit sets as given, ``lhs``/``sobol``/``random`` are ``samples`` seeded draws from the unit
cube (``scipy.stats.qmc`` and NumPy's ``default_rng``) mapped onto each parameter's range. The
same seed gives the same samples, so a sweep can be reproduced (and checked) outside the gateway.

Validation runs once over the space — each distinct value, or each range's bounds — with the
checks a single run's start values get, not once per child.
"""

from __future__ import annotations

import itertools
import math
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import qmc

from app.errors import InvalidRunSpec
from app.fmi.model_description import ModelInfo
from app.runs.schemas import ScalarValue
from app.runs.spec import check_start_value, settable_variable
from app.sweeps.schemas import ParameterRange, SweepCreate

SAMPLED_METHODS = ("lhs", "sobol", "random")
# Variable kinds a range can be sampled for.
RANGE_KINDS = ("real", "integer", "enumeration", "boolean")


class InvalidSweep(InvalidRunSpec):
    code = "invalid_sweep"
    title = "Invalid sweep"


class InvalidParameterRange(InvalidRunSpec):
    code = "invalid_parameter_range"
    title = "Invalid parameter range"


class TooManySamples(InvalidRunSpec):
    code = "too_many_samples"
    title = "Too many child runs"


class SweepTooLarge(InvalidRunSpec):
    code = "sweep_too_large"
    title = "Sweep design too large"


@dataclass(frozen=True)
class SweepSpace:
    """A validated parameter space: its size is known before a single child is listed, so the
    credit hold comes first and the children are made a batch at a time."""

    names: list[str]
    count: int
    # The seed the sampler used (chosen here when the request gave none); None for grid and list.
    seed: int | None
    _children: Callable[[], Iterator[dict[str, ScalarValue]]] = field(repr=False)

    def batches(self, size: int) -> Iterator[list[dict[str, ScalarValue]]]:
        """The children's start values in sweep_index order, ``size`` at a time."""
        children = self._children()
        while batch := list(itertools.islice(children, size)):
            yield batch


def parameter_names(method: str, parameters: Any) -> list[str]:
    """The swept variables in column order, from the parameter space as stored."""
    if method == "list":
        return list(parameters[0]) if parameters else []
    return list(parameters)


def unit_samples(method: str, samples: int, dimensions: int, seed: int) -> NDArray[np.float64]:
    """``samples`` by ``dimensions`` points in [0, 1): exactly what scipy/NumPy give for ``seed``."""
    if method == "lhs":
        lhs: NDArray[np.float64] = qmc.LatinHypercube(d=dimensions, rng=seed).random(samples)
        return lhs
    if method == "sobol":
        with warnings.catch_warnings():
            # Sobol' points balance best at powers of two; other counts are still a valid
            # low-discrepancy design and the caller asked for exactly that many.
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol", category=UserWarning)
            sobol: NDArray[np.float64] = qmc.Sobol(d=dimensions, scramble=True, rng=seed).random(samples)
            return sobol
    if method == "random":
        return np.random.default_rng(seed).random((samples, dimensions))
    raise ValueError(f"not a sampled method: {method!r}")


def expand(request: SweepCreate, info: ModelInfo, max_children: int, max_values: int) -> SweepSpace:
    """Validate the space against the FMU (422 if invalid) and size it from the request alone:
    at most ``max_children`` children and ``max_values`` swept values (children x parameters)
    before anything is sampled or listed."""
    method, parameters = request.method, request.parameters
    if method in SAMPLED_METHODS:
        if request.samples is None:
            raise InvalidSweep(f"samples: method {method!r} needs the number of samples.", field="samples")
    elif request.samples is not None or request.seed is not None:
        raise InvalidSweep(f"samples and seed apply to lhs, sobol and random, not {method!r}.", field="samples")
    if method == "list":
        if not isinstance(parameters, list):
            raise InvalidSweep("parameters: method 'list' takes a list of start-value sets.", field="parameters")
        if not parameters:
            raise InvalidSweep("parameters: method 'list' needs at least one set.", field="parameters")
        _check_size(len(parameters), len(parameters[0]), max_children, max_values)
        return _explicit(parameters, info)
    if not isinstance(parameters, dict) or not parameters:
        raise InvalidSweep(f"parameters: method {method!r} takes an object of parameters by name.",
                           field="parameters")
    if method == "grid":
        lengths = [len(given) if isinstance(given, list) else 1 for given in parameters.values()]
        _check_size(math.prod(lengths), len(parameters), max_children, max_values)
        return _grid(parameters, info)
    _check_size(request.samples or 0, len(parameters), max_children, max_values)
    return _sampled(method, parameters, request.samples or 0, request.seed, info)


def _check_size(children: int, parameters: int, max_children: int, max_values: int) -> None:
    if children > max_children:
        raise TooManySamples(f"This sweep has {children} child runs; at most {max_children} are allowed.",
                             field="parameters", children=children, max_children=max_children)
    if children * parameters > max_values:
        raise SweepTooLarge(f"This sweep sets {children} x {parameters} = {children * parameters} values; at "
                            f"most {max_values} are allowed (fewer samples or fewer parameters).",
                            field="parameters", values=children * parameters, max_values=max_values)


def _grid(parameters: Mapping[str, Any], info: ModelInfo) -> SweepSpace:
    values: dict[str, list[ScalarValue]] = {}
    for name, given in parameters.items():
        if not isinstance(given, list) or not given:
            raise InvalidSweep(f"parameters.{name}: method 'grid' takes a non-empty list of values.",
                               field="parameters", variable=name)
        for value in given:
            check_start_value(info, name, value, "parameters")
        values[name] = given
    names = list(values)

    def children() -> Iterator[dict[str, ScalarValue]]:
        return (dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values()))

    return SweepSpace(names, math.prod(len(v) for v in values.values()), None, children)


def _explicit(sets: Sequence[Mapping[str, ScalarValue]], info: ModelInfo) -> SweepSpace:
    names = list(sets[0])
    for name in names:
        settable_variable(info, name, "parameters")
    for index, values in enumerate(sets):
        if set(values) != set(names):
            raise InvalidSweep(f"parameters[{index}]: every set names the same variables as the first "
                               f"({', '.join(names)}).", field="parameters", index=index)
        for name, value in values.items():
            check_start_value(info, name, value, "parameters")

    def children() -> Iterator[dict[str, ScalarValue]]:
        return ({name: values[name] for name in names} for values in sets)

    return SweepSpace(names, len(sets), None, children)


def _sampled(method: str, parameters: Mapping[str, Any], samples: int, seed: int | None,
             info: ModelInfo) -> SweepSpace:
    ranges: dict[str, tuple[str, ParameterRange]] = {}
    for name, given in parameters.items():
        if not isinstance(given, ParameterRange):
            raise InvalidSweep(f"parameters.{name}: method {method!r} takes a range {{\"min\": a, \"max\": b}}.",
                               field="parameters", variable=name)
        kind = info.kind(settable_variable(info, name, "parameters"))
        if kind not in RANGE_KINDS:
            raise InvalidParameterRange(f"parameters.{name}: a {kind} variable has no range to sample; "
                                        "use 'grid' or 'list'.", field="parameters", variable=name)
        check_start_value(info, name, given.min, "parameters")
        check_start_value(info, name, given.max, "parameters")
        if given.min > given.max:
            raise InvalidParameterRange(f"parameters.{name}: min ({given.min}) is above max ({given.max}).",
                                        field="parameters", variable=name)
        ranges[name] = (kind, given)
    seed = secrets.randbelow(2**31) if seed is None else seed
    names = list(ranges)

    def children() -> Iterator[dict[str, ScalarValue]]:
        # The unit design is samples x parameters floats, bounded by max_values; the start values
        # (Python objects, several times larger) are made a batch at a time.
        unit = unit_samples(method, samples, len(ranges), seed)
        for start in range(0, samples, _SCALE_ROWS):
            block = unit[start:start + _SCALE_ROWS]
            columns = [_scale(kind, bounds, block[:, i]) for i, (kind, bounds) in enumerate(ranges.values())]
            yield from (dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True))

    return SweepSpace(names, samples, seed, children)


_SCALE_ROWS = 1000


def _scale(kind: str, bounds: ParameterRange, unit: NDArray[np.float64]) -> list[ScalarValue]:
    """Map [0, 1) onto the range: linearly for reals (``qmc.scale``'s formula), into equal-width
    bins for whole numbers and booleans. Plain Python values, so they serialise as JSON."""
    if kind == "boolean":
        if bounds.min == bounds.max:
            return [bool(bounds.min)] * len(unit)
        return [bool(u >= 0.5) for u in unit]
    low, high = bounds.min, bounds.max
    if kind == "real":
        return [float(v) for v in unit * (float(high) - float(low)) + float(low)]
    width = int(high) - int(low) + 1
    return [min(int(low) + math.floor(u * width), int(high)) for u in unit]
