"""The run lifecycle in one place: every change of a run's status, and what each final run costs.

    queued ──claim──▶ running ──finish──▶ succeeded │ failed │ timed_out
    (served from the run cache) ─────────▶ succeeded
      │                 ├──release (shutdown) / requeue (lease lapsed)──▶ queued
      │                 ├──fail_lost (lease lapsed too often)───────────▶ failed
      └─────cancel──────┴─────cancel────────────────────────────────────▶ cancelled

Each change is one conditional UPDATE whose WHERE names the statuses it may leave (written in
``app.runs.repository``, checked against ``TRANSITIONS``): of two processes racing for a run
exactly one wins, and the other learns it from the row count. A run that becomes final is settled here, in the same
transaction (``_settle``): a failure of the platform is refunded, anything else is charged for
what it used, never more than it held. Callers own the transaction: nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app import metrics
from app.billing import credits, pricing
from app.billing import repository as billing_repository
from app.billing.stripe_service import StripeService
from app.fmus import repository as fmu_repository
from app.kit.models import utcnow
from app.runs import repository as run_repository
from app.runs.models import ACTIVE_STATUSES, TRANSITIONS, IllegalTransition, Run, RunStatus, check_transition

__all__ = ["PLATFORM_ERRORS", "TRANSITIONS", "IllegalTransition", "cancel", "claim", "claim_children", "finish",
           "queued", "release", "requeue_or_fail_lapsed", "served_from_cache", "settle_cancelled", "settle_served"]

QUEUED, RUNNING, CANCELLED = RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLED
# Failures that are the platform's fault, not the model's: the run's credits are refunded.
PLATFORM_ERRORS = frozenset({"sandbox_error", "runner_error", "internal_error", "worker_lost", "storage_full"})
# A run moves between queued and running a few times at most (claimed, given back at a shutdown).
_CANCEL_ATTEMPTS = 5


def queued(**fields: Any) -> dict[str, Any]:
    """The columns of a new run (a single run or a sweep's child): it starts queued, unpaid."""
    return {**fields, "status": QUEUED, "credits_charged": 0, "attempts": 0}


def served_from_cache(source: Row[Any], **fields: Any) -> dict[str, Any]:
    """The columns of a new run answered from the run cache with ``source``'s result (a row of
    ``run_repository.cached_results``): born succeeded, no sandbox, no CPU; ``credits_held`` is the
    cache-hit price, which ``settle_served`` charges once the row is written."""
    now = fields.pop("created_at", None) or utcnow()
    return {**fields, "status": RunStatus.SUCCEEDED, "credits_charged": 0, "attempts": 0, "cached_from": source.id,
            "result_rows": source.result_rows, "result_columns": source.result_columns,
            "result_bytes": source.result_bytes, "cpu_time_s": 0.0, "wall_time_s": 0.0, "created_at": now,
            "started_at": now, "finished_at": now, "enqueued_at": now, "owner_credits": 0}


def settle_served(session: Session, runs: list[Run], price: int) -> None:
    """Charge runs served from the run cache ``price`` each (what they held beyond it is released)."""
    _settle(session, [(run, price, f" (served from the run cache: run {run.cached_from})") for run in runs], [])


def claim(session: Session, run_id: str, owner: str, expires: datetime, loaded: Run | None = None) -> bool:
    """queued → running under ``owner``'s lease; False if another worker (or a cancel) was first.
    ``loaded``: the run as this session holds it (just created), told what was written."""
    values = {"started_at": utcnow(), "lease_owner": owner, "lease_expires_at": expires}
    won = run_repository.claim(session, run_id, values)
    if won and loaded is not None:
        for key, value in {**values, "status": RUNNING, "attempts": loaded.attempts + 1}.items():
            set_committed_value(loaded, key, value)
    return won


def claim_children(session: Session, sweep_id: str, owner: str, expires: datetime,
                   limit: int) -> list[Row[Any]]:
    """Up to ``limit`` more queued children of a sweep, in sweep order, to run as one chunk:
    (id, spec) of those won. Their ``started_at`` stays empty until each really starts.
    Concurrent claims take disjoint children (rows another claim has locked are skipped): each
    gets a full chunk while enough are queued, which the sweep's sparse messages rely on."""
    return run_repository.claim_children(session, sweep_id, owner, expires, limit)


def finish(session: Session, outcomes: Mapping[str, Mapping[str, Any]], owner: str) -> list[Run]:
    """running → the outcome's status, for each run ``owner`` still holds, settled. ``outcomes``
    maps run ids to the columns to record (``status`` among them). Returns the runs recorded."""
    for fields in outcomes.values():
        check_transition((RUNNING,), RunStatus(fields["status"]))  # before anything is written
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
            # A shared model's owner is paid for the runs that succeed only.
            to_owner = run.owner_credits if run.status == RunStatus.SUCCEEDED else 0
            charges.append((run, _platform_cost(run, cpu) + to_owner,
                            f" ({cpu or 0:.3f} CPU-s" + (f", {to_owner} to the model's owner)" if to_owner else ")")))
    _settle(session, charges, refunds)
    return runs


def _platform_cost(run: Run, cpu_seconds: float | None) -> int:
    """The platform's charge for a run's CPU time, within the part of its hold that is the platform's."""
    return pricing.run_cost(cpu_seconds, run.credits_held - run.owner_credits)


def _finish_one(session: Session, run_id: str, fields: Mapping[str, Any], owner: str) -> list[Run]:
    """A single run: one UPDATE … RETURNING. Columns the outcome does not name are written empty:
    a running run has none of them yet."""
    now = utcnow()
    values = {column: fields.get(column) for column in run_repository.FINAL_COLUMNS}
    values.update(status=RunStatus(fields["status"]), finished_at=now, lease_expires_at=None,
                  started_at=fields.get("started_at") or now)
    run = run_repository.finish_one(session, run_id, owner, values)
    return [] if run is None else [run]


def _finish_many(session: Session, outcomes: Mapping[str, Mapping[str, Any]], owner: str) -> list[Run]:
    """A chunk's children: the rows still ours, locked, then one executemany by primary key whose
    values are also set on the loaded rows (what the database now holds: no read back)."""
    runs = run_repository.lock_running(session, list(outcomes), owner)
    if not runs:
        return []
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for run in runs:
        fields = outcomes[run.id]
        values = {column: fields.get(column, getattr(run, column)) for column in run_repository.FINAL_COLUMNS}
        values.update(status=RunStatus(fields["status"]), finished_at=now, lease_expires_at=None,
                      started_at=run.started_at or fields.get("started_at") or now)
        for column, value in values.items():
            set_committed_value(run, column, value)
        rows.append({"b_id": run.id, **values})
    run_repository.finish_many(session, rows, owner)
    return runs


def release(session: Session, run_id: str, owner: str) -> None:
    """running → queued when ``owner`` shuts down mid-run: not the run's fault, so the attempt
    does not count, and the relay hands it over again."""
    run_repository.release(session, run_id, owner)


def cancel(session: Session, run: Run) -> RunStatus | None:
    """queued or running → cancelled. A queued run is settled at once and costs nothing; a running
    one is charged as every run is, for the CPU time its sandbox used, which its worker measures
    once the sandbox is stopped (``settle_cancelled``; the reaper refunds it if the worker is
    gone). Returns the status the run left, as the UPDATE that moved it found it (``run`` may have
    been read before a worker claimed it); None if it was final already."""
    previous = _cancel_row(session, run.id)
    session.refresh(run)
    if previous is None:
        return None
    if previous == RUNNING and run.started_at is not None:
        return previous
    # A sweep child claimed with its chunk has no started_at until it really starts: it costs nothing.
    if previous == RUNNING:
        run_repository.end_cancelled(session, run.id, {})
        session.refresh(run)
    _settle(session, [(run, 0, f" (cancelled while {previous})")], [])
    return previous


def settle_cancelled(session: Session, used: Mapping[str, Mapping[str, Any]], owner: str) -> list[Run]:
    """Runs cancelled while ``owner`` ran them, their sandboxes now stopped: charged for the CPU
    time each used (``used``: run id → cpu_time_s, wall_time_s, max_rss_bytes), as a finished run
    is. Each is settled once, by the worker that held it."""
    runs = []
    for run_id, fields in used.items():
        values = {column: fields.get(column) for column in ("cpu_time_s", "wall_time_s", "max_rss_bytes")}
        run = run_repository.end_cancelled(session, run_id, values, owner=owner)
        if run is not None:
            runs.append(run)
    cpu = {run.id: used[run.id].get("cpu_time_s") for run in runs}
    _settle(session, [(run, _platform_cost(run, cpu[run.id]),
                       f" (cancelled while running, {cpu[run.id] or 0:.3f} CPU-s)") for run in runs], [])
    return runs


def _cancel_row(session: Session, run_id: str) -> RunStatus | None:
    """One conditional UPDATE per active status, so that the one that moves the row names the
    status it left (an UPDATE returns the values it wrote, not those it replaced); again if the
    run changed status between them (claimed, or given back)."""
    for _ in range(_CANCEL_ATTEMPTS):
        for source in ACTIVE_STATUSES:
            if run_repository.cancel_from(session, run_id, source, utcnow()):
                return source
        if run_repository.status_of(session, run_id) not in ACTIVE_STATUSES:
            return None
    raise RuntimeError(f"run {run_id} changed status {_CANCEL_ATTEMPTS} times while being cancelled")


def requeue_or_fail_lapsed(session: Session, max_attempts: int, limit: int) -> tuple[list[str], list[str]]:
    """Runs 'running' under a lapsed lease (their worker is gone): back to queued while attempts
    remain, else failed with ``worker_lost`` and refunded. Rows another process is handling are
    skipped; every UPDATE re-checks. Returns (requeued, failed) run ids."""
    now = utcnow()
    requeued: list[str] = []
    failed: list[Run] = []
    for row in run_repository.lock_lapsed(session, now, limit):
        if row.attempts < max_attempts:
            if run_repository.requeue_lapsed(session, row.id, now):
                requeued.append(row.id)
        else:
            run = run_repository.fail_lapsed(session, row.id, now,
                                             f"the worker executing the run was lost {row.attempts} time(s)")
            if run is not None:
                failed.append(run)
    # Cancelled while running, and the worker that was to measure them is gone: the platform's loss.
    for run_id in run_repository.lock_lapsed_cancelled(session, now, limit):
        run = run_repository.end_cancelled(session, run_id, {}, lapsed_at=now)
        if run is not None:
            failed.append(run)
    _settle(session, [], [(run, "worker_lost") for run in failed])
    return requeued, [run.id for run in failed]


def _settle(session: Session, charges: list[tuple[Run, int, str]], refunds: list[tuple[Run, str]]) -> None:
    """What final runs cost, written to the ledger and the usage outbox: every settlement of a
    run goes through here. ``charges``: (run, cost, note); ``refunds``: (run, reason)."""
    # Counted as the settlement is written: each final run is settled once (a rolled-back
    # transaction, rare, leaves its count).
    metrics.runs_settled([*((run, cost) for run, cost, _ in charges), *((run, 0) for run, _ in refunds)])
    earned = [run for run, _, _ in charges if run.owner_credits and run.status == RunStatus.SUCCEEDED]
    owners = fmu_repository.owners(session, list({run.fmu_id for run in earned})) if earned else {}
    if owners:  # more than one user's balance changes here: their rows are locked in one order first
        billing_repository.lock_users(session, [*(run.user_id for run, _, _ in charges),
                                                *(run.user_id for run, _ in refunds),
                                                *(owner for owner, _ in owners.values())])
    for run, reason in refunds:
        credits.refund_run(session, run, reason)
    by_user: dict[str, list[tuple[Run, int, str]]] = {}
    for charge in charges:
        by_user.setdefault(charge[0].user_id, []).append(charge)
    for user_charges in by_user.values():
        credits.settle_runs(session, user_charges)
    if earned:
        credits.pay_owners(session, [(run, *owners[run.fmu_id]) for run in earned])
    StripeService.charge_per_executions(session, [run for run, _, _ in charges])
