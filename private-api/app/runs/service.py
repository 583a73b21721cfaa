"""Runs: submission (validated spec, credit hold, claim by a free worker), lookup, listing and their
public shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.billing import credits, limits, pricing
from app.billing import service as billing_service
from app.config import Settings
from app.errors import NotFound, ProblemError
from app.fmus import service as registry_service
from app.fmus.models import Fmu
from app.idempotency import store as idempotency
from app.kit.pagination import paginate
from app.runs import cache as run_cache
from app.runs import lifecycle as run_lifecycle
from app.runs import repository as run_repository
from app.runs.models import FINAL_STATUSES, Run, RunStatus
from app.runs.schemas import Quote, RunCreate, RunError, RunOut, RunResultInfo, RunTimings
from app.runs.spec import build_run_spec

if TYPE_CHECKING:
    from app.context import AppContext
    from app.runs.executor import Claimed


class RunFinished(ProblemError):
    status = 409
    code = "run_finished"
    title = "Run has already finished"


def find_idempotent(session: Session, principal: Principal, fmu_id: str, key: str, digest: str) -> Run | None:
    """The run an earlier request with this key created, while its FMU is still the caller's (a
    deleted one answers 404, as any replay); another request, credential or route under the key
    is refused."""
    run = idempotency.created_under(session, Run, principal.user_id, key, digest)
    if run is not None:
        registry_service.get_usable(session, principal, fmu_id)
    return run


@dataclass(frozen=True)
class Planned:
    """A validated run request: its FMU (the caller's, or shared with them), spec and hold."""

    usable: registry_service.Usable
    spec: dict[str, Any]
    cache_key: str | None  # None: kept out of the run cache

    @property
    def platform_hold(self) -> int:
        return pricing.run_hold(self.spec["timeout_s"])

    @property
    def hold(self) -> int:
        return self.platform_hold + self.usable.owner_credits


def plan_run(session: Session, principal: Principal, fmu_id: str, request: RunCreate, settings: Settings) -> Planned:
    """Everything a submission decides before it writes: 404 or 422 here, nothing held yet."""
    usable = registry_service.get_usable(session, principal, fmu_id)
    spec = build_run_spec(request, registry_service.model_info(usable.fmu), settings,
                          max_timeout_s=limits.for_caller(principal, settings).max_run_seconds).to_wire()
    cacheable = run_cache.cacheable(usable.fmu.deterministic, request.cache)
    key = run_cache.cache_key(usable.fmu.sha256, spec) if cacheable else None
    return Planned(usable, spec, key)


def quote(session: Session, principal: Principal, planned: Planned, runs: int) -> Quote:
    """What placing ``runs`` runs of ``planned`` would hold (a dry run: nothing is written)."""
    balance = billing_service.balance(session, principal.user_id).credits
    held = runs * planned.hold
    return Quote(fmu_id=planned.usable.fmu.id, runs=runs, credits_per_run=planned.platform_hold,
                 owner_credits_per_run=planned.usable.owner_credits, credits_held=held, balance=balance,
                 sufficient=balance >= held, spec=planned.spec)


def create_run(session: Session, principal: Principal, fmu_id: str, request: RunCreate,
               settings: Settings, idempotency_key: str | None = None, digest: str | None = None) -> tuple[Run, Fmu]:
    """Validate and insert a run (returned with its FMU): queued, or, when the run cache has what
    it computes, succeeded at once. The caller holds its credits and commits. ``digest``: the
    request's ``idempotency.submission_hash``, kept with its key."""
    planned = plan_run(session, principal, fmu_id, request, settings)
    usable = planned.usable
    fields: dict[str, Any] = {"user_id": principal.user_id, "fmu_id": usable.fmu.id, "spec": planned.spec,
                              "idempotency_key": idempotency_key, "request_hash": digest,
                              "grant_id": usable.grant.id if usable.grant is not None else None}
    source = None
    if planned.cache_key is not None:
        source = run_repository.cached_results(session, principal.user_id, [planned.cache_key]).get(planned.cache_key)
    if source is not None:
        run = Run(**run_lifecycle.served_from_cache(source, credits_held=pricing.cache_hit_price(principal.tier),
                                                    **fields))
    else:
        run = Run(**run_lifecycle.queued(credits_held=planned.hold, owner_credits=usable.owner_credits,
                                         cache_key=planned.cache_key, **fields))
    session.add(run)
    session.flush()
    return run, usable.fmu


@dataclass
class Submission:
    """A run submitted in the caller's transaction, not committed yet: after the commit, ``start``
    says what starts it; if the commit fails, ``abandon`` gives back what it booked."""

    run: Run
    replayed: bool  # the run an earlier request with this Idempotency-Key created: nothing else happens
    claimed: tuple[Claimed, datetime] | None = None  # taken by a worker of this process, in the transaction
    reserved: bool = False  # a worker of this process is booked for it


def submit_run(session: Session, ctx: AppContext, principal: Principal, fmu_id: str, request: RunCreate,
               idempotency_key: str | None) -> Submission:
    """A run submission: the run (or the one its Idempotency-Key names, then nothing more
    happens), its credit hold, the tenant's active-run cap, and, when a worker of this process is
    free now, its claim. The caller commits."""
    digest = None
    if idempotency_key is not None:
        digest = idempotency.submission_hash(fmu_id, request, principal.api_key_id)
        earlier = find_idempotent(session, principal, fmu_id, idempotency_key, digest)
        if earlier is not None:
            return Submission(earlier, replayed=True)
    run, fmu = create_run(session, principal, fmu_id, request, ctx.settings, idempotency_key, digest)
    credits.hold_for_run(session, run)  # 402 if the balance is short
    if run.cached_from is not None:
        run_lifecycle.settle_served(session, [run], run.credits_held)
        return Submission(run, replayed=False)  # final already: nothing runs it
    # After the hold, which locks the user's row: concurrent submissions count one by one.
    limits.check_active_runs(session, principal, limits.for_caller(principal, ctx.settings))
    # A free worker of this process takes the run in this very transaction: no hand-over, no
    # claim of its own on the way to a sandbox.
    submission = Submission(run, replayed=False, reserved=ctx.dispatcher.reserve())
    try:
        submission.claimed = ctx.runner.claim_submitted(session, run, fmu) if submission.reserved else None
    except BaseException:
        abandon(ctx, submission)
        raise
    return submission


def abandon(ctx: AppContext, submission: Submission) -> None:
    """The submission was not committed: its booked worker is free again."""
    if submission.reserved:
        submission.reserved = False
        ctx.dispatcher.cancel_reservation()


def start(ctx: AppContext, submission: Submission) -> Callable[[], None] | None:
    """After the commit: what starts the run, to be called once the caller listens for its
    changes (None for a replayed one)."""
    if submission.replayed or submission.run.status in FINAL_STATUSES:
        return None
    run_id = submission.run.id
    if submission.claimed is None:
        abandon(ctx, submission)
        return partial(ctx.dispatcher.submit, run_id)
    work, expires = submission.claimed
    ctx.runner.hold(run_id, expires)
    return partial(ctx.dispatcher.run_reserved, partial(ctx.runner.execute_claimed, work))


def cancel_run(session: Session, principal: Principal, run_id: str) -> tuple[Run, str]:
    """Mark an unfinished run cancelled; returns (run, the status it had). A queued run never
    used its credits and gets them back; a running one is charged the CPU time it used, once its
    worker has stopped and measured it (``lifecycle.settle_cancelled``)."""
    run = get_run(session, principal, run_id)
    if run.status == RunStatus.CANCELLED:
        return run, run.status  # a retried cancel whose first answer was lost
    previous = run_lifecycle.cancel(session, run)
    if previous is None:
        raise RunFinished(f"Run {run_id!r} has already finished ({run.status}).", run_status=run.status)
    return run, previous


def get_run(session: Session, principal: Principal, run_id: str) -> Run:
    run = run_repository.get_owned(session, principal.user_id, run_id)
    if run is None:
        raise NotFound(f"No run {run_id!r}.")
    return run


def status_of(session: Session, run_id: str) -> str | None:
    """A run's status alone (no ownership check: for a run its caller has already read)."""
    return run_repository.status_of(session, run_id)


def list_runs(session: Session, principal: Principal, limit: int, cursor: str | None, *,
              status: str | None = None, fmu_id: str | None = None) -> tuple[list[Run], str | None]:
    return paginate(session, run_repository.owned(principal.user_id, status=status, fmu_id=fmu_id), Run.id, limit,
                    cursor)


def stored_under(run: Run | RunOut) -> str:
    """The run whose files hold this run's result and log: itself, or the one it was served from."""
    return run.cached_from or run.id


def files_removed_at(session: Session, run: Run | RunOut) -> datetime | None:
    """When retention removed the files this run's result and log are stored under: its own
    record says so, or, for a hit served from another run that retention reached after the hit
    was made, that run's record does."""
    if run.result_expired_at is not None:
        return run.result_expired_at
    return run_repository.result_expired_at(session, stored_under(run)) if run.cached_from else None


def result_key(run_id: str) -> str:
    return f"runs/{run_id}/result.arrow"


def log_key(run_id: str) -> str:
    return f"runs/{run_id}/log.txt"


def to_out(run: Run) -> RunOut:
    def seconds(a: datetime | None, b: datetime | None) -> float | None:
        if a is not None and b is not None:
            return round((b - a).total_seconds(), 6)
        return None

    result = None
    if run.result_rows is not None and run.result_columns is not None:
        result = RunResultInfo(rows=run.result_rows, columns=run.result_columns, bytes=run.result_bytes or 0)
    return RunOut(
        id=run.id, fmu_id=run.fmu_id, status=run.status,
        spec=run.spec,
        error=RunError(code=run.error_code, message=run.error_message) if run.error_code else None,
        result=result,
        timings=RunTimings(queued_s=seconds(run.created_at, run.started_at), run_s=run.wall_time_s,
                           cpu_s=run.cpu_time_s, total_s=seconds(run.created_at, run.finished_at)),
        max_rss_bytes=run.max_rss_bytes, credits_held=run.credits_held, credits_charged=run.credits_charged,
        sweep_id=run.sweep_id, sweep_index=run.sweep_index, cached_from=run.cached_from, grant_id=run.grant_id,
        owner_credits=run.owner_credits,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        result_expired_at=run.result_expired_at,
    )
