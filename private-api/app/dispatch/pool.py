"""The embedded dispatcher: a pool of worker threads in the API process, each driving one
sandbox at a time. The sandbox is a separate process tree, so a crashing model cannot take
the server down; threads only wait on it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.dispatch.base import Dispatcher

log = logging.getLogger(__name__)


class InProcessDispatcher(Dispatcher):
    def __init__(self, execute: Callable[[str], None], workers: int) -> None:
        self._execute = execute
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="run-worker")

    def submit(self, run_id: str) -> None:
        if self._executor is None:
            raise RuntimeError("dispatcher not started")
        self._executor.submit(self._safe_execute, run_id)

    def _safe_execute(self, run_id: str) -> None:
        try:
            self._execute(run_id)
        except Exception:  # the executor swallows exceptions; make them visible
            log.exception("run %s: worker failed", run_id)

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
