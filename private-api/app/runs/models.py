from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.models import Base, JSONType, UTCDateTime, new_id, utcnow


# Which changes of status happen, and what each costs, is app.runs.lifecycle's alone to say.
class RunStatus(StrEnum):
    """queued → running → succeeded, failed or timed_out; queued or running → cancelled. A run whose worker was lost goes back to queued, and fails (refunded) after too many attempts."""  # noqa: E501

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED)
# Where a run may go from each status; final statuses lead nowhere.
TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset({RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT,
                                  RunStatus.CANCELLED}),
}


class IllegalTransition(ValueError):
    """A change the lifecycle does not allow (a programming error, never a request's)."""


def check_transition(sources: tuple[RunStatus, ...], target: RunStatus) -> None:
    for source in sources:
        if target not in TRANSITIONS.get(source, frozenset()):
            raise IllegalTransition(f"a run cannot go from {source} to {target}")


class Run(Base):
    __tablename__ = "runs"
    # A retried submission with the same Idempotency-Key finds the run it already created.
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key"),
                      Index("ix_runs_unexpired_finished_at", "result_expired_at", "finished_at"),
                      # Whose turn it is (app.runs.scheduling): queued runs by user, oldest first.
                      Index("ix_runs_status_user", "status", "user_id", "created_at"),
                      # The run cache: a tenant's succeeded runs by what they computed.
                      Index("ix_runs_user_cache_key", "user_id", "cache_key"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("run"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    fmu_id: Mapped[str] = mapped_column(ForeignKey("fmus.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED, index=True)
    # The validated run spec exactly as handed to the sandbox runner.
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Held at submission for the worst case; the charge is settled from it when the run ends.
    credits_held: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    credits_charged: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # sha256 of the submitted request, so a reused key with another body is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    result_rows: Mapped[int | None] = mapped_column(Integer)
    result_columns: Mapped[list[str] | None] = mapped_column(JSONType)
    result_bytes: Mapped[int | None] = mapped_column(BigInteger)
    wall_time_s: Mapped[float | None] = mapped_column(Float)
    cpu_time_s: Mapped[float | None] = mapped_column(Float)
    max_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # A child of a sweep: its position in the sweep's samples (its start values are in ``spec``).
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    sweep_index: Mapped[int | None] = mapped_column(Integer)
    # Dispatch outbox: set once the run has been handed to the queue; a relay hands over the rest.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker executing the run holds a lease it renews; a lapsed lease means the worker is gone.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the tier's retention removed the result and log (the run itself stays listed).
    result_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A run of a model shared with its user: the grant, and the part of the hold that goes to the
    # model's owner when the run succeeds (app.billing.credits.pay_owners).
    grant_id: Mapped[str | None] = mapped_column(String(40))
    owner_credits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the run computes (app.runs.cache.cache_key); None: not to be served from, nor kept in, the cache.
    cache_key: Mapped[str | None] = mapped_column(String(64))
    # Served from the run cache: the earlier run whose result and log this run's are.
    cached_from: Mapped[str | None] = mapped_column(String(40))
