"""Executes one queued run: FMU from the cache, a fresh sandbox, the result into storage,
credits settled, status final. Called by a dispatcher's worker, never a request thread."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import stat
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app import logs, metrics
from app.config import Settings
from app.db import Database, retry_while_down
from app.dispatch.notifier import STARTED, RunNotifier
from app.fmus import repository as fmu_repository
from app.fmus.cache import FmuCache
from app.fmus.models import Fmu
from app.kit.models import utcnow
from app.runs import lifecycle as run_lifecycle
from app.runs import repository as run_repository
from app.runs import scheduling
from app.runs.lifecycle import PLATFORM_ERRORS
from app.runs.models import Run, RunStatus
from app.runs.service import log_key, result_key, to_out
from app.sandbox.base import Job, Limits, Outcome, Sandbox
from app.sandbox.child import runner_digest
from app.sandbox.pool import SandboxPool
from app.sandbox.result_file import Converted, arrow_path, convert
from app.sandbox.runner import (
    CHILD_DONE,
    CHILD_STARTED,
    REPORTABLE_ERRORS,
    RESET_CHECKED,
    RESULT_SUFFIX,
    RunSpec,
    SweepChunk,
)
from app.storage import Storage
from app.storage.space import is_out_of_space
from app.sweeps import service as sweep_service

log = logging.getLogger(__name__)

# Sweeps whose children's duration a worker remembers (the latest used).
SWEEPS_REMEMBERED = 256
# Identifies the runner that checked an FMU's reset(): a new runner checks again.
RUNNER_DIGEST = runner_digest()


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


@dataclasses.dataclass(frozen=True)
class Claimed:
    """A run this worker holds the lease on, with what executing it needs."""

    run_id: str
    spec: dict[str, Any]
    sha256: str
    tenant: str  # the owning user: a warm sandbox serves one
    fmu_id: str
    sweep_id: str | None
    reset_exact: bool | None  # the FMU's reset() check by this runner version; None: not checked
    sweep_left: int = 0  # a sweep child: about how many of its sweep's children are still queued


def read_regular(path: Path, limit: int) -> bytes:
    """Up to `limit` bytes of a regular file the sandbox wrote; never follows a link it planted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as f:
        return f.read(limit) if stat.S_ISREG(os.fstat(fd).st_mode) else b""


def close_all(sandboxes: list[Sandbox]) -> None:
    """Close sandboxes whose results are stored (their teardown in the background); empties the list."""
    while sandboxes:
        sandboxes.pop().close(wait=False)


def stored(run_id: str, what: str, write: Callable[[], None]) -> bool:
    """Do ``write`` (a storage put); False if storage is full, the backend having removed what it
    half-wrote."""
    try:
        write()
    except OSError as exc:
        if not is_out_of_space(exc):
            raise
        log.error("run %s: storage is full; its %s is not stored: %s", run_id, what, exc)
        return False
    return True


def storage_full(*, log_kept: bool) -> dict[str, Any]:
    """A run whose result did not fit in storage: the platform's failure, refunded."""
    kept = "its log is kept" if log_kept else "its log could not be stored either"
    return {"status": RunStatus.FAILED, "error_code": "storage_full",
            "error_message": f"storage is full: the result could not be stored ({kept}); the run is not charged"}


def log_lost(message: str | None) -> str:
    return f"{message or 'the run failed'} (its log could not be stored: storage is full)"


class FmuRunner:
    def __init__(self, settings: Settings, db: Database, storage: Storage, cache: FmuCache,
                 sandboxes: SandboxPool, notifier: RunNotifier) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self.cache = cache
        self.sandboxes = sandboxes
        self.notifier = notifier
        self.worker_id = new_worker_id()
        self.lease = timedelta(seconds=settings.run_lease_s)
        self._live: dict[str, Sandbox] = {}
        # Runs this process holds a lease on, with the expiry it last wrote.
        self._held: dict[str, datetime] = {}
        # Held runs this process must not finish: cancelled elsewhere, or their lease is in doubt.
        self._abandoned: set[str] = set()
        # Runs whose sandbox the shutdown killed.
        self._interrupted: set[str] = set()
        # How long a child of each sweep lately ran here, in seconds: what sizes its chunks.
        self._child_s: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def execute(self, run_id: str) -> None:
        """A dispatch message, from either dispatcher. Neither retries a message that failed: one
        that meets a database outage waits for its return instead of being dropped."""
        retry_while_down(lambda: self._execute_in_turn(run_id), f"run {run_id}")

    def _execute_in_turn(self, run_id: str) -> None:
        """First the runs of tenants whose turn comes before the message's own
        (``app.runs.scheduling``), then its own run. A sweep's message stands for a few children
        (``sweep_service.message_spacing``); its chunks are sized by time and may hold fewer, so it
        claims again, after the others' turns, until it ran that many or none is left."""
        served: set[str] = set()
        spacing = sweep_service.message_spacing(self.settings.sweep_chunk_size)
        done = 0
        while True:
            # A run served once and still queued (its claim lost a race, or it cannot be claimed)
            # ends the detour: the message never loops on one run.
            while (other := self._turn_before(run_id)) is not None and other not in served:
                served.add(other)
                self._execute_message(other)
            ran, sweep_id = self._execute_message(run_id)
            done += ran
            if sweep_id is None or ran == 0 or done >= spacing:
                return

    def _turn_before(self, run_id: str) -> str | None:
        """A queued run of another tenant to serve before ``run_id``'s, or None."""
        with self.db.session() as session:
            if not run_repository.others_queued(session, run_id):
                return None
            own = run_repository.owner_of(session, run_id)
            tenant = None if own is None else scheduling.next_tenant(run_repository.waiting_tenants(session), own)
            return None if tenant is None else run_repository.oldest_queued_of(session, tenant)

    def _execute_message(self, run_id: str) -> tuple[int, str | None]:
        """A run, claimed with a chunk of its sweep's children if it has one: if another worker
        took the child first, other queued children of the sweep instead. Returns how many runs
        it executed, and their sweep."""
        found = self._claim(run_id)
        if found is None:
            return 0, None  # gone, or a single run another worker has, cancelled or finished: a duplicate
        claimed, won = found
        runs = [claimed] if won else []
        runs += self._claim_siblings(claimed, won)
        if runs:
            self._execute(runs)
        return len(runs), claimed.sweep_id

    def claim_submitted(self, session: Session, run: Run, fmu: Fmu) -> tuple[Claimed, datetime] | None:
        """Claim a single run in the transaction that creates it, for a worker of this process that
        is free now (its submitter reserved it): no read of the run and no transaction of its own
        on the way to its sandbox. After the commit: ``hold``, then ``execute_claimed``."""
        expires = utcnow() + self.lease
        if run.sweep_id is not None or not run_lifecycle.claim(
                session, run.id, self.worker_id, expires, loaded=run):
            return None
        reset = fmu.reset_exact if fmu.reset_checked_by == RUNNER_DIGEST else None
        return Claimed(run.id, run.spec, fmu.sha256, run.user_id, fmu.id, None, reset), expires

    def hold(self, run_id: str, expires: datetime) -> None:
        """A claim is committed: its lease is renewed, and a cancel reaches its sandbox, from now on
        (not before the commit: a renewal that found no row would abandon the run)."""
        with self._lock:
            self._held[run_id] = expires

    def execute_claimed(self, claimed: Claimed) -> None:
        """Run what ``claim_submitted`` claimed (committed and held)."""
        self._execute([claimed])

    def _execute(self, runs: list[Claimed]) -> None:
        # A chunk of a sweep's children logs under its sweep; a single run under its own id.
        with logs.bound(run_id=runs[0].run_id if len(runs) == 1 else None, sweep_id=runs[0].sweep_id):
            self._execute_bound(runs)

    def _execute_bound(self, runs: list[Claimed]) -> None:
        self.notifier.publish_all([(run.run_id, STARTED) for run in runs])
        # Sandboxes whose results are stored (and files removed): closed once their runs are final and
        # published (ending their processes is nobody's wait, and no competition for the finish).
        used: list[Sandbox] = []
        try:
            pending = runs
            while pending:
                outcomes, pending = self._run_batch(pending, used)
                self._learn(runs[0].sweep_id, outcomes)
                finals = {run.id: run for run in self._settle(outcomes)}
                # A run's public state is handed to whoever waits for it here: no read back.
                self.notifier.publish_all([
                    (run_id, to_out(finals[run_id]) if run_id in finals and self.notifier.waited_for(run_id) else None)
                    for run_id in outcomes])
                close_all(used)
        finally:
            close_all(used)
            with self._lock:
                for run in runs:
                    self._held.pop(run.run_id, None)
                    self._abandoned.discard(run.run_id)
                    self._interrupted.discard(run.run_id)

    def _run_batch(self, runs: list[Claimed],
                   used: list[Sandbox]) -> tuple[dict[str, dict[str, Any]], list[Claimed]]:
        """Run one sandbox: a single run, or a chunk of one sweep's children. Returns the outcome of
        each run that has one, and the runs to try again in a fresh sandbox (a chunk cut short);
        the sandbox, once its results are stored, is appended to ``used`` for the caller to close."""
        try:
            if len(runs) == 1:
                run = runs[0]
                return {run.run_id: self._run_in_sandbox(run.run_id, run.spec, run.sha256, run.tenant, used)}, []
            return self._run_chunk(runs, used)
        except Exception as exc:
            log.exception("run %s: platform failure", runs[0].run_id)
            failed = ({"status": RunStatus.FAILED, "error_code": "storage_full",
                       "error_message": "storage is full: the run could not be executed; it is not charged"}
                      if is_out_of_space(exc) else
                      {"status": RunStatus.FAILED, "error_code": "internal_error",
                       "error_message": f"internal error: {type(exc).__name__}"})
            return {run.run_id: dict(failed) for run in runs}, []

    def _settle(self, outcomes: dict[str, dict[str, Any]]) -> list[Run]:
        """Record what may be recorded; returns the runs recorded, as final."""
        finished: dict[str, dict[str, Any]] = {}
        abandoned: dict[str, dict[str, Any]] = {}
        for run_id, fields in outcomes.items():
            with self._lock:
                was_abandoned = run_id in self._abandoned
                interrupted = run_id in self._interrupted
            # Killed by the shutdown (or failing because of it): not the run's fault, run it again.
            if self._stopping and (interrupted or fields.get("error_code") in PLATFORM_ERRORS):
                self._release(run_id)
            elif was_abandoned:
                abandoned[run_id] = fields  # cancelled (charged what it used) or no longer ours
            else:
                finished[run_id] = fields
        if not finished and not abandoned:
            return []
        # The results are stored: an outage now must not cost the run (its lease would lapse and
        # it would run again), so the outcome waits for the database.
        return retry_while_down(lambda: self._finish(finished, abandoned), f"the outcome of {len(outcomes)} run(s)")

    def _claim(self, run_id: str) -> tuple[Claimed, bool] | None:
        """Move queued → running under a lease; only one worker can win the conditional UPDATE.
        Returns the run and whether this worker won it; a sweep child that was not won still names
        its sweep, for ``_claim_siblings``. None: nothing to do."""
        with self.db.session() as session:
            # A read first, of everything executing it needs (none of it changes once queued): a
            # message whose run is taken costs no write transaction, and the one that wins holds
            # the write lock for one statement.
            row = run_repository.to_execute(session, run_id)
        if row is None or (row.status != RunStatus.QUEUED and row.sweep_id is None):
            return None
        reset = row.reset_exact if row.reset_checked_by == RUNNER_DIGEST else None
        # Children are claimed in sweep order: those after this one are about what is left.
        left = row.total - row.sweep_index if row.total is not None and row.sweep_index is not None else 0
        claimed = Claimed(run_id, row.spec, row.sha256, row.user_id, row.id, row.sweep_id, reset, left)
        if row.status != RunStatus.QUEUED:
            return claimed, False
        expires = utcnow() + self.lease
        with self.db.session(write=True) as session:
            won = run_lifecycle.claim(session, run_id, self.worker_id, expires)
            session.commit()
        if won:
            self.hold(run_id, expires)
        return (claimed, won) if won or row.sweep_id is not None else None

    def _claim_siblings(self, claimed: Claimed, won: bool) -> list[Claimed]:
        """More queued children of ``claimed``'s sweep, to run in one sandbox (a chunk): with the
        run itself (``won``), or instead of it, up to a chunk's size in all."""
        if claimed.sweep_id is None:
            return []
        size = sweep_service.chunk_size(claimed.sweep_left, self.settings.sweep_chunk_size, self.settings.workers)
        with self._lock:
            child_s = self._child_s.get(claimed.sweep_id)
        wanted = sweep_service.fit_in_time(size, child_s, self.settings.sweep_chunk_seconds) - (1 if won else 0)
        if wanted < 1:
            return []
        expires = utcnow() + self.lease
        with self.db.session(write=True) as session:
            rows = run_lifecycle.claim_children(session, claimed.sweep_id, self.worker_id, expires, wanted)
            session.commit()
        with self._lock:
            for row in rows:
                self._held[row.id] = expires
        return [dataclasses.replace(claimed, run_id=row.id, spec=row.spec) for row in rows]

    def _learn(self, sweep_id: str | None, outcomes: dict[str, dict[str, Any]]) -> None:
        """Remember how long the sweep's children just took (a moving average, a few sweeps)."""
        walls = [float(fields["wall_time_s"]) for fields in outcomes.values() if fields.get("wall_time_s") is not None]
        if sweep_id is None or not walls:
            return
        mean = sum(walls) / len(walls)
        with self._lock:
            known = self._child_s.pop(sweep_id, None)
            self._child_s[sweep_id] = mean if known is None else (known + mean) / 2
            while len(self._child_s) > SWEEPS_REMEMBERED:
                del self._child_s[next(iter(self._child_s))]

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

    def _run_in_sandbox(self, run_id: str, spec: dict[str, Any], sha256: str, tenant: str,
                        used: list[Sandbox]) -> dict[str, Any]:
        fmu_dir = self.cache.ensure(sha256)
        limits = limits_for(spec, self.settings)
        with metrics.SANDBOX_START.time():
            sandbox = self.sandboxes.acquire(limits, tenant)
        used.append(sandbox)
        try:
            log.info("run %s: sandbox %s", run_id, sandbox.id)
            with self._lock:
                self._live[run_id] = sandbox
                abandoned = run_id in self._abandoned
            if abandoned:  # cancelled while the FMU was being fetched
                sandbox.close()
            outcome = sandbox.run(Job(run_id=run_id, fmu_dir=fmu_dir, spec=RunSpec.from_wire(spec), limits=limits))
            return self._store(run_id, outcome, limits)
        finally:
            with self._lock:
                self._live.pop(run_id, None)
            sandbox.remove_files()  # stored: the disk its output used is free before the run is final

    def _run_chunk(self, runs: list[Claimed],
                   used: list[Sandbox]) -> tuple[dict[str, dict[str, Any]], list[Claimed]]:
        """Children of one sweep in one sandbox: one process, the model parsed once and, where its
        reset() is exact, one instance. A child that kills the process fails alone; the children
        after it are returned to run in a fresh sandbox."""
        first = runs[0]
        fmu_dir = self.cache.ensure(first.sha256)
        per_child = limits_for(first.spec, self.settings)  # the children share the sweep's base spec
        limits = dataclasses.replace(per_child, deadline_s=sum(float(r.spec["timeout_s"]) for r in runs))
        spec = SweepChunk(tuple((r.run_id, RunSpec.from_wire(r.spec)) for r in runs), first.reset_exact)
        job = Job(run_id=first.run_id, fmu_dir=fmu_dir, spec=spec, limits=limits,
                  child_deadline_s=per_child.deadline_s, output_quota_bytes=per_child.max_output_bytes * len(runs))
        with metrics.SANDBOX_START.time():
            sandbox = self.sandboxes.acquire(limits, first.tenant)
        used.append(sandbox)
        try:
            log.info("runs %s..%s (%d of sweep %s): sandbox %s", first.run_id, runs[-1].run_id, len(runs),
                     first.sweep_id, sandbox.id)
            with self._lock:
                for run in runs:
                    self._live[run.run_id] = sandbox
                abandoned = any(run.run_id in self._abandoned for run in runs)
            if abandoned:  # cancelled while the FMU was being fetched
                sandbox.close()
            outcome = sandbox.run(job)
            return self._store_chunk(runs, outcome, per_child)
        finally:
            with self._lock:
                for run in runs:
                    self._live.pop(run.run_id, None)
            sandbox.remove_files()  # stored: the disk their output used is free before they are final

    def _store_chunk(self, runs: list[Claimed], outcome: Outcome,
                     limits: Limits) -> tuple[dict[str, dict[str, Any]], list[Claimed]]:
        done = {m["id"]: m for m in outcome.children if m["event"] == CHILD_DONE and isinstance(m.get("id"), str)}
        started = [m["id"] for m in outcome.children if m["event"] == CHILD_STARTED]
        checked = [m.get("ok") for m in outcome.children if m["event"] == RESET_CHECKED]
        if checked and isinstance(checked[0], bool):
            self._record_reset(runs[0].fmu_id, checked[0])
        # The runner splits the CPU time between children; the sandbox's own figure (cgroup or
        # wait4) is the total, so a model cannot lower its sweep's bill by misreporting.
        reported = sum(float(m.get("cpu_time_s") or 0.0) for m in done.values())
        total = outcome.cpu_time_s or 0.0
        scale = total / reported if reported and total > reported else 1.0
        outcomes: dict[str, dict[str, Any]] = {}
        for run in runs:
            report = done.get(run.run_id)
            if report is not None:
                outcomes[run.run_id] = self._store_child(run.run_id, report, outcome, limits, scale)
        with self._lock:
            abandoned = {r.run_id for r in runs if r.run_id in self._abandoned}
            stopping = self._stopping
        rest = [r for r in runs if r.run_id not in outcomes and r.run_id not in abandoned]
        if stopping:  # killed by the shutdown: every unfinished child goes back to the queue
            interrupted = {"status": RunStatus.FAILED, "error_code": "sandbox_error",
                           "error_message": "worker stopping"}
            return {**outcomes, **{r.run_id: dict(interrupted) for r in rest}}, []
        if abandoned:
            # Our own kill (a cancelled child) ended the process: nobody's fault. The CPU time no
            # finished child accounts for is the one that was running's.
            left = max(0.0, total - sum(float(fields.get("cpu_time_s") or 0.0) for fields in outcomes.values()))
            used = {run_id: {"cpu_time_s": left if started and run_id == started[-1] else 0.0}
                    for run_id in abandoned}
            return {**outcomes, **used}, rest
        if not started and outcome.status != "succeeded":
            # Nothing started (the model could not be read, the sandbox failed): the same for all.
            return {**outcomes, **{r.run_id: self._store(r.run_id, outcome, limits) for r in rest}}, []
        if rest:
            # The child that was running when the process ended owns its outcome (a process that
            # ended without naming one cannot stall the sweep: the next child takes it).
            culprit = next((r for r in rest if r.run_id == started[-1]), rest[0]) if started else rest[0]
            fields: dict[str, Any] = (
                self._store(culprit.run_id, outcome, limits) if outcome.status != "succeeded" else
                {"status": RunStatus.FAILED, "error_code": "runner_error",
                 "error_message": "the runner ended the chunk without finishing this child"})
            # The process's time less what the finished children were charged: its own share.
            for key in ("cpu_time_s", "wall_time_s"):
                spent = sum(float(o.get(key) or 0.0) for o in outcomes.values())
                fields[key] = max(float(getattr(outcome, key) or 0.0) - spent, 0.0)
            outcomes[culprit.run_id] = fields
            rest.remove(culprit)
        return outcomes, rest

    def _store_child(self, run_id: str, report: dict[str, Any], outcome: Outcome, limits: Limits,
                     scale: float) -> dict[str, Any]:
        assert outcome.out_dir is not None
        log_path = outcome.out_dir / f"{run_id}.log"
        child_log = read_regular(log_path, limits.max_log_bytes)
        log_kept = self._keep_log(run_id, child_log)
        cpu = float(report.get("cpu_time_s") or 0.0) * scale
        wall = min(float(report.get("wall_time_s") or 0.0), outcome.wall_time_s)
        fields: dict[str, Any] = {"wall_time_s": wall, "cpu_time_s": cpu, "max_rss_bytes": outcome.max_rss_bytes,
                                  "started_at": utcnow() - timedelta(seconds=wall)}
        if report.get("ok") is True:
            array_path = outcome.out_dir / f"{run_id}{RESULT_SUFFIX}"
            return {**fields, **self._keep_converted(run_id, array_path, limits.max_output_bytes, log_kept)}
        claimed = report.get("error_code")
        code = claimed if claimed in REPORTABLE_ERRORS else "runner_error"
        message = str(report.get("message") or code)[:2000]
        return {**fields, "status": RunStatus.FAILED, "error_code": code,
                "error_message": message if log_kept else log_lost(message)}

    def _keep_converted(self, run_id: str, array_path: Path, max_bytes: int, log_kept: bool) -> dict[str, Any]:
        """The runner's result array as Arrow, stored: the run's result fields, or why it failed.
        A result of one batch is stored from memory: no Arrow file written only to be copied."""
        converted = convert(array_path, max_bytes, in_memory=True)
        if not isinstance(converted, Converted):
            code, message = converted
            return {"status": RunStatus.FAILED, "error_code": code,
                    "error_message": message if log_kept else log_lost(message)}
        path = arrow_path(array_path)
        if not self._keep_result(run_id, log_kept, path=path, data=converted.data):
            return storage_full(log_kept=log_kept)
        size = len(converted.data) if converted.data is not None else path.stat().st_size
        return {"status": RunStatus.SUCCEEDED, "error_code": None, "error_message": None,
                "result_rows": converted.rows, "result_columns": converted.columns, "result_bytes": size}

    def _keep_log(self, run_id: str, data: bytes) -> bool:
        """Store a run's log, before its result: it is small, and tells what happened even when the
        result does not fit. An empty one is not stored (it reads as empty). False: storage is full."""
        return not data or stored(run_id, "log", partial(self.storage.put_bytes, log_key(run_id), data))

    def _keep_result(self, run_id: str, log_kept: bool, *, path: Path, data: bytes | None = None) -> bool:
        """Store a run's result, ``data`` if given, else the file at ``path``; False: storage is full
        (where its small log did not fit, the result will not, and is not tried)."""
        key = result_key(run_id)
        put = (partial(self.storage.put_bytes, key, data) if data is not None
               else partial(self.storage.put_file, key, path))
        return log_kept and stored(run_id, "result", put)

    def _record_reset(self, fmu_id: str, exact: bool) -> None:
        with self.db.session(write=True) as session:
            fmu_repository.record_reset_check(session, fmu_id, exact=exact, checked_by=RUNNER_DIGEST)
            session.commit()
        log.info("fmu %s: reset() %s", fmu_id, "is exact: sweep chunks reuse one instance" if exact
                 else "differs from a fresh instance: sweep chunks instantiate per child")

    def _store(self, run_id: str, outcome: Outcome, limits: Limits) -> dict[str, Any]:
        """Copy what must outlive the sandbox into storage before it is removed: the log first (it
        is small, and tells what happened even when the result does not fit), then the result. A
        full storage fails the run with ``storage_full`` (refunded)."""
        log_kept = self._keep_log(run_id, outcome.log.encode("utf-8", "replace"))
        fields: dict[str, Any] = {
            "status": outcome.status, "error_code": outcome.error_code,
            "error_message": outcome.error_message, "wall_time_s": outcome.wall_time_s,
            "cpu_time_s": outcome.cpu_time_s, "max_rss_bytes": outcome.max_rss_bytes,
        }
        if outcome.status == "succeeded" and outcome.result_path is not None:
            fields.update(self._keep_converted(run_id, outcome.result_path, limits.max_output_bytes, log_kept))
        elif not log_kept:
            fields["error_message"] = log_lost(outcome.error_message)
        return fields

    def _finish(self, outcomes: dict[str, dict[str, Any]], cancelled: dict[str, dict[str, Any]]) -> list[Run]:
        """Record outcomes and settle them in one transaction; each only while this process still
        holds the run's lease. ``cancelled``: what runs cancelled while they ran used, for their
        settlement. Returns the runs recorded, as final (loaded, detached)."""
        with self.db.session(write=True) as session:
            runs = run_lifecycle.finish(session, outcomes, self.worker_id) if outcomes else []
            if cancelled:
                run_lifecycle.settle_cancelled(session, cancelled, self.worker_id)
            session.commit()
        return runs

    def _release(self, run_id: str) -> None:
        """Shutting down: give a run back to the queue without counting the attempt. If this
        fails, the lease lapses and the reaper requeues it instead."""
        try:
            with self.db.session(write=True) as session:
                run_lifecycle.release(session, run_id, self.worker_id)
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
