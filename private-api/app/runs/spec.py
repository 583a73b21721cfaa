"""Validate a run request against the FMU's stored modelDescription and build its ``RunSpec``.

Everything the sandbox runner receives is checked here, so a bad request fails with a 422
that names the variable (or the field) instead of a failed run.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from app.config import Settings
from app.errors import InvalidRunSpec
from app.fmi.model_description import ModelInfo, Variable
from app.runs.schemas import RunCreate, ScalarValue
from app.sandbox.runner import RunSpec

MAX_OUTPUT_ROWS = 2_000_000
MAX_INPUT_ROWS = 1_000_000
# Solver steps per run, (stop_time - start_time) / step_size: no more than result rows.
MAX_STEPS = MAX_OUTPUT_ROWS
INPUT_KINDS = {"real": "Real", "integer": "Integer", "boolean": "Boolean"}


class UnknownVariable(InvalidRunSpec):
    code = "unknown_variable"
    title = "Unknown variable"


class VariableNotSettable(InvalidRunSpec):
    code = "variable_not_settable"
    title = "Variable cannot be set"


class InvalidValue(InvalidRunSpec):
    code = "invalid_value"
    title = "Value has the wrong type"


class InvalidTimeRange(InvalidRunSpec):
    code = "invalid_time_range"
    title = "Invalid simulation time range"


class ConflictingFields(InvalidRunSpec):
    code = "conflicting_fields"
    title = "Fields that exclude each other"


def _lookup(info: ModelInfo, name: str, field: str) -> Variable:
    variable = info.variable(name)
    if variable is None:
        raise UnknownVariable(f"{field}: the FMU has no variable named {name!r}.", variable=name, field=field)
    return variable


def _check_value(info: ModelInfo, variable: Variable, value: ScalarValue, field: str) -> None:
    kind = info.kind(variable)
    ok = {
        "real": isinstance(value, int | float) and not isinstance(value, bool)
        and math.isfinite(float(value)),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "enumeration": isinstance(value, int) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str),
    }.get(kind, False)
    if not ok:
        raise InvalidValue(
            f"{field}: {variable.name!r} is {variable.type}, got {type(value).__name__} {value!r}.",
            variable=variable.name, field=field, expected=variable.type,
        )


def settable_variable(info: ModelInfo, name: str, field: str) -> Variable:
    """The variable ``name`` if a run may give it a start value (422 naming it otherwise)."""
    variable = _lookup(info, name, field)
    if not info.settable(variable):
        raise VariableNotSettable(
            f"{field}: {name!r} has causality {variable.causality!r} and variability "
            f"{variable.variability!r}; it cannot be given a start value.",
            variable=name, field=field,
        )
    return variable


def check_start_value(info: ModelInfo, name: str, value: ScalarValue, field: str = "start_values") -> None:
    """The checks every start value of a run passes (sweeps check their parameter space with it)."""
    _check_value(info, settable_variable(info, name, field), value, field)


def _start_values(req: RunCreate, info: ModelInfo) -> dict[str, ScalarValue]:
    for name, value in req.start_values.items():
        check_start_value(info, name, value)
    return dict(req.start_values)


def _input(req: RunCreate, info: ModelInfo) -> tuple[dict[str, list[Any]] | None, dict[str, str]]:
    if req.input is None:
        return None, {}
    table = req.input
    if "time" not in table:
        raise InvalidRunSpec("input: the table needs a 'time' column.", field="input")
    lengths = {len(column) for column in table.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise InvalidRunSpec("input: every column needs the same, non-zero number of rows.", field="input")
    if lengths.pop() > MAX_INPUT_ROWS:
        raise InvalidRunSpec(f"input: at most {MAX_INPUT_ROWS} rows.", field="input")
    if any(isinstance(t, bool | str) or not math.isfinite(float(t)) for t in table["time"]):
        raise InvalidValue("input: 'time' must hold finite numbers.", field="input", variable="time")
    times = [float(t) for t in table["time"]]
    if any(b < a for a, b in itertools.pairwise(times)):
        raise InvalidValue("input: 'time' must not decrease.", field="input", variable="time")
    types: dict[str, str] = {}
    for name, column in table.items():
        if name == "time":
            continue
        variable = _lookup(info, name, "input")
        if variable.causality != "input":
            raise VariableNotSettable(
                f"input: {name!r} has causality {variable.causality!r}; only inputs take a signal.",
                variable=name, field="input",
            )
        kind = info.kind(variable)
        if kind not in INPUT_KINDS:
            raise InvalidValue(f"input: {name!r} is {variable.type}; only Real, Integer and Boolean "
                               "inputs take a signal.", variable=name, field="input")
        for value in column:
            _check_value(info, variable, value, "input")
        types[name] = INPUT_KINDS[kind]
    return {name: list(column) for name, column in table.items()}, types


def _fmi_type(req: RunCreate, info: ModelInfo) -> str:
    if req.fmi_type is None:
        return "CoSimulation" if info.supports_co_simulation else "ModelExchange"
    supported = {"CoSimulation": info.supports_co_simulation, "ModelExchange": info.supports_model_exchange}
    if not supported[req.fmi_type]:
        raise InvalidRunSpec(f"fmi_type: this FMU does not support {req.fmi_type}.", field="fmi_type")
    return req.fmi_type


def _output(req: RunCreate, info: ModelInfo) -> list[str] | None:
    # A dump reads the deprecated alias without pydantic's DeprecationWarning.
    given = req.model_dump(include={"output", "outputs"})
    if given["output"] is not None and given["outputs"] is not None:
        raise ConflictingFields("outputs is the deprecated alias of output: give output only.", field="outputs")
    field = "output" if given["output"] is not None else "outputs"
    names: list[str] | None = given[field]
    for name in names or []:
        _lookup(info, name, field)
    return names


def _step_size(req: RunCreate, fmi_type: str, start: float, stop: float, interval: float | None) -> float | None:
    step = req.step_size
    if step is None:
        return None
    if fmi_type != "ModelExchange":
        # FMPy's co-simulation communicates every output_interval; it never reads step_size.
        raise InvalidRunSpec("step_size: only ModelExchange runs take a step size; a CoSimulation run "
                             "steps every output_interval.", field="step_size")
    if (stop - start) / step > MAX_STEPS:
        raise InvalidRunSpec(f"step_size: at most {MAX_STEPS} steps per run ((stop_time - start_time) / step_size).",
                             field="step_size", max_steps=MAX_STEPS)
    # FMPy's own check (simulateME), made here so the run is not charged for it.
    if req.solver == "Euler" and interval is not None and not math.isclose(
            round(interval / step) * step, interval, rel_tol=1e-5, abs_tol=1e-8):
        raise InvalidRunSpec(f"step_size: output_interval ({interval:g}) must be a multiple of step_size "
                             f"({step:g}) for the Euler solver.", field="step_size")
    return step


def build_run_spec(req: RunCreate, info: ModelInfo, settings: Settings, *,
                   max_timeout_s: float | None = None) -> RunSpec:
    """The spec stored on the run and handed to the sandbox runner (fmpy.simulate_fmu's words).

    ``max_timeout_s`` is the caller's cap (its tier's); the settings' cap applies as well."""
    experiment = info.default_experiment
    start = req.start_time if req.start_time is not None else (
        experiment.start_time if experiment and experiment.start_time is not None else 0.0)
    stop = req.stop_time if req.stop_time is not None else (
        experiment.stop_time if experiment and experiment.stop_time is not None else start + 1.0)
    if not (math.isfinite(start) and math.isfinite(stop)) or stop < start:
        raise InvalidTimeRange(f"stop_time ({stop}) must not be before start_time ({start}).",
                               field="stop_time")
    interval = req.output_interval
    if interval is not None and (stop - start) / interval > MAX_OUTPUT_ROWS:
        raise InvalidRunSpec(f"output_interval: at most {MAX_OUTPUT_ROWS} result rows per run.",
                             field="output_interval")
    fmi_type = _fmi_type(req, info)
    if req.solver is not None and fmi_type != "ModelExchange":
        raise InvalidRunSpec("solver: only ModelExchange runs take a solver.", field="solver")
    output = _output(req, info)
    step_size = _step_size(req, fmi_type, start, stop, interval)
    cap = min(settings.run_max_timeout_s, max_timeout_s if max_timeout_s is not None else math.inf)
    timeout = req.timeout_s if req.timeout_s is not None else min(settings.run_default_timeout_s, cap)
    if timeout > cap:
        raise InvalidRunSpec(f"timeout_s: at most {cap:g} s.", field="timeout_s", max_timeout_s=cap)
    input_table, input_types = _input(req, info)
    return RunSpec(
        validate=req.validate_,
        start_time=start,
        stop_time=stop,
        solver=req.solver or "CVode",
        step_size=step_size,
        relative_tolerance=req.relative_tolerance,
        output_interval=interval,
        fmi_type=fmi_type,
        start_values=_start_values(req, info),
        input=input_table,
        output=output,
        debug_logging=req.debug_logging,
        input_types=input_types,
        timeout_s=timeout,
    )
