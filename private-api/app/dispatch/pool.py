"""The embedded dispatcher: a pool of worker threads in the API process, each driving one
sandbox at a time. The sandbox is a separate process tree, so a crashing model cannot take
the server down; threads only wait on it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from app.db import Database
from app.dispatch.base import Dispatcher

log = logging.getLogger(__name__)


class InProcessDispatcher(Dispatcher):
    # Its queue is this process's memory: a stamp would prove nothing after a crash (at start-up
    # everything queued is handed over again), and each one is a write transaction per run.
    # Runs waiting here longer than the relay's grace are stamped by the relay and re-sent (a no-op).
    stamps_enqueued = False

    def __init__(self, db: Database, execute: Callable[[str], None], workers: int) -> None:
        super().__init__(db)
        self._execute = execute
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        # Handed to the pool and not started yet: the relay handing them over again adds nothing.
        self._pending: set[str] = set()
        # Tasks handed to the pool and not finished, and workers booked: below `workers`, a booked
        # task starts at once.
        self._outstanding = 0
        self._lock = threading.Lock()

    @property
    def executes_locally(self) -> bool:
        return True

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="run-worker")
        super().start()

    def submit(self, run_id: str) -> None:
        # The pool is in this process: handed over now, with no sender thread in between.
        try:
            self.send([run_id])
        except RuntimeError:  # shutting down: still queued, handed over again at the next start
            log.warning("run %s: not handed over, the pool is shut down", run_id)

    def send(self, run_ids: Sequence[str]) -> None:
        executor = self._executor
        if executor is None:
            raise RuntimeError("dispatcher not started")
        for run_id in run_ids:
            with self._lock:
                if run_id in self._pending:
                    continue
                self._pending.add(run_id)
                self._outstanding += 1
            executor.submit(self._safe_execute, run_id)

    def reserve(self) -> bool:
        with self._lock:
            if self._executor is None or self._outstanding >= self._workers:
                return False
            self._outstanding += 1
            return True

    def run_reserved(self, work: Callable[[], None]) -> None:
        executor = self._executor
        try:
            if executor is None:
                raise RuntimeError("dispatcher not started")
            executor.submit(self._run_booked, work)
        except RuntimeError:  # shutting down: the claimed run's lease lapses and it runs again
            self._task_ended()
            log.warning("a claimed run was not started, the pool is shut down")

    def cancel_reservation(self) -> None:
        self._task_ended()

    def _task_ended(self) -> None:
        with self._lock:
            self._outstanding -= 1

    def _run_booked(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # the executor swallows exceptions; make them visible
            log.exception("a claimed run: worker failed")
        finally:
            self._task_ended()

    def _safe_execute(self, run_id: str) -> None:
        with self._lock:
            self._pending.discard(run_id)
        try:
            self._execute(run_id)
        except Exception:  # the executor swallows exceptions; make them visible
            log.exception("run %s: worker failed", run_id)
        finally:
            self._task_ended()

    def shutdown(self) -> None:
        super().shutdown()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
