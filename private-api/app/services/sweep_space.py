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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import qmc

from app.errors import InvalidRunSpec
from app.fmi.model_description import ModelInfo
from app.schemas.run import ScalarValue
from app.schemas.sweep import ParameterRange, SweepCreate
from app.services.run_spec import check_start_value, settable_variable

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


@dataclass(frozen=True)
class SweepSpace:
    names: list[str]
    # One dict of start values per child, in sweep_index order.
    samples: list[dict[str, ScalarValue]]
    # The seed the sampler used (chosen here when the request gave none); None for grid and list.
    seed: int | None


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


def expand(request: SweepCreate, info: ModelInfo, max_children: int) -> SweepSpace:
    """Validate the space against the FMU and list each child's start values (422 if invalid)."""
    method, parameters = request.method, request.parameters
    if method in SAMPLED_METHODS:
        if request.samples is None:
            raise InvalidSweep(f"samples: method {method!r} needs the number of samples.", field="samples")
    elif request.samples is not None or request.seed is not None:
        raise InvalidSweep(f"samples and seed apply to lhs, sobol and random, not {method!r}.", field="samples")
    if method == "list":
        if not isinstance(parameters, list):
            raise InvalidSweep("parameters: method 'list' takes a list of start-value sets.", field="parameters")
        return _explicit(parameters, info, max_children)
    if not isinstance(parameters, dict) or not parameters:
        raise InvalidSweep(f"parameters: method {method!r} takes an object of parameters by name.",
                           field="parameters")
    if method == "grid":
        return _grid(parameters, info, max_children)
    return _sampled(method, parameters, request.samples or 0, request.seed, info, max_children)


def _too_many(count: int, max_children: int) -> TooManySamples:
    return TooManySamples(f"This sweep has {count} child runs; at most {max_children} are allowed.",
                          field="parameters", children=count, max_children=max_children)


def _grid(parameters: Mapping[str, Any], info: ModelInfo, max_children: int) -> SweepSpace:
    values: dict[str, list[ScalarValue]] = {}
    for name, given in parameters.items():
        if not isinstance(given, list) or not given:
            raise InvalidSweep(f"parameters.{name}: method 'grid' takes a non-empty list of values.",
                               field="parameters", variable=name)
        for value in given:
            check_start_value(info, name, value, "parameters")
        values[name] = given
    count = math.prod(len(v) for v in values.values())
    if count > max_children:
        raise _too_many(count, max_children)
    names = list(values)
    return SweepSpace(names, [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())],
                      None)


def _explicit(sets: Sequence[Mapping[str, ScalarValue]], info: ModelInfo, max_children: int) -> SweepSpace:
    if not sets:
        raise InvalidSweep("parameters: method 'list' needs at least one set.", field="parameters")
    if len(sets) > max_children:
        raise _too_many(len(sets), max_children)
    names = list(sets[0])
    for name in names:
        settable_variable(info, name, "parameters")
    for index, values in enumerate(sets):
        if set(values) != set(names):
            raise InvalidSweep(f"parameters[{index}]: every set names the same variables as the first "
                               f"({', '.join(names)}).", field="parameters", index=index)
        for name, value in values.items():
            check_start_value(info, name, value, "parameters")
    return SweepSpace(names, [{name: values[name] for name in names} for values in sets], None)


def _sampled(method: str, parameters: Mapping[str, Any], samples: int, seed: int | None, info: ModelInfo,
             max_children: int) -> SweepSpace:
    if samples > max_children:
        raise _too_many(samples, max_children)
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
    unit = unit_samples(method, samples, len(ranges), seed)
    columns = [_scale(kind, bounds, unit[:, i]) for i, (kind, bounds) in enumerate(ranges.values())]
    names = list(ranges)
    return SweepSpace(names, [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)], seed)


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
