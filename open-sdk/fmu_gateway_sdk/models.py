"""The API's objects as typed models. Field names follow the REST API, which follows FMI and FMPy
(``causality``, ``variability``, ``start``, ``stop_time``, ``output_interval``, ...)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from typing_extensions import Self

__all__ = [
    "FINAL_STATUSES",
    "Balance",
    "DailyEarnings",
    "DefaultExperiment",
    "FmiType",
    "Fmu",
    "FmuSummary",
    "FmuUsage",
    "Grant",
    "GranteeUsage",
    "Quote",
    "ResultFormat",
    "Run",
    "RunError",
    "RunResultInfo",
    "RunStatus",
    "RunTimings",
    "Solver",
    "Sweep",
    "SweepCounts",
    "SweepMethod",
    "SweepRun",
    "SweepStatus",
    "Variable",
]

RunStatus = Literal["queued", "running", "succeeded", "failed", "timed_out", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
FmiType = Literal["CoSimulation", "ModelExchange"]
Solver = Literal["CVode", "Euler"]
ResultFormat = Literal["arrow", "parquet", "csv", "json"]
SweepMethod = Literal["grid", "list", "lhs", "sobol", "random"]
SweepStatus = Literal["queued", "running", "finished", "cancelled"]
SWEEP_FINAL_STATUSES: frozenset[str] = frozenset({"finished", "cancelled"})
TableFormat = Literal["arrow", "parquet", "csv"]
StartValue = bool | int | float | str


class APIModel(BaseModel):
    # Fields a newer server adds stay readable as attributes instead of being dropped.
    model_config = ConfigDict(extra="allow")

    _request_id: str | None = PrivateAttr(default=None)

    @property
    def request_id(self) -> str | None:
        """``X-Request-ID`` of the response this object came from: quote it when reporting a problem."""
        return self._request_id

    def __eq__(self, other: object) -> bool:
        # The same data fetched twice is the same object, whichever request brought it.
        if not isinstance(other, APIModel):
            return NotImplemented
        return (type(self) is type(other) and self.__dict__ == other.__dict__
                and self.__pydantic_extra__ == other.__pydantic_extra__)

    __hash__ = None  # type: ignore[assignment]  # mutable, like every pydantic model

    @classmethod
    def from_response(cls, response: httpx.Response) -> Self:
        obj = cls.model_validate(response.json())
        obj._request_id = response.headers.get("x-request-id")
        return obj


class Variable(APIModel):
    """A model variable from the FMU's modelDescription.xml."""

    name: str
    value_reference: int
    causality: str = "local"
    variability: str = "continuous"
    type: str
    unit: str | None = None
    start: StartValue | list[StartValue] | None = None
    description: str | None = None
    initial: str | None = None
    shape: list[int] | None = None


class DefaultExperiment(APIModel):
    start_time: float | None = None
    stop_time: float | None = None
    tolerance: float | None = None
    step_size: float | None = None


class FmuSummary(APIModel):
    """An uploaded FMU, as listed."""

    id: str
    sha256: str
    size: int
    filename: str | None = None
    fmi_version: str
    model_name: str
    description: str | None = None
    generation_tool: str | None = None
    guid: str
    supports_model_exchange: bool
    supports_co_simulation: bool
    default_experiment: DefaultExperiment | None = None
    platforms: list[str] = Field(default_factory=list)
    #: How many variables the model declares (None from a server that does not say).
    variable_count: int | None = None
    #: False: the model uses randomness or wall-clock time, so its runs are never served from the run cache.
    deterministic: bool = True
    #: Set when another user shared this model with you: their display name.
    shared_by: str | None = None
    #: A model shared with you: the credits each of your runs that succeeds pays its owner (None for yours).
    price_credits_per_run: int | None = None
    created_at: datetime


class Fmu(FmuSummary):
    """An uploaded FMU with its model variables: all of them, or the first 1,000 of a larger model
    (see :attr:`variables_complete`; ``client.fmus.variables(fmu)`` pages through every one)."""

    variables: list[Variable] = Field(default_factory=list)

    @property
    def variables_complete(self) -> bool:
        """Whether :attr:`variables` holds every variable of the model."""
        return self.variable_count is None or len(self.variables) >= self.variable_count

    def variable(self, name: str) -> Variable:
        """The variable called ``name`` (``KeyError`` if :attr:`variables` has none of that name)."""
        for variable in self.variables:
            if variable.name == name:
                return variable
        if not self.variables_complete:
            raise KeyError(f"{name!r} is not among the first {len(self.variables)} of {self.variable_count} "
                           "variables; find it with client.fmus.variables(fmu, q=...)")
        raise KeyError(name)

    @property
    def parameters(self) -> list[Variable]:
        return [v for v in self.variables if v.causality == "parameter"]

    @property
    def inputs(self) -> list[Variable]:
        return [v for v in self.variables if v.causality == "input"]

    @property
    def outputs(self) -> list[Variable]:
        return [v for v in self.variables if v.causality == "output"]


class RunError(APIModel):
    code: str
    message: str | None = None


class RunResultInfo(APIModel):
    rows: int
    columns: list[str]
    bytes: int


class RunTimings(APIModel):
    queued_s: float | None = None
    run_s: float | None = None
    cpu_s: float | None = None
    total_s: float | None = None


class Run(APIModel):
    """One simulation of an FMU."""

    id: str
    fmu_id: str
    status: RunStatus
    spec: dict[str, Any] = Field(default_factory=dict)
    error: RunError | None = None
    result: RunResultInfo | None = None
    timings: RunTimings = Field(default_factory=RunTimings)
    max_rss_bytes: int | None = None
    credits_held: int = 0
    credits_charged: int = 0
    sweep_id: str | None = None
    sweep_index: int | None = None
    #: The earlier run whose result this one reuses (same deterministic model and spec), if any.
    cached_from: str | None = None
    #: Of the credits held, what goes to the model's owner if the run succeeds (a model shared with you).
    owner_credits: int = 0
    #: The grant under which you ran someone else's model.
    grant_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """The run reached a final status and will not change any more."""
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class SweepRun(Run):
    """A child run of a sweep, with its sample (``parameters``)."""

    parameters: dict[str, StartValue | None] = Field(default_factory=dict)


class SweepCounts(APIModel):
    """A sweep's children per status."""

    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.timed_out + self.cancelled


class Sweep(APIModel):
    """A parameter study: one base run spec, one child run per sample."""

    id: str
    fmu_id: str
    status: SweepStatus
    method: SweepMethod
    parameters: Any = None
    parameter_names: list[str] = Field(default_factory=list)
    samples: int | None = None
    seed: int | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    total: int
    counts: SweepCounts = Field(default_factory=SweepCounts)
    progress: float = 0.0
    credits_held: int = 0
    credits_charged: int = 0
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """Every child is final (a failed child does not fail the sweep), or the sweep was cancelled."""
        return self.status in SWEEP_FINAL_STATUSES


class Balance(APIModel):
    credits: int


class Grant(APIModel):
    """Leave for the user with ``email`` to run one of your FMUs, paying you ``price_credits_per_run``
    for each run that succeeds (``client.fmus.share``)."""

    id: str
    fmu_id: str
    email: str
    price_credits_per_run: int = 0
    created_at: datetime
    #: Since then the grantee can start no run of the model.
    revoked_at: datetime | None = None
    #: Runs the grantee made of the model under this grant.
    runs: int = 0
    #: What you earned from them, after the platform fee.
    earned_credits: int = 0

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class GranteeUsage(APIModel):
    grant_id: str
    email: str
    runs: int = 0
    succeeded: int = 0
    earned_credits: int = 0


class DailyEarnings(APIModel):
    day: date
    #: Runs of the model by grantees that finished that day (UTC).
    runs: int = 0
    earned_credits: int = 0


class FmuUsage(APIModel):
    """Who ran one of your shared FMUs, and what it earned you (``client.fmus.usage``)."""

    fmu_id: str
    by_grantee: list[GranteeUsage] = Field(default_factory=list)
    #: The last days with runs, newest first.
    by_day: list[DailyEarnings] = Field(default_factory=list)


class Quote(APIModel):
    """What a run or a sweep would hold, from ``create(..., dry_run=True)``: validated like the real
    submission, but nothing is placed and nothing is held."""

    fmu_id: str
    #: How many runs the submission would place (a sweep's children; 1 for a run).
    runs: int
    #: The platform's hold per run: its worst case.
    credits_per_run: int
    #: What each run that succeeds pays the model's owner, on top (a model shared with you; else 0).
    owner_credits_per_run: int = 0
    #: The whole hold, ``runs * (credits_per_run + owner_credits_per_run)``; what the runs do not use is released.
    credits_held: int
    #: Your balance now.
    balance: int
    #: Whether the balance covers the hold (else the submission is 402 ``insufficient_credits``).
    sufficient: bool
    #: The validated run spec (a sweep's base spec), with the server's defaults filled in.
    spec: dict[str, Any] = Field(default_factory=dict)


M = TypeVar("M", bound=APIModel)


def page_from_response(item: type[M], response: httpx.Response) -> tuple[list[M], str | None]:
    """The items of one page of a list (each knowing the request id) and the cursor of the next, if any."""
    body = response.json()
    request_id = response.headers.get("x-request-id")
    items = [item.model_validate(obj) for obj in body["data"]]
    for obj in items:
        obj._request_id = request_id
    return items, body.get("next_cursor") if body.get("has_more") else None
