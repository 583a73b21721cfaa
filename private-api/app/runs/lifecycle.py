"""The run lifecycle in one place: every change of a run's status, and what each final run costs.

    queued ──claim──▶ running ──finish──▶ succeeded │ failed │ timed_out
      │                 ├──release (shutdown) / requeue (lease lapsed)──▶ queued
      │                 ├──fail_lost (lease lapsed too often)───────────▶ failed
      └─────cancel──────┴─────cancel────────────────────────────────────▶ cancelled

Each change is one conditional UPDATE whose WHERE names the statuses it may leave (``_move``,
checked against ``TRANSITIONS``): of two processes racing for a run exactly one wins, and the
other learns it from the row count. A run that becomes final is settled here, in the same
transaction (``_settle``): a failure of the platform is refunded, anything else is charged for
what it used, never more than it held. Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Row, Table, Update, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.billing import credits, pricing
from app.billing.stripe_service import StripeService
from app.kit.models import utcnow
from app.runs.models import ACTIVE_STATUSES, Run, RunStatus

QUEUED, RUNNING, CANCELLED = RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLED
# Where a run may go from each status; final statuses lead nowhere.
TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, CANCELLED}),
}
# Failures that are the platform's fault, not the model's: the run's credits are refunded.
PLATFORM_ERRORS = frozenset({"sandbox_error", "runner_error", "internal_error", "worker_lost"})


class IllegalTransition(ValueError):
    """A change the lifecycle does not allow (a programming error, never a request's)."""


def _check(sources: tuple[RunStatus, ...], target: RunStatus) -> None:
    for source in sources:
        if target not in TRANSITIONS.get(source, frozenset()):
            raise IllegalTransition(f"a run cannot go from {source} to {target}")


def _move(sources: tuple[RunStatus, ...], target: RunStatus) -> Update:
    """The conditional UPDATE of every status change: only rows still in one of ``sources`` move."""
    _check(sources, target)
    where = Run.status == sources[0] if len(sources) == 1 else Run.status.in_(sources)
    return update(Run).where(where).values(status=target).execution_options(synchronize_session=False)


def queued(**fields: Any) -> dict[str, Any]:
    """The columns of a new run (a single run or a sweep's child): it starts queued, unpaid."""
    return {**fields, "status": QUEUED, "credits_charged": 0, "attempts": 0}


# Every run's claim, built once (building it per call cost more than running it), in Core.
_CLAIM = (_move((QUEUED,), RUNNING).where(Run.id == bindparam("b_id"))
          .values(started_at=bindparam("started_at"), lease_owner=bindparam("lease_owner"),
                  lease_expires_at=bindparam("lease_expires_at"), attempts=Run.attempts + 1))


def claim(session: Session, run_id: str, owner: str, expires: datetime, loaded: Run | None = None) -> bool:
    """queued → running under ``owner``'s lease; False if another worker (or a cancel) was first.
    ``loaded``: the run as this session holds it (just created), told what was written."""
    values = {"started_at": utcnow(), "lease_owner": owner, "lease_expires_at": expires}
    won = session.connection().execute(_CLAIM, {**values, "b_id": run_id}).rowcount
    if won and loaded is not None:
        for key, value in {**values, "status": RUNNING, "attempts": loaded.attempts + 1}.items():
            set_committed_value(loaded, key, value)
    return won > 0


def claim_children(session: Session, sweep_id: str, owner: str, expires: datetime,
                   limit: int) -> list[Row[Any]]:
    """Up to ``limit`` more queued children of a sweep, in sweep order, to run as one chunk:
    (id, spec) of those won. Their ``started_at`` stays empty until each really starts.
    Concurrent claims take disjoint children (rows another claim has locked are skipped): each
    gets a full chunk while enough are queued, which the sweep's sparse messages rely on."""
    candidates = list(session.scalars(select(Run.id).where(Run.sweep_id == sweep_id, Run.status == QUEUED)
                                      .order_by(Run.sweep_index).limit(limit).with_for_update(skip_locked=True)))
    if not candidates:
        return []
    won = set(session.scalars(
        _move((QUEUED,), RUNNING).where(Run.id.in_(candidates))
        .values(lease_owner=owner, lease_expires_at=expires, attempts=Run.attempts + 1).returning(Run.id)))
    return list(session.execute(select(Run.id, Run.spec).where(Run.id.in_(won)).order_by(Run.sweep_index)))


_RUNS = cast(Table, Run.__table__)
# A run moves between queued and running a few times at most (claimed, given back at a shutdown).
_CANCEL_ATTEMPTS = 5
# The columns a finish writes; a chunk's children are finished in one executemany of them all.
_FINAL_COLUMNS = ("status", "error_code", "error_message", "wall_time_s", "cpu_time_s", "max_rss_bytes",
                  "result_rows", "result_columns", "result_bytes", "started_at", "finished_at", "lease_expires_at")
# Every single run's finish, built once (building it per call cost more than running it): the row
# must still be running under the finishing worker's lease; a claimed start time is kept.
_FINISH_ONE = (
    update(_RUNS).where(_RUNS.c.id == bindparam("b_id"), _RUNS.c.status == RUNNING,
                        _RUNS.c.lease_owner == bindparam("b_owner"))
    .values({column: bindparam(column) for column in _FINAL_COLUMNS if column != "started_at"})
    .values(started_at=func.coalesce(_RUNS.c.started_at, bindparam("started_at")))
    .returning(*_RUNS.c))


def finish(session: Session, outcomes: Mapping[str, Mapping[str, Any]], owner: str) -> list[Run]:
    """running → the outcome's status, for each run ``owner`` still holds, settled. ``outcomes``
    maps run ids to the columns to record (``status`` among them). Returns the runs recorded."""
    for fields in outcomes.values():
        _check((RUNNING,), RunStatus(fields["status"]))  # before anything is written
    runs = _finish_one(session, *next(iter(outcomes.items())), owner) if len(outcomes) == 1 else \
        _finish_many(session, outcomes, owner)
    charges: list[tuple[Run, int, str]] = []
    refunds: list[tuple[Run, str]] = []
    for run in runs:
        fields = outcomes[run.id]
        if fields.get("error_code") in PLATFORM_ERRORS:
            refunds.append((run, fields["error_code"]))
        else:
            cpu = fields.get("cpu_time_s")
            charges.append((run, pricing.run_cost(cpu, run.credits_held), f" ({cpu or 0:.3f} CPU-s)"))
    _settle(session, charges, refunds)
    return runs


def _finish_one(session: Session, run_id: str, fields: Mapping[str, Any], owner: str) -> list[Run]:
    """A single run: one UPDATE … RETURNING, the statement built once (``_FINISH_ONE``); the row
    comes back as a detached ``Run`` that nothing loads again. Columns the outcome does not name
    are written empty: a running run has none of them yet."""
    now = utcnow()
    params = {column: fields.get(column) for column in _FINAL_COLUMNS}
    params.update(status=RunStatus(fields["status"]), finished_at=now, lease_expires_at=None,
                  started_at=fields.get("started_at") or now, b_id=run_id, b_owner=owner)
    row = session.connection().execute(_FINISH_ONE, params).one_or_none()
    return [] if row is None else [Run(**row._mapping)]


def _finish_many(session: Session, outcomes: Mapping[str, Mapping[str, Any]], owner: str) -> list[Run]:
    """A chunk's children: the rows still ours, locked, then one executemany by primary key whose
    values are also set on the loaded rows (what the database now holds: no read back)."""
    runs = list(session.scalars(select(Run).where(Run.id.in_(list(outcomes)), Run.status == RUNNING,
                                                  Run.lease_owner == owner).with_for_update()))
    if not runs:
        return []
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for run in runs:
        fields = outcomes[run.id]
        values = {column: fields.get(column, getattr(run, column)) for column in _FINAL_COLUMNS}
        values.update(status=RunStatus(fields["status"]), finished_at=now, lease_expires_at=None,
                      started_at=run.started_at or fields.get("started_at") or now)
        for column, value in values.items():
            set_committed_value(run, column, value)
        rows.append({"b_id": run.id, **values})
    # Core, not the ORM's bulk UPDATE: the row's status and lease are re-checked in the WHERE.
    statement = (update(_RUNS)
                 .where(_RUNS.c.id == bindparam("b_id"), _RUNS.c.status == RUNNING, _RUNS.c.lease_owner == owner)
                 .values({column: bindparam(column) for column in _FINAL_COLUMNS}))
    session.connection().execute(statement, rows)
    return runs


def release(session: Session, run_id: str, owner: str) -> None:
    """running → queued when ``owner`` shuts down mid-run: not the run's fault, so the attempt
    does not count, and the relay hands it over again."""
    session.execute(_move((RUNNING,), QUEUED).where(Run.id == run_id, Run.lease_owner == owner)
                    .values(started_at=None, lease_owner=None, lease_expires_at=None, enqueued_at=None,
                            attempts=Run.attempts - 1))


def cancel(session: Session, run: Run) -> RunStatus | None:
    """queued or running → cancelled, settled at once (the worker may be in another process, or
    gone): a queued run costs nothing, a running one its time so far. Returns the status the run
    left, as the UPDATE that moved it found it (``run`` may have been read before a worker claimed
    it); None if it was final already."""
    previous = _cancel_row(session, run.id)
    session.refresh(run)
    if previous is None:
        return None
    # A sweep child claimed with its chunk has no started_at until it really starts: it costs nothing.
    ran = previous == RUNNING and run.started_at is not None and run.finished_at is not None
    used = (run.finished_at - run.started_at).total_seconds() if ran else 0.0  # type: ignore[operator]
    _settle(session, [(run, pricing.run_cost(used, run.credits_held) if ran else 0,
                       f" (cancelled while {previous})")], [])
    return previous


def _cancel_row(session: Session, run_id: str) -> RunStatus | None:
    """One conditional UPDATE per active status, so that the one that moves the row names the
    status it left (an UPDATE returns the values it wrote, not those it replaced); again if the
    run changed status between them (claimed, or given back)."""
    for _ in range(_CANCEL_ATTEMPTS):
        for source in ACTIVE_STATUSES:
            moved: int = session.execute(
                _move((source,), CANCELLED).where(Run.id == run_id)
                .values(finished_at=utcnow(), error_code="cancelled", error_message=f"cancelled while {source}")
            ).rowcount  # type: ignore[attr-defined]
            if moved:
                return source
        if session.scalar(select(Run.status).where(Run.id == run_id)) not in ACTIVE_STATUSES:
            return None
    raise RuntimeError(f"run {run_id} changed status {_CANCEL_ATTEMPTS} times while being cancelled")


def requeue_or_fail_lapsed(session: Session, max_attempts: int, limit: int) -> tuple[list[str], list[str]]:
    """Runs 'running' under a lapsed lease (their worker is gone): back to queued while attempts
    remain, else failed with ``worker_lost`` and refunded. Rows another process is handling are
    skipped; every UPDATE re-checks. Returns (requeued, failed) run ids."""
    now = utcnow()
    lapsed = lapsed_lease(now)
    rows = session.execute(select(Run.id, Run.attempts).where(Run.status == RUNNING, lapsed)
                           .order_by(Run.lease_expires_at).limit(limit).with_for_update(skip_locked=True)).all()
    requeued: list[str] = []
    failed: list[Run] = []
    for row in rows:
        if row.attempts < max_attempts:
            won = session.execute(_move((RUNNING,), QUEUED).where(Run.id == row.id, lapsed).values(
                started_at=None, lease_owner=None, lease_expires_at=None, enqueued_at=None)
            ).rowcount  # type: ignore[attr-defined]
            if won:
                requeued.append(row.id)
        else:
            run = session.scalar(_move((RUNNING,), RunStatus.FAILED).where(Run.id == row.id, lapsed).values(
                error_code="worker_lost", finished_at=now, lease_expires_at=None,
                error_message=f"the worker executing the run was lost {row.attempts} time(s)").returning(Run))
            if run is not None:
                failed.append(run)
    _settle(session, [], [(run, "worker_lost") for run in failed])
    return requeued, [run.id for run in failed]


def lapsed_lease(now: datetime) -> ColumnElement[bool]:
    return or_(Run.lease_expires_at < now, Run.lease_expires_at.is_(None))


def _settle(session: Session, charges: list[tuple[Run, int, str]], refunds: list[tuple[Run, str]]) -> None:
    """What final runs cost, written to the ledger and the usage outbox: every settlement of a
    run goes through here. ``charges``: (run, cost, note); ``refunds``: (run, reason)."""
    for run, reason in refunds:
        credits.refund_run(session, run, reason)
    by_user: dict[str, list[tuple[Run, int, str]]] = {}
    for charge in charges:
        by_user.setdefault(charge[0].user_id, []).append(charge)
    for user_charges in by_user.values():
        credits.settle_runs(session, user_charges)
    StripeService.charge_per_executions(session, [run for run, _, _ in charges])
