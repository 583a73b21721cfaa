"""Executes one queued run: FMU from the cache, a fresh sandbox, the result into storage,
credits settled, status final. Called by a dispatcher's worker, never a request thread."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
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
PLATFORM_ERRORS = frozenset({"sandbox_error", "runner_error", "internal_error"})


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
        self._live: dict[str, Sandbox] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def execute(self, run_id: str) -> None:
        claimed = self._claim(run_id)
        if claimed is None:
            return
        spec, sha256 = claimed
        self.on_change(run_id)
        try:
            fields = self._run_in_sandbox(run_id, spec, sha256)
        except Exception as exc:
            log.exception("run %s: platform failure", run_id)
            fields = {"status": "failed", "error_code": "internal_error",
                      "error_message": f"internal error: {type(exc).__name__}"}
        if self._stopping:
            return  # left 'running'; recovered and re-run at the next start
        self._finish(run_id, fields)
        self.on_change(run_id)

    def _claim(self, run_id: str) -> tuple[dict[str, Any], str] | None:
        """Move queued → running; only one worker can win the conditional UPDATE."""
        with self.db.session(write=True) as session:
            won = session.execute(
                update(Run).where(Run.id == run_id, Run.status == "queued")
                .values(status="running", started_at=utcnow()).execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not won:
                return None
            row = session.execute(select(Run.spec, Fmu.sha256).join(Fmu, Fmu.id == Run.fmu_id)
                                  .where(Run.id == run_id)).one()
            session.commit()
            return row.spec, row.sha256

    def _run_in_sandbox(self, run_id: str, spec: dict[str, Any], sha256: str) -> dict[str, Any]:
        fmu_dir = self.cache.ensure(sha256)
        limits = limits_for(spec, self.settings)
        with self.sandboxes.acquire(limits) as sandbox:
            log.info("run %s: sandbox %s", run_id, sandbox.id)
            with self._lock:
                self._live[run_id] = sandbox
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
        with self.db.session(write=True) as session:
            done = session.execute(
                update(Run).where(Run.id == run_id, Run.status == "running")
                .values(finished_at=utcnow(), **fields).execution_options(synchronize_session=False)
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

    def cancel(self, run_id: str) -> None:
        """Kill the sandbox of a run this process is executing; its row says 'cancelled' already."""
        with self._lock:
            sandbox = self._live.get(run_id)
        if sandbox is not None:
            sandbox.close()

    def stop(self) -> None:
        """Server shutdown: kill live sandboxes; their runs stay 'running' for recovery."""
        self._stopping = True
        with self._lock:
            live = list(self._live.values())
        for sandbox in live:
            sandbox.close()
        self.sandboxes.close()

    def recover(self) -> list[str]:
        """At start-up: runs this process owned and never finished go back to the queue."""
        with self.db.session(write=True) as session:
            session.execute(update(Run).where(Run.status == "running")
                            .values(status="queued", started_at=None).execution_options(synchronize_session=False))
            queued = list(session.scalars(select(Run.id).where(Run.status == "queued").order_by(Run.id)))
            session.commit()
        return queued
