"""Dispatcher interface: hands committed, queued run ids to whatever executes them.

Runs are created with ``enqueued_at`` NULL in the transaction that holds their credits (the
outbox). After the commit the caller submits them; a sender thread hands them to the queue in
batches and only then stamps ``enqueued_at``. Whatever is lost on the way (a crash between commit
and hand-over, a queue that is down, a message dropped by a dead worker) is handed over again by
the relay (``app.dispatch.relay``): a run is delayed, never lost. A run handed over twice is
harmless: executing it starts with a conditional UPDATE queued → running that only one wins.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

from app.db import Database
from app.kit.models import utcnow
from app.runs import repository as run_repository

log = logging.getLogger(__name__)

# Run ids handed over in one batch (one pipelined round trip to the broker, one UPDATE).
SEND_BATCH = 500


def mark_enqueued(db: Database, run_ids: Sequence[str]) -> None:
    with db.session(write=True) as session:
        run_repository.mark_enqueued(session, run_ids, utcnow())
        session.commit()


class Dispatcher(ABC):
    # Whether the sender stamps ``enqueued_at`` after a hand-over (see the module docstring).
    stamps_enqueued = True

    def __init__(self, db: Database) -> None:
        self.db = db
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None

    def start(self) -> None:
        self._sender = threading.Thread(target=self._send_loop, name="dispatch-sender", daemon=True)
        self._sender.start()

    def submit(self, run_id: str) -> None:
        """Call only after the run's row (and its credit hold) is committed. Never blocks."""
        self._outbox.put(run_id)

    def submit_many(self, run_ids: Iterable[str]) -> None:
        """``submit`` for a batch (a sweep's children): sent in pipelined batches."""
        for run_id in run_ids:
            self._outbox.put(run_id)

    def check(self) -> bool:
        """Whether this dispatcher has a broker, which answered (raises if it does not)."""
        return False

    def queue_lost(self) -> bool:
        """Whether the queue lost its messages since this process last asked (a broker restarted
        without persistence, or flushed), and this process is the one to send every queued run
        again. Raises if the broker does not answer."""
        return False

    def reserve(self) -> bool:
        """Book a worker of this process that is free now, for a run its submission claims itself
        (``FmuRunner.claim_submitted``); then ``run_reserved`` or ``cancel_reservation``. Only a
        dispatcher whose workers are this process's threads has them."""
        return False

    def run_reserved(self, work: Callable[[], None]) -> None:
        raise RuntimeError("this dispatcher books no workers")

    def cancel_reservation(self) -> None:
        raise RuntimeError("this dispatcher books no workers")

    @abstractmethod
    def send(self, run_ids: Sequence[str]) -> None:
        """Hand runs to the executing side now; raise if that failed (the relay retries)."""

    @property
    @abstractmethod
    def executes_locally(self) -> bool:
        """Whether this process's own threads execute what it sends."""

    def shutdown(self) -> None:
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(timeout=10)
            self._sender = None

    def _send_loop(self) -> None:
        while True:
            first = self._outbox.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < SEND_BATCH:
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self.send(batch)
                if self.stamps_enqueued:
                    mark_enqueued(self.db, batch)
            except Exception as exc:  # the relay hands them over once the queue is back
                log.warning("could not enqueue %d run(s), the relay will retry: %s", len(batch), exc)
            if stop:
                return
