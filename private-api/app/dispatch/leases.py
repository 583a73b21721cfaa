"""Leases: a worker holds one on every run it executes, renews them all in one UPDATE, and a
reaper in any process requeues (or, after ``run_max_attempts``, fails) runs whose lease lapsed.

The renewer is also how a cancel reaches a sandbox in another process: every tick it reads the
status of the runs it holds, and kills the sandbox of any that is no longer 'running' under its
name. A worker that cannot renew (database unreachable) kills its own sandboxes before the lease
can lapse, so a run is never executed by two workers at once (wall clocks assumed within a small
fraction of the lease of each other).
"""

from __future__ import annotations

import logging

from app.background import BackgroundThread
from app.config import Settings
from app.db import Database
from app.kit.models import utcnow
from app.runs import lifecycle as run_lifecycle
from app.runs import repository as run_repository
from app.runs.executor import FmuRunner
from app.runs.models import RunStatus

log = logging.getLogger(__name__)

# The status check that carries cancels runs at least this often.
CHECK_INTERVAL_S = 1.0
# Abandon a run once less than this share of its lease is left without a successful renewal.
FENCE_MARGIN = 0.2


class LeaseRenewer(BackgroundThread):
    thread_name = "lease-renewer"

    def __init__(self, runner: FmuRunner) -> None:
        super().__init__()
        self.runner = runner
        self.db = runner.db
        self.lease = runner.lease

    def _loop(self) -> None:
        interval = min(CHECK_INTERVAL_S, self.lease.total_seconds() / 3)
        while not self._stop.wait(interval):
            try:
                self.tick()
            except Exception:
                log.exception("lease renewal failed")
            self._fence()

    def tick(self) -> None:
        held = self.runner.held()
        if not held:
            return
        now = utcnow()
        # Renew when a third of the lease has passed since the last renewal of any held run.
        due = [run_id for run_id, expires in held.items() if expires - now < self.lease * 2 / 3]
        owner = self.runner.worker_id
        with self.db.session(write=bool(due)) as session:
            if due:
                expires = now + self.lease
                run_repository.renew_leases(session, due, owner, expires)
            rows = run_repository.statuses(session, list(held))
            session.commit()
        ours = {row.id for row in rows if row.status == RunStatus.RUNNING and row.lease_owner == owner}
        if due:
            self.runner.renewed([run_id for run_id in due if run_id in ours], now + self.lease)
        for row in rows:
            if row.id not in ours:
                reason = "cancelled" if row.status == RunStatus.CANCELLED else f"lease lost ({row.status})"
                self.runner.abandon(row.id, reason)

    def _fence(self) -> None:
        now = utcnow()
        for run_id, expires in self.runner.held().items():
            if expires - now < self.lease * FENCE_MARGIN:
                self.runner.abandon(run_id, "lease not renewed in time")


def reap(db: Database, settings: Settings, limit: int = 100) -> tuple[list[str], list[str]]:
    """Runs 'running' under a lapsed lease: back to the queue (the relay re-sends them) while
    attempts remain, else failed with ``worker_lost`` and refunded. Safe in many processes at
    once: rows are locked (skipping those another reaper holds) and every UPDATE re-checks."""
    with db.session() as session:  # the usual answer is none: no write transaction for it
        if not run_repository.any_lapsed(session, utcnow()):
            return [], []
    with db.session(write=True) as session:
        requeued, failed = run_lifecycle.requeue_or_fail_lapsed(session, settings.run_max_attempts, limit)
        session.commit()
    if requeued:
        log.warning("requeued %d run(s) whose worker vanished: %s", len(requeued), ", ".join(requeued))
    if failed:
        log.warning("failed %d run(s) lost by their worker %d times: %s", len(failed), settings.run_max_attempts,
                    ", ".join(failed))
    return requeued, failed
