"""Result retention: a run's result and log are kept for its user's tier's ``result_retention_days``
after it finished, then removed; the run stays listed, with ``result_expired_at``, and its result
and log answer 410 ``result_expired``.

A worker task (the housekeeper every ``retention_interval_s``, or ``fmu-gateway-admin purge``): each
batch is marked expired and committed first, then its files are deleted, so no run ever points at
files that are gone; a process killed in between leaves files nothing points at, never the other way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from app.billing.pricing import load_pricing
from app.db import Database
from app.kit.models import utcnow
from app.runs import repository as run_repository
from app.runs.service import log_key, result_key
from app.storage import Storage

log = logging.getLogger(__name__)

BATCH = 500


def cutoffs(now: datetime) -> dict[str, datetime]:
    """Each tier's cutoff: runs of its users that finished before it are past retention."""
    return {tier.id: now - timedelta(days=tier.result_retention_days) for tier in load_pricing().tiers}


def purge(db: Database, storage: Storage, now: datetime | None = None) -> int:
    """Remove the files of every run past its retention; returns how many runs expired."""
    now = now or utcnow()
    limits = cutoffs(now)
    expired = 0
    while True:
        with db.session(write=True) as session:
            run_ids = run_repository.past_retention(session, limits, BATCH)
            if run_ids:
                run_repository.mark_expired(session, run_ids, utcnow())
                session.commit()
        for run_id in run_ids:
            storage.delete(result_key(run_id))
            storage.delete(log_key(run_id))
        expired += len(run_ids)
        if len(run_ids) < BATCH:
            if expired:
                log.info("retention: removed the result and log of %d run(s)", expired)
            return expired
