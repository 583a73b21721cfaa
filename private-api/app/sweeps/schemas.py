from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.kit.schemas import FiniteFloat, Int64, VariableName, reject_unstorable_keys
from app.runs.schemas import RunCreate, RunOut, RunSpecOut, ScalarValue, StartValue, StartValues
from app.sweeps.models import SweepStatus

SweepMethod = Literal["grid", "list", "lhs", "sobol", "random"]


class ParameterRange(BaseModel):
    """A closed range sampled by ``lhs``, ``sobol`` and ``random``: uniform over [min, max] for a
    Real; each whole number in it equally likely for an Integer or Enumeration; False/True for a Boolean."""

    model_config = ConfigDict(extra="forbid")

    min: bool | Int64 | FiniteFloat
    max: bool | Int64 | FiniteFloat

    @model_validator(mode="after")
    def _finite_width(self) -> ParameterRange:
        # Samples are min + u * (max - min): a width that overflows to inf makes inf start values.
        if not math.isfinite(float(self.max) - float(self.min)):
            raise ValueError("max - min must be a finite number")
        return self


ParameterSpace = Annotated[dict[VariableName, list[StartValue] | ParameterRange],
                           BeforeValidator(reject_unstorable_keys)]


class SweepCreate(RunCreate):
    """A parameter study: the base run spec (as for a single run) plus the parameter space.

    ``grid``: ``{"name": [values...]}``, every combination. ``list``: ``[{"name": value, ...}, ...]``,
    one child per set. ``lhs``/``sobol``/``random``: ``{"name": {"min": a, "max": b}}`` and ``samples``
    seeded draws (``seed`` makes them reproducible; without one the server picks and returns it).
    Each child's start values are its sample merged over ``start_values``."""

    method: SweepMethod
    parameters: ParameterSpace | list[StartValues] = Field(
        examples=[{"mu": [0.5, 1.0, 2.0]}, {"mu": {"min": 0.1, "max": 2.0}}, [{"mu": 1.0, "x0": 2.0}]])
    # The bound is the samples column's; settings and tiers cap the sweep's size far lower.
    samples: int | None = Field(None, ge=1, le=2**31 - 1, description="Number of samples (lhs, sobol, random).")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Seed of the sampler (lhs, sobol, random).")

    def base(self) -> RunCreate:
        """The base run spec, as the request gave it (unset fields stay unset)."""
        return RunCreate.model_validate(self.model_dump(include=set(RunCreate.model_fields), by_alias=True,
                                                        exclude_unset=True))


class SweepCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0


class SweepOut(BaseModel):
    id: str
    object: Literal["sweep"] = "sweep"
    fmu_id: str
    status: SweepStatus = Field(description="finished once every child is final; a failed child does not "
                                            "fail the sweep.")
    method: SweepMethod
    parameters: Any = Field(description="The parameter space as submitted.")
    parameter_names: list[str]
    samples: int | None
    seed: int | None
    spec: RunSpecOut = Field(description="The validated base spec every child starts from (a run's spec).")
    total: int = Field(description="Number of child runs.")
    counts: SweepCounts
    progress: float = Field(description="Fraction of the children that are final.")
    credits_held: int = Field(description="Credits held at submission for every child's worst case.")
    credits_charged: int = Field(description="What the children that ended have cost so far.")
    created_at: datetime
    finished_at: datetime | None


class SweepRunOut(RunOut):
    """A child run of a sweep, with its sample."""

    parameters: dict[str, ScalarValue | None]
