from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.models import Base, JSONType, UTCDateTime, new_id, utcnow


class SweepStatus(StrEnum):
    """queued → running → finished (every child final) or cancelled."""

    # Only finished and cancelled are stored; the others are derived from the children when read.
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


FINAL_SWEEP_STATUSES = (SweepStatus.FINISHED, SweepStatus.CANCELLED)


class Sweep(Base):
    """A parameter study: one base run spec and N child runs (``runs.sweep_id``), each with its
    own start values. The children are the source of truth for progress; the sweep is final once
    every child is."""

    __tablename__ = "sweeps"
    # A retried creation with the same Idempotency-Key finds the sweep it already created.
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("swp"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    fmu_id: Mapped[str] = mapped_column(ForeignKey("fmus.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=SweepStatus.QUEUED, index=True)
    method: Mapped[str] = mapped_column(String(16))
    # The parameter space as submitted (values lists, explicit sets, or ranges).
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType)
    samples: Mapped[int | None] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(Integer)
    # The validated base spec every child starts from.
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    total: Mapped[int] = mapped_column(Integer)
    credits_held: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # sha256 of the submitted request, so a reused key with another body is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
