from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from app.fmi.model_description import DefaultExperiment, Variable


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
    created_at: datetime


class FmuDetail(FmuSummary):
    variables: list[Variable]
