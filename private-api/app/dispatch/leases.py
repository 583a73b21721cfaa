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

from sqlalchemy import or_, select, update

from app.background import BackgroundThread
from app.config import Settings
from app.db import Database
from app.models import Run
from app.models.base import utcnow
from app.services import credits
from app.services.fmu_runner import FmuRunner

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
                session.execute(update(Run).where(Run.id.in_(due), Run.status == "running", Run.lease_owner == owner)
                                .values(lease_expires_at=expires).execution_options(synchronize_session=False))
            rows = session.execute(select(Run.id, Run.status, Run.lease_owner).where(Run.id.in_(list(held)))).all()
            session.commit()
        ours = {row.id for row in rows if row.status == "running" and row.lease_owner == owner}
        if due:
            self.runner.renewed([run_id for run_id in due if run_id in ours], now + self.lease)
        for row in rows:
            if row.id not in ours:
                reason = "cancelled" if row.status == "cancelled" else f"lease lost ({row.status})"
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
    now = utcnow()
    lapsed = or_(Run.lease_expires_at < now, Run.lease_expires_at.is_(None))
    requeued: list[str] = []
    failed: list[str] = []
    with db.session() as session:  # the usual answer is none: no write transaction for it
        if session.scalar(select(Run.id).where(Run.status == "running", lapsed).limit(1)) is None:
            return requeued, failed
    with db.session(write=True) as session:
        rows = session.execute(select(Run.id, Run.attempts).where(Run.status == "running", lapsed)
                               .order_by(Run.lease_expires_at).limit(limit).with_for_update(skip_locked=True)).all()
        for row in rows:
            still = update(Run).where(Run.id == row.id, Run.status == "running", lapsed)
            if row.attempts < settings.run_max_attempts:
                won = session.execute(still.values(
                    status="queued", started_at=None, lease_owner=None, lease_expires_at=None, enqueued_at=None)
                    .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
                if won:
                    requeued.append(row.id)
            else:
                won = session.execute(still.values(
                    status="failed", error_code="worker_lost", finished_at=now, lease_expires_at=None,
                    error_message=f"the worker executing the run was lost {row.attempts} time(s)")
                    .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
                if won:
                    run = session.get(Run, row.id)
                    assert run is not None
                    credits.refund_run(session, run, "worker_lost")
                    failed.append(row.id)
        session.commit()
    if requeued:
        log.warning("requeued %d run(s) whose worker vanished: %s", len(requeued), ", ".join(requeued))
    if failed:
        log.warning("failed %d run(s) lost by their worker %d times: %s", len(failed), settings.run_max_attempts,
                    ", ".join(failed))
    return requeued, failed
