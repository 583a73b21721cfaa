"""Wakes requests long-polling a run (``?wait=``) when a worker thread changes its status."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Subscribed to, wakes on every run's change (a sweep's event stream re-counts its children then).
ANY = "*"


class RunNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextmanager
    def subscribe(self, run_id: str) -> Iterator[asyncio.Event]:
        """Subscribe *before* reading the status, so a change in between is not missed."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(run_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(run_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[run_id]

    def publish(self, run_id: str) -> None:
        """Thread-safe: called from worker threads. Also wakes the subscribers of ``ANY``."""
        with self._lock:
            waiters = [*self._waiters.get(run_id, ()), *self._waiters.get(ANY, ())]
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the waiter's loop has closed
                loop.call_soon_threadsafe(event.set)
