"""Sweeps: creation (validated space, one hold, bulk-inserted children), progress, listing, cancel.

The children are the source of truth: a sweep's counts are a GROUP BY over its runs, and its
status is derived from them when read (``finished`` is persisted the first time it is seen).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.auth.service import Principal
from app.billing import credits, limits, pricing
from app.config import Settings
from app.errors import InvalidCursor, NotFound, ProblemError
from app.fmus import service as registry_service
from app.idempotency import store as idempotency
from app.kit.models import new_id, utcnow
from app.kit.pagination import paginate
from app.runs import cache as run_cache
from app.runs import lifecycle as run_lifecycle
from app.runs import repository as run_repository
from app.runs import service as run_service
from app.runs.models import FINAL_STATUSES, Run, RunStatus
from app.runs.schemas import Quote, ScalarValue
from app.runs.spec import build_run_spec
from app.sweeps import repository as sweep_repository
from app.sweeps.models import FINAL_SWEEP_STATUSES, Sweep, SweepStatus
from app.sweeps.schemas import SweepCounts, SweepCreate, SweepOut, SweepRunOut
from app.sweeps.space import SweepSpace, expand, parameter_names

# Children made, inserted and dropped at a time.
CHILD_BATCH = 1000
# A sweep is dispatched as one message per this many children: each message claims a chunk of at
# least this many while that many are queued (``chunk_size``), so the messages cover every child.
MESSAGE_SPACING = 8


def message_spacing(largest_chunk: int) -> int:
    """Children per dispatch message of a sweep: never more than a chunk may hold."""
    return max(1, min(MESSAGE_SPACING, largest_chunk))


def chunk_size(left: int, largest: int, threads: int) -> int:
    """Children to claim in one chunk when about ``left`` are queued: guided self-scheduling, a
    share of what is left (``2 * threads``: the fleet has more than this process), at least a
    message's worth and at most ``largest``. Big chunks early amortize each chunk's own cost (a
    process, the model read and instantiated, a claim and a settlement); small ones at the end
    keep every worker busy until the last."""
    share = -(-left // (2 * max(threads, 1)))
    return max(1, min(largest, max(share, message_spacing(largest))))


def fit_in_time(size: int, child_s: float | None, target_s: float) -> int:
    """``size`` children, or as many as last about ``target_s`` at ``child_s`` seconds each: a
    worker is busy with a chunk until it ends, whoever else waits (app.runs.scheduling). ``child_s``
    None (none of the sweep's children has run here yet): one, to learn how long one takes."""
    if child_s is None:
        return 1
    return max(1, min(size, int(target_s / child_s) if child_s > 0 else size))


class SweepNotFinished(ProblemError):
    status = 409
    code = "sweep_not_finished"
    title = "Sweep has not finished"


class SweepFinished(ProblemError):
    status = 409
    code = "sweep_finished"
    title = "Sweep has already finished"


@dataclass(frozen=True)
class Progress:
    counts: SweepCounts
    charged: int

    @property
    def final(self) -> int:
        return sum(getattr(self.counts, status) for status in FINAL_STATUSES)


@dataclass(frozen=True)
class PlannedSweep:
    usable: registry_service.Usable
    base: dict[str, Any]
    space: SweepSpace
    caller: limits.Limits

    @property
    def per_child(self) -> int:
        """Each child's hold: the platform's worst case, plus a shared model's price."""
        return pricing.run_hold(self.base["timeout_s"]) + self.usable.owner_credits


def plan_sweep(session: Session, principal: Principal, fmu_id: str, request: SweepCreate,
               settings: Settings) -> PlannedSweep:
    """Everything a creation decides before it writes (404, 422); sized from the request alone:
    nothing is sampled before the hold."""
    usable = registry_service.get_usable(session, principal, fmu_id)
    info = registry_service.model_info(usable.fmu)
    caller = limits.for_caller(principal, settings)
    base = build_run_spec(request.base(), info, settings, max_timeout_s=caller.max_run_seconds).to_wire()
    return PlannedSweep(usable, base, expand(request, info, caller.max_sweep_children, settings.sweep_max_values),
                        caller)


def quote_sweep(session: Session, principal: Principal, fmu_id: str, request: SweepCreate,
                settings: Settings) -> Quote:
    """What creating the sweep would hold (a dry run: nothing is written)."""
    planned = plan_sweep(session, principal, fmu_id, request, settings)
    return run_service.quote(session, principal, run_service.Planned(planned.usable, planned.base, None),
                             runs=planned.space.count)


@dataclass(frozen=True)
class Created:
    sweep: Sweep
    dispatch: list[str]  # children to hand to the queue (one per message_spacing of those queued)
    replayed: bool  # the sweep an earlier request with this Idempotency-Key created: nothing was written
    served: int = 0  # children answered from the run cache, final already
    served_charge: int = 0  # what they cost


def create_sweep(session: Session, principal: Principal, fmu_id: str, request: SweepCreate,
                 settings: Settings, idempotency_key: str | None = None) -> Created:
    """Validate, hold the whole sweep's credits and insert its children: queued, or, those the run
    cache has, succeeded at once and settled at the cache-hit price. The children to dispatch are
    one per ``message_spacing`` of the queued ones, in sweep_index order (the others are stamped
    handed over, for the relay to leave alone). The caller commits, then dispatches them. Under an
    ``idempotency_key`` that an earlier request created a sweep with, that sweep, replayed
    (nothing is written; another request, credential or route under the key is 422); the key is
    kept on a new sweep."""
    digest = None
    if idempotency_key is not None:
        digest = idempotency.submission_hash(fmu_id, request, principal.api_key_id)
        earlier = idempotency.created_under(session, Sweep, principal.user_id, idempotency_key, digest)
        if earlier is not None:
            registry_service.get_usable(session, principal, fmu_id)  # a deleted FMU answers 404, as any replay
            return Created(earlier, [], True)
    planned = plan_sweep(session, principal, fmu_id, request, settings)
    fmu, base, space, caller, per_child = (planned.usable.fmu, planned.base, planned.space, planned.caller,
                                           planned.per_child)
    grant_id = planned.usable.grant.id if planned.usable.grant is not None else None
    caching = run_cache.cacheable(fmu.deterministic, request.cache)
    hit_price = pricing.cache_hit_price(principal.tier)
    sweep = Sweep(user_id=principal.user_id, fmu_id=fmu.id, status=SweepStatus.QUEUED, method=request.method,
                  parameters=request.model_dump(mode="json")["parameters"], samples=request.samples,
                  seed=space.seed, spec=base, total=space.count, credits_held=per_child * space.count,
                  idempotency_key=idempotency_key, request_hash=digest)
    sweep_repository.insert(session, sweep)
    # Before the children: a sweep the balance cannot cover leaves nothing behind.
    credits.hold_for_sweep(session, sweep)
    now = utcnow()
    spacing = message_spacing(settings.sweep_chunk_size)
    made = queued = served = 0
    leaders: list[str] = []
    base_key = run_cache.base_key(fmu.sha256, base) if caching else None
    for batch in space.batches(CHILD_BATCH):
        specs = [{**base, "start_values": {**base["start_values"], **values}} for values in batch]
        keys = [run_cache.child_key(base_key, spec["start_values"]) if base_key else None for spec in specs]
        found = run_repository.cached_results(session, principal.user_id, [k for k in keys if k]) if caching else {}
        rows = []
        hits: list[str] = []
        for index, (spec, key) in enumerate(zip(specs, keys, strict=True), start=made):
            run_id = new_id("run")
            common: dict[str, Any] = {"id": run_id, "user_id": principal.user_id, "fmu_id": fmu.id, "spec": spec,
                      "credits_held": per_child, "sweep_id": sweep.id, "sweep_index": index, "created_at": now,
                      "grant_id": grant_id}
            source = found.get(key) if key is not None else None
            if source is not None:
                rows.append(run_lifecycle.served_from_cache(source, **common))
                hits.append(run_id)
                continue
            leader = queued % spacing == 0
            queued += 1
            rows.append(run_lifecycle.queued(**common, owner_credits=planned.usable.owner_credits, cache_key=key,
                                             enqueued_at=None if leader else now))
            if leader:
                leaders.append(run_id)
        # One executemany (batched multi-row INSERTs) per batch: memory stays at one batch.
        run_repository.insert_many(session, rows)
        if hits:
            run_lifecycle.settle_served(session, run_repository.get_many(session, hits), hit_price)
            served += len(hits)
        if not made:
            # Once the sweep has a child it counts as one active submission.
            limits.check_active_runs(session, principal, caller)
        made += len(rows)
    return Created(sweep, leaders, False, served, served * min(hit_price, per_child))


def get_sweep(session: Session, principal: Principal, sweep_id: str) -> Sweep:
    sweep = sweep_repository.get_owned(session, principal.user_id, sweep_id)
    if sweep is None:
        raise NotFound(f"No sweep {sweep_id!r}.")
    return sweep


def list_sweeps(session: Session, principal: Principal, limit: int, cursor: str | None, *,
                fmu_id: str | None = None) -> tuple[list[Sweep], str | None]:
    return paginate(session, sweep_repository.owned(principal.user_id, fmu_id=fmu_id), Sweep.id, limit, cursor)


def progress_of(session: Session, sweep_ids: Sequence[str]) -> dict[str, Progress]:
    """Counts per status and credits charged, for several sweeps in one GROUP BY."""
    found: dict[str, dict[str, int]] = {sweep_id: {} for sweep_id in sweep_ids}
    charged: dict[str, int] = dict.fromkeys(sweep_ids, 0)
    if sweep_ids:
        for sweep_id, status, count, cost in run_repository.child_counts(session, sweep_ids):
            assert sweep_id is not None
            found[sweep_id][status] = int(count)
            charged[sweep_id] += int(cost)
    return {sweep_id: Progress(SweepCounts(**found[sweep_id]), charged[sweep_id]) for sweep_id in sweep_ids}


def derived_status(sweep: Sweep, progress: Progress) -> SweepStatus:
    if sweep.status in FINAL_SWEEP_STATUSES:
        return SweepStatus(sweep.status)
    if progress.final >= sweep.total:
        return SweepStatus.FINISHED
    return SweepStatus.QUEUED if progress.counts.queued >= sweep.total else SweepStatus.RUNNING


def needs_finishing(sweep: Sweep, progress: Progress) -> bool:
    return sweep.status not in FINAL_SWEEP_STATUSES and derived_status(sweep, progress) == SweepStatus.FINISHED


def mark_finished(session: Session, sweep_id: str) -> tuple[str, datetime | None]:
    """Persist that every child is final (once: a concurrent reader may do it first); returns the
    row's status and finished_at as they are now, for ``as_stored``."""
    return sweep_repository.mark_finished(session, sweep_id, utcnow())


def as_stored(sweep: Sweep, state: tuple[str, datetime | None]) -> None:
    """Give a loaded sweep what ``mark_finished`` found its row to hold: the transaction that loaded
    it may not see that write (SQLite's read keeps its snapshot), so it is not read again."""
    set_committed_value(sweep, "status", state[0])
    set_committed_value(sweep, "finished_at", state[1])


def to_out(sweep: Sweep, progress: Progress) -> SweepOut:
    return SweepOut(
        id=sweep.id, fmu_id=sweep.fmu_id, status=derived_status(sweep, progress), method=sweep.method,
        parameters=sweep.parameters, parameter_names=parameter_names(sweep.method, sweep.parameters),
        samples=sweep.samples, seed=sweep.seed, spec=sweep.spec, total=sweep.total, counts=progress.counts,
        progress=round(progress.final / sweep.total, 6) if sweep.total else 1.0,
        credits_held=sweep.credits_held, credits_charged=progress.charged,
        created_at=sweep.created_at, finished_at=sweep.finished_at,
    )


def child_parameters(sweep: Sweep, run: Run) -> dict[str, ScalarValue | None]:
    start_values: dict[str, Any] = run.spec.get("start_values", {})
    return {name: start_values.get(name) for name in parameter_names(sweep.method, sweep.parameters)}


def child_to_out(sweep: Sweep, run: Run) -> SweepRunOut:
    return SweepRunOut(**run_service.to_out(run).model_dump(), parameters=child_parameters(sweep, run))


def list_children(session: Session, sweep: Sweep, limit: int, cursor: str | None, *,
                  status: str | None = None) -> tuple[list[Run], str | None]:
    """Children in sweep_index order; the cursor is the last index seen."""
    after = None
    if cursor:
        # An index beyond any column's range (10**23) would reach SQL and fail there.
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 10):
            raise InvalidCursor("The cursor is not one this API returned; pass a page's next_cursor unchanged.")
        after = int(cursor)
    runs = run_repository.children_page(session, sweep.id, limit + 1, after_index=after, status=status)
    if len(runs) > limit:
        return runs[:limit], str(runs[limit - 1].sweep_index)
    return runs, None


@dataclass(frozen=True)
class Child:
    run_id: str
    index: int
    status: str
    error_code: str | None
    start_values: dict[str, Any]
    stored_under: str  # the run whose files hold its result: itself, or the one the run cache served it from


def iter_children(session: Session, sweep: Sweep, batch: int = 500) -> Iterator[Child]:
    """Every child in sweep_index order, a batch at a time: plain rows, so ten thousand children
    never sit in the session at once."""
    for rows in run_repository.child_batches(session, sweep.id, batch):
        for row in rows:
            yield Child(row.id, row.sweep_index, row.status, row.error_code, row.spec.get("start_values", {}),
                        row.cached_from or row.id)


def cancel_sweep(session: Session, principal: Principal, sweep_id: str) -> tuple[Sweep, list[str]]:
    """Cancel every unfinished child through the run cancel path (a queued child's share of the
    hold is released, a running one is charged for its time); returns the sweep and the ids of the
    children that were running, whose sandboxes the caller stops after the commit."""
    sweep = get_sweep(session, principal, sweep_id)
    if sweep.status in FINAL_SWEEP_STATUSES:
        if sweep.status == SweepStatus.CANCELLED:
            return sweep, []  # a retried cancel whose first answer was lost
        raise SweepFinished(f"Sweep {sweep_id!r} has already finished.", sweep_status=sweep.status)
    active = run_repository.active_children(session, sweep.id)
    if not active and needs_finishing(sweep, progress_of(session, [sweep.id])[sweep.id]):
        raise SweepFinished(f"Sweep {sweep_id!r} has already finished.", sweep_status=SweepStatus.FINISHED)
    was_running = []
    for run_id in active:
        try:
            _, previous = run_service.cancel_run(session, principal, run_id)
        except run_service.RunFinished:
            continue  # it ended while we got here
        if previous == RunStatus.RUNNING:
            was_running.append(run_id)
    sweep_repository.mark_cancelled(session, sweep.id, utcnow())
    session.refresh(sweep)
    return sweep, was_running
