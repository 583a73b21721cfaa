from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.fmi.model_description import DefaultExperiment, Variable

# An FMU's own response carries at most this many variables (in model order); the rest are paged
# from GET /v1/fmus/{id}/variables, so no response grows with the model.
DETAIL_MAX_VARIABLES = 1000


class FmuSummary(BaseModel):
    id: str
    object: Literal["fmu"] = "fmu"
    sha256: str
    size: int
    filename: str | None
    fmi_version: str
    model_name: str
    description: str | None
    generation_tool: str | None
    guid: str
    supports_model_exchange: bool
    supports_co_simulation: bool
    default_experiment: DefaultExperiment | None
    platforms: list[str]
    variable_count: int = Field(description="How many variables the model declares.")
    created_at: datetime


class FmuDetail(FmuSummary):
    variables: list[Variable] = Field(description=(
        f"The model's first {DETAIL_MAX_VARIABLES} variables, in model order; all of them when "
        "`variable_count` is not larger. Page through the rest with GET /v1/fmus/{id}/variables."))
