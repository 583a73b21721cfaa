from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.kit.schemas import reject_unstorable

# What an owner may ask per run: a credit is a cent, so up to 10,000 USD a run.
MAX_PRICE_CREDITS_PER_RUN = 1_000_000
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
                  AfterValidator(reject_unstorable)]


class GrantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email = Field(description="Who may run the model: the user who has (or later signs up with) this email.")
    price_credits_per_run: int = Field(0, ge=0, le=MAX_PRICE_CREDITS_PER_RUN, description=(
        "Credits the grantee pays you for each of their runs that succeeds, on top of the platform's price; "
        "your tier's platform fee is taken from it."))


class GrantOut(BaseModel):
    id: str
    object: Literal["grant"] = "grant"
    fmu_id: str
    email: str
    price_credits_per_run: int
    created_at: datetime
    revoked_at: datetime | None = Field(description="Since then the grantee can start no run of the model.")
    runs: int = Field(description="Runs the grantee has made of the model under this grant.")
    earned_credits: int = Field(description="What you earned from them, after the platform fee.")


class GranteeUsage(BaseModel):
    grant_id: str
    email: str
    runs: int
    succeeded: int
    earned_credits: int


class DailyEarnings(BaseModel):
    day: date
    runs: int = Field(description="Runs of the model by grantees that finished that day (UTC).")
    earned_credits: int


class FmuUsage(BaseModel):
    object: Literal["fmu_usage"] = "fmu_usage"
    fmu_id: str
    by_grantee: list[GranteeUsage]
    by_day: list[DailyEarnings] = Field(description="The last 90 days with runs, newest first.")
