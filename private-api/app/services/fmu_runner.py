"""Executes one queued run: FMU from the cache, a fresh sandbox, the result into storage,
credits settled, status final. Called by a dispatcher's worker, never a request thread."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy import select, update

from app.config import Settings
from app.db import Database
from app.models import Fmu, Run
from app.models.base import utcnow
from app.sandbox.base import Job, Limits, Outcome, Sandbox
from app.sandbox.pool import SandboxPool
from app.services import credits, pricing
from app.services.fmu_cache import FmuCache
from app.services.run_service import log_key, result_key
from app.services.stripe_service import StripeService
from app.storage import Storage

log = logging.getLogger(__name__)

# Failures that are the platform's fault, not the model's: the run's credits are refunded.
PLATFORM_ERRORS = frozenset({"sandbox_error", "runner_error", "internal_error", "worker_lost"})


def new_worker_id() -> str:
    """Names this process in ``runs.lease_owner``: unique across hosts, restarts and pid reuse."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def default_limits(settings: Settings) -> Limits:
    return Limits(
        memory_bytes=settings.run_memory_bytes, deadline_s=settings.run_default_timeout_s,
        max_processes=settings.run_max_processes, max_output_bytes=settings.run_max_output_bytes,
        max_log_bytes=settings.run_max_log_bytes,
    )


def limits_for(spec: dict[str, Any], settings: Settings) -> Limits:
    return dataclasses.replace(default_limits(settings), deadline_s=float(spec["timeout_s"]))


def _arrow_summary(path: Path) -> tuple[int, list[str]]:
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return rows, list(reader.schema.names)


class FmuRunner:
    def __init__(self, settings: Settings, db: Database, storage: Storage, cache: FmuCache,
                 sandboxes: SandboxPool, on_change: Callable[[str], None]) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.cache = cache
        self.sandboxes = sandboxes
        self.on_change = on_change
        self.worker_id = new_worker_id()
        self.lease = timedelta(seconds=settings.run_lease_s)
        self._live: dict[str, Sandbox] = {}
        # Runs this process holds a lease on, with the expiry it last wrote.
        self._held: dict[str, datetime] = {}
        # Held runs this process must not finish: cancelled elsewhere, or their lease is in doubt.
        self._abandoned: set[str] = set()
        # Runs whose sandbox the shutdown killed.
        self._interrupted: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def execute(self, run_id: str) -> None:
        claimed = self._claim(run_id)
        if claimed is None:
            return  # another worker has it, it was cancelled, or it finished: a duplicate message
        spec, sha256 = claimed
        self.on_change(run_id)
        try:
            try:
                fields = self._run_in_sandbox(run_id, spec, sha256)
            except Exception as exc:
                log.exception("run %s: platform failure", run_id)
                fields = {"status": "failed", "error_code": "internal_error",
                          "error_message": f"internal error: {type(exc).__name__}"}
            with self._lock:
                abandoned = run_id in self._abandoned
                interrupted = run_id in self._interrupted
            # Killed by the shutdown (or failing because of it): not the run's fault, run it again.
            if self._stopping and (interrupted or fields.get("error_code") in PLATFORM_ERRORS):
                self._release(run_id)
            elif not abandoned:
                self._finish(run_id, fields)
        finally:
            with self._lock:
                self._held.pop(run_id, None)
                self._abandoned.discard(run_id)
                self._interrupted.discard(run_id)
        self.on_change(run_id)

    def _claim(self, run_id: str) -> tuple[dict[str, Any], str] | None:
        """Move queued → running under a lease; only one worker can win the conditional UPDATE."""
        now = utcnow()
        expires = now + self.lease
        with self.db.session(write=True) as session:
            won = session.execute(
                update(Run).where(Run.id == run_id, Run.status == "queued")
                .values(status="running", started_at=now, lease_owner=self.worker_id, lease_expires_at=expires,
                        attempts=Run.attempts + 1).execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not won:
                return None
            row = session.execute(select(Run.spec, Fmu.sha256).join(Fmu, Fmu.id == Run.fmu_id)
                                  .where(Run.id == run_id)).one()
            session.commit()
        with self._lock:
            self._held[run_id] = expires
        return row.spec, row.sha256

    def held(self) -> dict[str, datetime]:
        """The runs this process holds leases on, and when each lease expires as last written."""
        with self._lock:
            return dict(self._held)

    def renewed(self, run_ids: list[str], expires: datetime) -> None:
        with self._lock:
            for run_id in run_ids:
                if run_id in self._held:
                    self._held[run_id] = expires

    def abandon(self, run_id: str, reason: str) -> None:
        """Kill a held run's sandbox and never write its outcome: the run was cancelled (its row
        says so), or this process can no longer prove it holds the lease (someone may retry it)."""
        with self._lock:
            if run_id not in self._held or run_id in self._abandoned:
                return
            self._abandoned.add(run_id)
            sandbox = self._live.get(run_id)
        log.info("run %s: abandoned (%s)", run_id, reason)
        if sandbox is not None:
            sandbox.close()

    def _run_in_sandbox(self, run_id: str, spec: dict[str, Any], sha256: str) -> dict[str, Any]:
        fmu_dir = self.cache.ensure(sha256)
        limits = limits_for(spec, self.settings)
        with self.sandboxes.acquire(limits) as sandbox:
            log.info("run %s: sandbox %s", run_id, sandbox.id)
            with self._lock:
                self._live[run_id] = sandbox
                abandoned = run_id in self._abandoned
            if abandoned:  # cancelled while the FMU was being fetched
                sandbox.close()
            try:
                outcome = sandbox.run(Job(run_id=run_id, fmu_dir=fmu_dir, spec=spec, limits=limits))
                return self._store(run_id, outcome)
            finally:
                with self._lock:
                    self._live.pop(run_id, None)

    def _store(self, run_id: str, outcome: Outcome) -> dict[str, Any]:
        """Copy what must outlive the sandbox (result, log) into storage before it is removed."""
        self.storage.put_bytes(log_key(run_id), outcome.log.encode("utf-8", "replace"))
        fields: dict[str, Any] = {
            "status": outcome.status, "error_code": outcome.error_code,
            "error_message": outcome.error_message, "wall_time_s": outcome.wall_time_s,
            "cpu_time_s": outcome.cpu_time_s, "max_rss_bytes": outcome.max_rss_bytes,
        }
        if outcome.status == "succeeded" and outcome.result_path is not None:
            rows, columns = _arrow_summary(outcome.result_path)
            self.storage.put_file(result_key(run_id), outcome.result_path)
            fields.update(result_rows=rows, result_columns=columns,
                          result_bytes=outcome.result_path.stat().st_size)
        return fields

    def _finish(self, run_id: str, fields: dict[str, Any]) -> None:
        """Record the outcome and settle; only while this process still holds the run's lease."""
        with self.db.session(write=True) as session:
            done = session.execute(
                update(Run).where(Run.id == run_id, Run.status == "running", Run.lease_owner == self.worker_id)
                .values(finished_at=utcnow(), lease_expires_at=None, **fields)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            run = session.get(Run, run_id) if done else None
            if run is not None:
                if fields.get("error_code") in PLATFORM_ERRORS:
                    credits.refund_run(session, run, fields["error_code"])
                else:
                    cost = pricing.run_cost(fields.get("cpu_time_s"), run.credits_held)
                    credits.settle_run(session, run, cost, f" ({fields.get('cpu_time_s') or 0:.3f} CPU-s)")
                    StripeService.charge_per_execution(session, run)
            session.commit()

    def _release(self, run_id: str) -> None:
        """Shutting down: give a run back to the queue without counting the attempt. If this
        fails, the lease lapses and the reaper requeues it instead."""
        try:
            with self.db.session(write=True) as session:
                session.execute(
                    update(Run).where(Run.id == run_id, Run.status == "running", Run.lease_owner == self.worker_id)
                    .values(status="queued", started_at=None, lease_owner=None, lease_expires_at=None,
                            enqueued_at=None, attempts=Run.attempts - 1)
                    .execution_options(synchronize_session=False))
                session.commit()
        except Exception:
            log.exception("run %s: could not release it; its lease will lapse", run_id)

    def cancel(self, run_id: str) -> None:
        """Kill the sandbox of a run this process is executing; its row says 'cancelled' already."""
        self.abandon(run_id, "cancelled")

    def stop(self) -> None:
        """Shutdown: kill live sandboxes; their runs go back to the queue. Idempotent."""
        self._stopping = True
        with self._lock:
            self._interrupted.update(self._live)
            live = list(self._live.values())
        for sandbox in live:
            sandbox.close()
        self.sandboxes.close()
