"""Every query of the runs table. The statements that change a run's status are called by
``app.runs.lifecycle`` alone, which decides which change may happen and settles final runs
(tests/test_run_lifecycle.py holds both to it). Statements a run's path runs on every request are
built once, at import: building one per call (coercions, cache keys) cost more than SQLite takes
to run it.

Nothing here commits: the request or the worker task that calls owns the transaction."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from app.auth.models import User
from app.fmus.models import Fmu
from app.runs.models import ACTIVE_STATUSES, Run, RunStatus, check_transition
from app.runs.scheduling import Waiting
from app.sweeps.models import Sweep

RUNS = cast(Table, Run.__table__)
QUEUED, RUNNING, CANCELLED = RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLED


# -- reads ------------------------------------------------------------------------------------

def owned(user_id: str, *, status: str | None = None, fmu_id: str | None = None) -> Select[Run]:
    """The user's runs (the query every read of them starts from), of a status or an FMU if given."""
    query = select(Run).where(Run.user_id == user_id)
    if status:
        query = query.where(Run.status == status)
    if fmu_id:
        query = query.where(Run.fmu_id == fmu_id)
    return query


def get_owned(session: Session, user_id: str, run_id: str) -> Run | None:
    return session.scalar(owned(user_id).where(Run.id == run_id))


def to_execute(session: Session, run_id: str) -> Row[Any] | None:
    """What executing a run needs (none of it changes once queued), with its FMU and sweep size."""
    return session.execute(
        select(Run.status, Run.spec, Run.user_id, Run.sweep_id, Run.sweep_index, Sweep.total, Fmu.id,
               Fmu.sha256, Fmu.reset_exact, Fmu.reset_checked_by)
        .join(Fmu, Fmu.id == Run.fmu_id).outerjoin(Sweep, Sweep.id == Run.sweep_id)
        .where(Run.id == run_id)).one_or_none()


def statuses(session: Session, run_ids: Sequence[str]) -> Sequence[Row[str, str, str | None]]:
    """(id, status, lease_owner) of each run."""
    return session.execute(select(Run.id, Run.status, Run.lease_owner).where(Run.id.in_(list(run_ids)))).all()


_STATUS_OF = select(RUNS.c.status).where(RUNS.c.id == bindparam("b_id"))


def status_of(session: Session, run_id: str) -> str | None:
    status: str | None = session.connection().execute(_STATUS_OF, {"b_id": run_id}).scalar()
    return status


def result_expired_at(session: Session, run_id: str) -> datetime | None:
    expired: datetime | None = session.scalar(select(Run.result_expired_at).where(Run.id == run_id))
    return expired


def an_active_run_of_fmu(session: Session, fmu_id: str) -> str | None:
    """The id of one active run of the FMU, if it has any."""
    return session.scalar(select(Run.id).where(Run.fmu_id == fmu_id, Run.status.in_(ACTIVE_STATUSES)).limit(1))


# COUNT(sweep_id) and COUNT(DISTINCT sweep_id) skip the NULLs of single runs.
_ACTIVE_RUNS = (select(func.count() - func.count(Run.sweep_id), func.count(func.distinct(Run.sweep_id)))
                .where(Run.user_id == bindparam("b_user"), Run.status.in_(ACTIVE_STATUSES)))


def count_active(session: Session, user_id: str) -> tuple[int, int]:
    """The user's active single runs and active sweeps (a sweep's children count as one)."""
    counted = session.execute(_ACTIVE_RUNS, {"b_user": user_id}).one()
    return int(counted[0] or 0), int(counted[1] or 0)


def queued_per_user(session: Session, limit: int) -> list[tuple[str, int]]:
    """(user id, queued runs) of the ``limit`` users with the most queued runs."""
    count = func.count()
    return [(row[0], int(row[1])) for row in session.execute(
        select(Run.user_id, count).where(Run.status == QUEUED).group_by(Run.user_id).order_by(count.desc())
        .limit(limit))]


def credits_held_by_active(session: Session, user_id: str) -> int:
    """What the user's active runs hold."""
    return int(session.scalar(select(func.coalesce(func.sum(Run.credits_held), 0)).where(
        Run.user_id == user_id, Run.status.in_(ACTIVE_STATUSES))) or 0)


def get_many(session: Session, run_ids: Sequence[str]) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.id.in_(list(run_ids)))))


def cached_results(session: Session, user_id: str, keys: Sequence[str]) -> dict[str, Row[Any]]:
    """cache key → (cache_key, id, result_rows, result_columns, result_bytes) of a run of the user
    that computed it (succeeded, not itself a hit, its result still kept), for those of ``keys`` found."""
    if not keys:
        return {}
    rows = session.execute(
        select(Run.cache_key, Run.id, Run.result_rows, Run.result_columns, Run.result_bytes)
        .where(Run.user_id == user_id, Run.cache_key.in_(list(keys)), Run.status == RunStatus.SUCCEEDED,
               Run.cached_from.is_(None), Run.result_expired_at.is_(None))).all()
    return {row.cache_key: cast(Row[Any], row) for row in rows if row.cache_key is not None}


# -- result retention ---------------------------------------------------------------------------

def past_retention(session: Session, cutoffs: Mapping[str, datetime], limit: int) -> list[str]:
    """Up to ``limit`` final runs whose files are still stored and that finished before their
    user's tier's cutoff (``cutoffs``: tier id → cutoff; users of other tiers keep theirs)."""
    past = or_(*(and_(User.tier == tier, Run.finished_at < cutoff) for tier, cutoff in cutoffs.items()))
    return list(session.scalars(select(Run.id).join(User, User.id == Run.user_id)
                                .where(Run.result_expired_at.is_(None), Run.finished_at.is_not(None), past)
                                .order_by(Run.finished_at).limit(limit)))


def mark_expired(session: Session, run_ids: Sequence[str], now: datetime) -> None:
    """The runs' files are going, and with them those of every run served from them (the run cache)."""
    ids = list(run_ids)
    session.execute(update(Run).where(or_(Run.id.in_(ids), Run.cached_from.in_(ids)), Run.result_expired_at.is_(None))
                    .values(result_expired_at=now).execution_options(synchronize_session=False))


# -- a sweep's children -------------------------------------------------------------------------

def insert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """New runs from their columns (``lifecycle.queued``): one multi-row INSERT."""
    session.execute(insert(Run), rows)


def child_counts(session: Session, sweep_ids: Sequence[str]) -> Sequence[Row[str | None, str, int, int]]:
    """(sweep_id, status, count, credits charged) of the sweeps' children, by status."""
    return session.execute(
        select(Run.sweep_id, Run.status, func.count(), func.coalesce(func.sum(Run.credits_charged), 0))
        .where(Run.sweep_id.in_(list(sweep_ids))).group_by(Run.sweep_id, Run.status)).all()


def child_batches(session: Session, sweep_id: str, batch: int) -> Iterator[Sequence[Row[Any]]]:
    """(id, sweep_index, status, error_code, spec, cached_from) of the sweep's children in sweep
    order, ``batch`` at a time."""
    after = -1
    while True:
        rows = session.execute(select(Run.id, Run.sweep_index, Run.status, Run.error_code, Run.spec, Run.cached_from)
                               .where(Run.sweep_id == sweep_id, Run.sweep_index > after)
                               .order_by(Run.sweep_index).limit(batch)).all()
        yield rows
        if len(rows) < batch:
            return
        after = rows[-1].sweep_index


def children_page(session: Session, sweep_id: str, limit: int, *, after_index: int | None = None,
                  status: str | None = None) -> list[Run]:
    """Up to ``limit`` children after ``after_index``, in sweep order."""
    query = select(Run).where(Run.sweep_id == sweep_id)
    if status:
        query = query.where(Run.status == status)
    if after_index is not None:
        query = query.where(Run.sweep_index > after_index)
    return list(session.scalars(query.order_by(Run.sweep_index).limit(limit)))


def active_children(session: Session, sweep_id: str) -> list[str]:
    return list(session.scalars(select(Run.id).where(Run.sweep_id == sweep_id, Run.status.in_(ACTIVE_STATUSES))
                                .order_by(Run.sweep_index)))


# -- turns across tenants (app.runs.scheduling) ---------------------------------------------

_OWNER = aliased(Run)
_OWNER_OF = select(_OWNER.user_id).where(_OWNER.id == bindparam("b_run")).scalar_subquery()
# Two range scans of ix_runs_status_user (below and above the owner): as cheap with one tenant's
# 10,000 children queued as with none.
_OTHERS_QUEUED = select(or_(exists().where(Run.status == QUEUED, Run.user_id < _OWNER_OF),
                            exists().where(Run.status == QUEUED, Run.user_id > _OWNER_OF)))
_WAITING = (select(func.sum(case((Run.status == RUNNING, 1), else_=0)),
                   func.min(case((Run.status == QUEUED, Run.created_at))), Run.user_id)
            .where(Run.status.in_((QUEUED, RUNNING))).group_by(Run.user_id)
            .having(func.min(case((Run.status == QUEUED, Run.created_at))).is_not(None)))


def others_queued(session: Session, run_id: str) -> bool:
    """Whether a user other than ``run_id``'s owner has a run queued."""
    return bool(session.scalar(_OTHERS_QUEUED, {"b_run": run_id}))


def owner_of(session: Session, run_id: str) -> str | None:
    return session.scalar(select(Run.user_id).where(Run.id == run_id))


def waiting_tenants(session: Session) -> list[Waiting]:
    """Every user with a run queued, with how many of their runs are running."""
    return [Waiting(int(running or 0), first, user_id) for running, first, user_id in session.execute(_WAITING)]


def oldest_queued_of(session: Session, user_id: str) -> str | None:
    return session.scalar(select(Run.id).where(Run.status == QUEUED, Run.user_id == user_id)
                          .order_by(Run.created_at, Run.sweep_index).limit(1))


# -- hand-over to workers ---------------------------------------------------------------------

def mark_enqueued(session: Session, run_ids: Sequence[str], now: datetime) -> None:
    """Stamp runs handed over by a sender that stamps after the hand-over (those not stamped yet)."""
    session.execute(update(Run).where(Run.id.in_(run_ids), Run.enqueued_at.is_(None))
                    .values(enqueued_at=now).execution_options(synchronize_session=False))


def due_for_relay(started: datetime, now: datetime, fresh_s: float, redeliver_s: float | None) -> ColumnElement[bool]:
    """Queued runs not handed over since ``started``: never handed over (and older than ``fresh_s``),
    or handed over ``redeliver_s`` ago; ``redeliver_s`` None: every queued run."""
    due = and_(Run.status == QUEUED, or_(Run.enqueued_at.is_(None), Run.enqueued_at < started))
    if redeliver_s is None:
        return due
    return and_(due, or_(and_(Run.enqueued_at.is_(None), Run.created_at < now - timedelta(seconds=fresh_s)),
                         Run.enqueued_at < now - timedelta(seconds=redeliver_s)))


def any_where(session: Session, condition: ColumnElement[bool]) -> bool:
    return session.scalar(select(Run.id).where(condition).limit(1)) is not None


def stamp_due(session: Session, due: ColumnElement[bool], now: datetime,
              limit: int) -> Sequence[Row[str, str | None, datetime | None]]:
    """(id, sweep_id, enqueued_at as it was) of up to ``limit`` due runs, oldest first, stamped
    ``enqueued_at = now``; rows another relay holds are skipped."""
    rows = session.execute(select(Run.id, Run.sweep_id, Run.enqueued_at).where(due)
                           .order_by(Run.created_at, Run.sweep_index).limit(limit)
                           .with_for_update(skip_locked=True)).all()
    if rows:
        session.execute(update(Run).where(Run.id.in_([row.id for row in rows])).values(enqueued_at=now)
                        .execution_options(synchronize_session=False))
    return rows


def unstamp(session: Session, run_ids: Sequence[str], stamped: datetime) -> None:
    """Undo ``stamp_due`` for runs whose hand-over failed (those still stamped ``stamped``)."""
    session.execute(update(Run).where(Run.id.in_(list(run_ids)), Run.enqueued_at == stamped)
                    .values(enqueued_at=None).execution_options(synchronize_session=False))


def renew_leases(session: Session, run_ids: Sequence[str], owner: str, expires: datetime) -> None:
    session.execute(update(Run).where(Run.id.in_(list(run_ids)), Run.status == RUNNING, Run.lease_owner == owner)
                    .values(lease_expires_at=expires).execution_options(synchronize_session=False))


def lapsed_lease(now: datetime) -> ColumnElement[bool]:
    return or_(Run.lease_expires_at < now, Run.lease_expires_at.is_(None))


def any_lapsed(session: Session, now: datetime) -> bool:
    """Whether a running run's lease lapsed, or a run cancelled while running was never settled."""
    return any_where(session, or_(and_(Run.status == RUNNING, lapsed_lease(now)),
                                  and_(Run.status == CANCELLED, Run.lease_expires_at < now)))


# -- credits ------------------------------------------------------------------------------------

_SET_CHARGED = update(RUNS).where(RUNS.c.id == bindparam("b_id")).values(credits_charged=bindparam("b_charged"))


def set_charged(session: Session, charges: list[dict[str, Any]]) -> None:
    """``credits_charged`` of each run: ``charges`` holds ``{"b_id": run id, "b_charged": credits}``."""
    session.connection().execute(_SET_CHARGED, charges)


# -- status changes: app.runs.lifecycle's alone ---------------------------------------------------

def _move(sources: tuple[RunStatus, ...], target: RunStatus) -> Update:
    """The conditional UPDATE of every status change: only rows still in one of ``sources`` move."""
    check_transition(sources, target)
    where = Run.status == sources[0] if len(sources) == 1 else Run.status.in_(sources)
    return update(Run).where(where).values(status=target).execution_options(synchronize_session=False)


_CLAIM = (_move((QUEUED,), RUNNING).where(Run.id == bindparam("b_id"))
          .values(started_at=bindparam("started_at"), lease_owner=bindparam("lease_owner"),
                  lease_expires_at=bindparam("lease_expires_at"), attempts=Run.attempts + 1))


def claim(session: Session, run_id: str, values: Mapping[str, Any]) -> bool:
    """queued → running with ``values`` (started_at, lease_owner, lease_expires_at)."""
    won: int = session.connection().execute(_CLAIM, {**values, "b_id": run_id}).rowcount
    return won > 0


def claim_children(session: Session, sweep_id: str, owner: str, expires: datetime, limit: int) -> list[Row[Any]]:
    """queued → running for up to ``limit`` children of a sweep in sweep order, skipping rows
    another claim has locked; (id, spec) of those won."""
    candidates = list(session.scalars(select(Run.id).where(Run.sweep_id == sweep_id, Run.status == QUEUED)
                                      .order_by(Run.sweep_index).limit(limit).with_for_update(skip_locked=True)))
    if not candidates:
        return []
    won = set(session.scalars(
        _move((QUEUED,), RUNNING).where(Run.id.in_(candidates))
        .values(lease_owner=owner, lease_expires_at=expires, attempts=Run.attempts + 1).returning(Run.id)))
    return list(session.execute(select(Run.id, Run.spec).where(Run.id.in_(won)).order_by(Run.sweep_index)))


# The columns a finish writes; a chunk's children are finished in one executemany of them all.
FINAL_COLUMNS = ("status", "error_code", "error_message", "wall_time_s", "cpu_time_s", "max_rss_bytes",
                 "result_rows", "result_columns", "result_bytes", "started_at", "finished_at", "lease_expires_at")
# The row must still be running under the finishing worker's lease; a claimed start time is kept.
_FINISH_ONE = (
    update(RUNS).where(RUNS.c.id == bindparam("b_id"), RUNS.c.status == RUNNING,
                       RUNS.c.lease_owner == bindparam("b_owner"))
    .values({column: bindparam(column) for column in FINAL_COLUMNS if column != "started_at"})
    .values(started_at=func.coalesce(RUNS.c.started_at, bindparam("started_at")))
    .returning(*RUNS.c))


def finish_one(session: Session, run_id: str, owner: str, values: Mapping[str, Any]) -> Run | None:
    """running → final with ``values`` (every FINAL_COLUMNS; the lifecycle checked the change), if
    ``owner`` still holds it: the row as written, a detached Run that nothing loads again."""
    row = session.connection().execute(_FINISH_ONE, {**values, "b_id": run_id, "b_owner": owner}).one_or_none()
    return None if row is None else Run(**row._mapping)


def lock_running(session: Session, run_ids: Sequence[str], owner: str) -> list[Run]:
    """The runs among ``run_ids`` still running under ``owner``'s lease, locked."""
    return list(session.scalars(select(Run).where(Run.id.in_(list(run_ids)), Run.status == RUNNING,
                                                  Run.lease_owner == owner).with_for_update()))


def finish_many(session: Session, rows: list[dict[str, Any]], owner: str) -> None:
    """running → final for each row (``b_id`` and every FINAL_COLUMNS), in one executemany; the
    status and lease are re-checked in the WHERE (Core, not the ORM's bulk UPDATE, for that)."""
    statement = (update(RUNS)
                 .where(RUNS.c.id == bindparam("b_id"), RUNS.c.status == RUNNING, RUNS.c.lease_owner == owner)
                 .values({column: bindparam(column) for column in FINAL_COLUMNS}))
    session.connection().execute(statement, rows)


def release(session: Session, run_id: str, owner: str) -> None:
    """running → queued, its attempt not counted, for the relay to hand over again."""
    session.execute(_move((RUNNING,), QUEUED).where(Run.id == run_id, Run.lease_owner == owner)
                    .values(started_at=None, lease_owner=None, lease_expires_at=None, enqueued_at=None,
                            attempts=Run.attempts - 1))


def cancel_from(session: Session, run_id: str, source: RunStatus, now: datetime) -> bool:
    """``source`` → cancelled; whether the row was in ``source``."""
    moved: int = session.execute(
        _move((source,), CANCELLED).where(Run.id == run_id)
        .values(finished_at=now, error_code="cancelled", error_message=f"cancelled while {source}")
    ).rowcount  # type: ignore[attr-defined]
    return moved > 0


def end_cancelled(session: Session, run_id: str, values: Mapping[str, Any], *, owner: str | None = None,
                  lapsed_at: datetime | None = None) -> Run | None:
    """A run cancelled while running, whose lease is still on the row (it is not settled yet):
    the lease ended and ``values`` recorded; the run as written, or None if it is not (any more)
    such a run, or not ``owner``'s, or its lease has not lapsed at ``lapsed_at``."""
    where = [Run.id == run_id, Run.status == CANCELLED, Run.lease_expires_at.is_not(None)]
    if owner is not None:
        where.append(Run.lease_owner == owner)
    if lapsed_at is not None:
        where.append(Run.lease_expires_at < lapsed_at)
    return session.scalar(update(Run).where(*where).values(lease_expires_at=None, **values).returning(Run)
                          .execution_options(synchronize_session=False))


def lock_lapsed_cancelled(session: Session, now: datetime, limit: int) -> list[str]:
    """Runs cancelled while running whose worker never settled them before their lease lapsed."""
    return list(session.scalars(select(Run.id).where(Run.status == CANCELLED, Run.lease_expires_at < now)
                                .order_by(Run.lease_expires_at).limit(limit).with_for_update(skip_locked=True)))


def lock_lapsed(session: Session, now: datetime, limit: int) -> Sequence[Row[str, int]]:
    """(id, attempts) of running runs under a lapsed lease, oldest lease first; rows another
    process holds are skipped."""
    return session.execute(select(Run.id, Run.attempts).where(Run.status == RUNNING, lapsed_lease(now))
                           .order_by(Run.lease_expires_at).limit(limit).with_for_update(skip_locked=True)).all()


def requeue_lapsed(session: Session, run_id: str, now: datetime) -> bool:
    """running → queued if its lease is still lapsed; whether it moved."""
    won: int = session.execute(_move((RUNNING,), QUEUED).where(Run.id == run_id, lapsed_lease(now)).values(
        started_at=None, lease_owner=None, lease_expires_at=None, enqueued_at=None)
    ).rowcount  # type: ignore[attr-defined]
    return won > 0


def fail_lapsed(session: Session, run_id: str, now: datetime, message: str) -> Run | None:
    """running → failed (worker_lost) if its lease is still lapsed: the run as written."""
    return session.scalar(_move((RUNNING,), RunStatus.FAILED).where(Run.id == run_id, lapsed_lease(now)).values(
        error_code="worker_lost", finished_at=now, lease_expires_at=None, error_message=message).returning(Run))
