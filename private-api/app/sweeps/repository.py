"""Every query of the sweeps table (their children are runs: app.runs.repository). Nothing here
commits: the request or the worker task that calls owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from app.sweeps.models import FINAL_SWEEP_STATUSES, Sweep, SweepStatus


def owned(user_id: str, *, fmu_id: str | None = None) -> Select[Sweep]:
    """The user's sweeps (the query every read of them starts from), of an FMU if given."""
    query = select(Sweep).where(Sweep.user_id == user_id)
    return query.where(Sweep.fmu_id == fmu_id) if fmu_id else query


def get_owned(session: Session, user_id: str, sweep_id: str) -> Sweep | None:
    return session.scalar(owned(user_id).where(Sweep.id == sweep_id))


def insert(session: Session, sweep: Sweep) -> None:
    session.add(sweep)
    session.flush()


def mark_finished(session: Session, sweep_id: str, now: datetime) -> tuple[str, datetime | None]:
    """finished, unless the sweep is final already; the row's status and finished_at as they are now."""
    written = session.execute(
        update(Sweep).where(Sweep.id == sweep_id, Sweep.status.not_in(FINAL_SWEEP_STATUSES))
        .values(status=SweepStatus.FINISHED, finished_at=now).returning(Sweep.status, Sweep.finished_at)
        .execution_options(synchronize_session=False)).one_or_none()
    row = written or session.execute(select(Sweep.status, Sweep.finished_at).where(Sweep.id == sweep_id)).one()
    return row.status, row.finished_at


def mark_cancelled(session: Session, sweep_id: str, now: datetime) -> None:
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(status=SweepStatus.CANCELLED, finished_at=now)
                    .execution_options(synchronize_session=False))
