"""What a caller may use: its pricing tier's limits, never above the operator's settings.

Requests per minute are enforced by the rate limiter (``app.auth.rate_limit``); the rest here,
inside the transactions that create runs and FMUs, so a refused request stores nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.billing import repository as billing_repository
from app.billing.pricing import Tier, UnknownPrice, load_pricing
from app.config import Settings
from app.errors import ProblemError
from app.fmus import repository as fmu_repository
from app.runs import repository as run_repository

log = logging.getLogger(__name__)

FALLBACK_TIER = "free"
ACTIVE_RUNS_RETRY_AFTER_S = 5


class TooManyActiveRuns(ProblemError):
    status = 429
    code = "too_many_active_runs"
    title = "Too many active runs"


class StorageQuotaExceeded(ProblemError):
    status = 413
    code = "storage_quota_exceeded"
    title = "Storage quota exceeded"


@dataclass(frozen=True)
class Limits:
    tier: Tier
    requests_per_minute: int | None  # None: the operator turned request limits off
    max_concurrent_runs: int
    max_run_seconds: float
    max_fmu_bytes: int
    storage_quota_bytes: int
    max_sweep_children: int


def tier_of(principal: Principal) -> Tier:
    try:
        return load_pricing().tier(principal.tier)
    except UnknownPrice:
        # A tier dropped from pricing_tiers.json must not lock its users out; they get the free limits.
        log.error("user %s has unknown tier %r; applying %r limits", principal.user_id, principal.tier,
                  FALLBACK_TIER)
        return load_pricing().tier(FALLBACK_TIER)


def for_caller(principal: Principal, settings: Settings) -> Limits:
    tier = tier_of(principal)
    override = settings.rate_limit_per_minute
    rpm = tier.requests_per_minute if override is None else min(tier.requests_per_minute, override) or None
    return Limits(
        tier=tier,
        requests_per_minute=rpm,
        max_concurrent_runs=tier.max_concurrent_runs,
        max_run_seconds=min(tier.max_run_seconds, settings.run_max_timeout_s),
        max_fmu_bytes=min(tier.max_fmu_bytes, settings.max_upload_bytes),
        storage_quota_bytes=tier.storage_quota_bytes,
        max_sweep_children=min(tier.max_sweep_children, settings.sweep_max_children),
    )


def check_active_runs(session: Session, principal: Principal, limits: Limits) -> None:
    """Refuse a run beyond the tier's concurrent runs; call after the new run is flushed and
    after its credit hold, whose UPDATE of the user's row is the lock this count runs under: under
    concurrency exactly ``max_concurrent_runs`` runs are active at most. The caller rolls back.

    A sweep counts as one submission however many children it has: its children are held and
    paid for up front and wait in the queue like any run, so refusing them one by one would only
    make sweeps impossible on small tiers."""
    active = sum(run_repository.count_active(session, principal.user_id))
    if active > limits.max_concurrent_runs:
        raise TooManyActiveRuns(
            f"The {limits.tier.name} tier runs at most {limits.max_concurrent_runs} simulations at a time; "
            "wait for one to finish or cancel one.",
            limit=limits.max_concurrent_runs, retry_after=ACTIVE_RUNS_RETRY_AFTER_S,
            headers={"Retry-After": str(ACTIVE_RUNS_RETRY_AFTER_S)})


def check_storage_quota(session: Session, principal: Principal, limits: Limits, new_bytes: int) -> None:
    """Refuse an FMU that would take the user's live FMUs over the tier's storage quota.

    An FMU takes its archive plus its extracted tree (``new_bytes``: both); the same bytes stored
    for another user count in full for each, so quotas say nothing about anyone else's uploads.
    Runs under the user's row lock, so concurrent uploads cannot both fit into the same space."""
    billing_repository.lock_user(session, principal.user_id)
    used = fmu_repository.stored_bytes(session, principal.user_id)
    quota = limits.storage_quota_bytes
    if used + new_bytes > quota:
        raise StorageQuotaExceeded(
            f"This FMU (its archive and extracted files: {new_bytes} bytes) would take your FMUs to "
            f"{used + new_bytes} bytes; the {limits.tier.name} tier stores {quota}. Delete FMUs you no longer need.",
            quota_bytes=quota, used_bytes=used, fmu_bytes=new_bytes)
