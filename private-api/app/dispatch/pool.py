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
            executor.submit(self._safe_execute, run_id)

    def _safe_execute(self, run_id: str) -> None:
        with self._lock:
            self._pending.discard(run_id)
        try:
            self._execute(run_id)
        except Exception:  # the executor swallows exceptions; make them visible
            log.exception("run %s: worker failed", run_id)

    def shutdown(self) -> None:
        super().shutdown()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
