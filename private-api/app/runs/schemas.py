from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.kit.schemas import FiniteFloat, Int64, TextValue, VariableName, reject_unstorable_keys
from app.runs.models import RunStatus
from app.sandbox.runner import SIMULATE_FMU_ARGUMENTS, RunSpec

ScalarValue = bool | int | float | str
# A value as a request may give it: ScalarValue, bounded at the edge (responses keep ScalarValue).
StartValue = bool | Int64 | FiniteFloat | TextValue
StartValues = Annotated[dict[VariableName, StartValue], BeforeValidator(reject_unstorable_keys)]
InputTable = Annotated[dict[VariableName, list[StartValue]], BeforeValidator(reject_unstorable_keys)]


class RunCreate(BaseModel):
    """A simulation request: the arguments of ``fmpy.simulate_fmu`` by its names, with its defaults.

    Every field but ``timeout_s`` (the run's own limit) is passed on to FMPy."""

    model_config = ConfigDict(extra="forbid")

    start_time: FiniteFloat | None = Field(None,
                                           description="Defaults to the FMU's DefaultExperiment startTime or 0.")
    stop_time: FiniteFloat | None = Field(None,
                                          description="Defaults to the FMU's DefaultExperiment stopTime or start + 1.")
    output_interval: FiniteFloat | None = Field(None, gt=0, description="Interval between result rows.")
    fmi_type: Literal["CoSimulation", "ModelExchange"] | None = Field(
        None, description="Defaults to CoSimulation when the FMU supports it.")
    solver: Literal["CVode", "Euler"] | None = Field(None, description="Integrator for ModelExchange (default CVode).")
    step_size: FiniteFloat | None = Field(
        None, gt=0, description="ModelExchange only: the Euler solver's step (output_interval must be a multiple "
                                "of it); without output_interval, FMPy starts the result interval from it.")
    relative_tolerance: FiniteFloat | None = Field(
        None, gt=0, lt=1, description="CVode's, and passed to FMI 2/3 co-simulation FMUs; defaults to the "
                                      "FMU's DefaultExperiment tolerance.")
    start_values: StartValues = Field(default_factory=dict, description="Start values by variable name.")
    input: InputTable | None = Field(
        None, description="Input table as columns: 'time' plus one column per input variable.")
    output: list[VariableName] | None = Field(None, description="Variables to record; default: the model's outputs.")
    outputs: list[VariableName] | None = Field(
        None, deprecated=True, description="Deprecated alias of output, accepted for one more release; "
                                           "giving both is 422 conflicting_fields.")
    # "validate" would shadow pydantic's BaseModel.validate: the alias carries FMPy's name.
    validate_: bool = Field(True, alias="validate", description="Let FMPy validate the model description "
                                                                "and that every start value was set.")
    debug_logging: bool = Field(False, description="Turn on the FMU's debug logging: its messages go to the "
                                                   "run's log.")
    timeout_s: FiniteFloat | None = Field(None, gt=0, description="Hard wall-clock limit of the run.")
    cache: bool = Field(True, description=(
        "Serve the result of an earlier succeeded run of yours that computed exactly this (same FMU bytes, "
        "same spec but timeout_s, same runner) at once, at the tier's cache-hit price; false always computes."))


class RunError(BaseModel):
    code: str
    message: str | None


class RunTimings(BaseModel):
    queued_s: float | None = Field(description="From submission to start in a sandbox.")
    run_s: float | None = Field(description="Wall time of the sandboxed run.")
    cpu_s: float | None
    total_s: float | None = Field(description="From submission to the final status.")


class RunResultInfo(BaseModel):
    rows: int
    columns: list[str]
    bytes: int


def current_spec(stored: object) -> object:
    """A stored spec in today's wire form (a run queued by the release before reads as any other)."""
    if isinstance(stored, dict):
        with contextlib.suppress(ValueError, TypeError):
            return RunSpec.from_wire(stored).to_wire()
    return stored


# The run spec as stored and handed to the runner (app.sandbox.runner.RunSpec.to_wire()).
RunSpecOut = Annotated[dict[str, Any], BeforeValidator(current_spec), Field(
    description="The validated spec the run was given, defaults filled in: version, then the arguments of "
                f"fmpy.simulate_fmu by its names ({', '.join(SIMULATE_FMU_ARGUMENTS)}), input_types and timeout_s.")]


class RunOut(BaseModel):
    id: str
    object: Literal["run"] = "run"
    fmu_id: str
    status: RunStatus
    spec: RunSpecOut
    error: RunError | None
    result: RunResultInfo | None
    timings: RunTimings
    max_rss_bytes: int | None
    credits_held: int = Field(description="Credits held at submission for the run's worst case.")
    credits_charged: int = Field(description="What the run cost; 0 until it ends, refunded platform failures stay 0.")
    sweep_id: str | None = Field(None, description="The sweep this run is a child of.")
    sweep_index: int | None = Field(None, description="Its position among the sweep's samples.")
    cached_from: str | None = Field(None, description=(
        "Served from the run cache: the earlier run that computed this result (its result and log are this run's)."))
    grant_id: str | None = Field(None, description="A run of a model shared with you: the grant it ran under.")
    owner_credits: int = Field(0, description=(
        "A run of a shared model: the part of the hold that pays the model's owner if the run succeeds "
        "(included in credits_charged then; released otherwise)."))
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result_expired_at: datetime | None = Field(
        None, description="When the tier's result retention removed the result and log (410 result_expired since).")


class Quote(BaseModel):
    """What a run or sweep would hold, from a request validated as its creation would (``?dry_run=true``):
    nothing is placed or held."""

    object: Literal["quote"] = "quote"
    fmu_id: str
    runs: int = Field(description="Runs it would place (a sweep's children).")
    credits_per_run: int = Field(description="The platform's hold per run: its worst case, the timeout as CPU time.")
    owner_credits_per_run: int = Field(description="What each run that succeeds pays a shared model's owner.")
    credits_held: int = Field(description="The whole hold: runs * (credits_per_run + owner_credits_per_run). "
                                          "What finished runs do not use is released.")
    balance: int = Field(description="Your balance now.")
    sufficient: bool = Field(description="Whether the balance covers the hold (else creation answers 402).")
    spec: RunSpecOut
