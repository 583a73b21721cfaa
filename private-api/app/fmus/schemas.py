from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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
    deterministic: bool = Field(True, description=(
        "Whether the same inputs give the same result; false (the model uses randomness or wall-clock time) "
        "keeps its runs out of the run cache."))
    shared_by: str | None = Field(None, description=(
        "Set when another user shared this model with you: their display name (or user id), never their email. "
        "You can read its variables and run it; its files stay out of reach."))
    price_credits_per_run: int | None = Field(None, description=(
        "A shared model's price: credits each of your runs that succeeds pays its owner, on top of the "
        "platform's price."))
    created_at: datetime


class FmuDetail(FmuSummary):
    variables: list[Variable] = Field(description=(
        f"The model's first {DETAIL_MAX_VARIABLES} variables, in model order; all of them when "
        "`variable_count` is not larger. Page through the rest with GET /v1/fmus/{id}/variables."))


class FmuUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deterministic: bool = Field(description="False: the model uses randomness or wall-clock time; its runs are "
                                            "never served from the run cache.")
