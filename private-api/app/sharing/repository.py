"""Every query of the fmu_grants table, and the usage figures of a shared model. Nothing here
commits: the request owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.billing.models import LedgerEntry
from app.runs.models import Run, RunStatus
from app.sharing.models import FmuGrant


def insert(session: Session, grant: FmuGrant) -> bool:
    """Store a new grant; False (and nothing stored) if the model has a live grant for that email."""
    try:
        with session.begin_nested():
            session.add(grant)
    except IntegrityError:
        return False
    return True


def count_live(session: Session, fmu_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(FmuGrant).where(
        FmuGrant.fmu_id == fmu_id, FmuGrant.revoked_at.is_(None))) or 0)


def of_fmu(fmu_id: str) -> Select[FmuGrant]:
    return select(FmuGrant).where(FmuGrant.fmu_id == fmu_id)


def get(session: Session, fmu_id: str, grant_id: str) -> FmuGrant | None:
    return session.scalar(of_fmu(fmu_id).where(FmuGrant.id == grant_id))


def revoke(session: Session, grant_id: str, now: datetime) -> None:
    session.execute(update(FmuGrant).where(FmuGrant.id == grant_id, FmuGrant.revoked_at.is_(None))
                    .values(revoked_at=now).execution_options(synchronize_session=False))


def _earned() -> Any:
    return func.coalesce(func.sum(LedgerEntry.amount), 0)


def runs_per_grant(session: Session, grant_ids: Sequence[str]) -> dict[str, int]:
    """grant id → runs under it (grants without runs left out)."""
    return {grant_id: int(runs) for grant_id, runs in session.execute(
        select(Run.grant_id, func.count()).where(Run.grant_id.in_(list(grant_ids))).group_by(Run.grant_id))
        if grant_id is not None}


def earnings_per_grant(session: Session, grant_ids: Sequence[str]) -> dict[str, int]:
    """grant id → credits its owner earned from the runs under it (grants without earnings left out)."""
    return {grant_id: int(earned) for grant_id, earned in session.execute(
        select(Run.grant_id, _earned()).join(LedgerEntry, and_(LedgerEntry.run_id == Run.id,
                                                              LedgerEntry.kind == "earning"))
        .where(Run.grant_id.in_(list(grant_ids))).group_by(Run.grant_id)) if grant_id is not None}


def usage_by_grantee(session: Session, fmu_id: str) -> Sequence[Row[str, str, int, int]]:
    """(grant id, email, runs, succeeded) of every grant of the model, newest grant first."""
    succeeded = func.coalesce(func.sum(case((Run.status == RunStatus.SUCCEEDED, 1), else_=0)), 0)
    return session.execute(
        select(FmuGrant.id, FmuGrant.email, func.count(Run.id), succeeded)
        .outerjoin(Run, Run.grant_id == FmuGrant.id).where(FmuGrant.fmu_id == fmu_id)
        .group_by(FmuGrant.id, FmuGrant.email).order_by(FmuGrant.id.desc())).all()


def runs_per_day(session: Session, fmu_id: str, since: datetime) -> Sequence[Row[Any, int]]:
    """(day, runs) of grantees' finished runs of the model since ``since``."""
    day = func.date(Run.finished_at)
    return session.execute(select(day, func.count()).where(
        Run.fmu_id == fmu_id, Run.grant_id.is_not(None), Run.finished_at >= since).group_by(day)).all()


def earnings_per_day(session: Session, owner_id: str, fmu_id: str, since: datetime) -> Sequence[Row[Any, Any]]:
    """(day, credits) the owner earned from grantees' runs of the model since ``since``."""
    day = func.date(LedgerEntry.created_at)
    return session.execute(
        select(day, _earned()).join(Run, Run.id == LedgerEntry.run_id)
        .where(LedgerEntry.user_id == owner_id, LedgerEntry.kind == "earning", LedgerEntry.created_at >= since,
               Run.fmu_id == fmu_id).group_by(day)).all()
