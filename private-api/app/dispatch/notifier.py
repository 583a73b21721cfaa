"""Wakes requests long-polling a run (``?wait=``) when a worker thread changes its status."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# Subscribed to, wakes on every run's change (a sweep's event stream re-counts its children then).
ANY = "*"


class Subscription(asyncio.Event):
    """Set on a change. ``state`` is what the publisher knew of it: the run's final public state
    when the worker that finished it runs in this process (the waiter answers without reading
    it back), ``STARTED`` when a worker here took it (nothing final to read), else None."""

    state: object | None = None


# Published when a worker of this process starts a run.
STARTED = "started"


class RunNotifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, Subscription]]] = {}

    @contextmanager
    def subscribe(self, run_id: str) -> Iterator[Subscription]:
        """Subscribe *before* reading the status, so a change in between is not missed."""
        entry = (asyncio.get_running_loop(), Subscription())
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

    def waited_for(self, run_id: str) -> bool:
        """Whether anyone here waits for this run (its final state is worth building)."""
        with self._lock:
            return run_id in self._waiters

    def publish_all(self, changes: Sequence[tuple[str, object | None]]) -> None:
        """``publish`` for several runs (a sweep chunk's)."""
        for run_id, state in changes:
            self.publish(run_id, state)

    def publish(self, run_id: str, state: object | None = None) -> None:
        """Thread-safe: called from worker threads. Also wakes the subscribers of ``ANY``.
        ``state``: what is known of the change (see ``Subscription``), for the run's own subscribers."""
        with self._lock:
            own = list(self._waiters.get(run_id, ()))
            waiters = [*own, *self._waiters.get(ANY, ())]
        for _, subscription in own:
            subscription.state = state
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the waiter's loop has closed
                loop.call_soon_threadsafe(event.set)
