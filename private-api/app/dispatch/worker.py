"""Consumes the Redis queue: a Dramatiq ``Worker`` inside this process, ``settings.workers``
threads, each driving one sandbox at a time. Runs in ``fmu-gateway-admin worker`` processes and,
with ``FMU_GATEWAY_API_EXECUTES_RUNS``, inside API processes."""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from app.dispatch.redis_queue import WORKER_TIMEOUT_MS
from app.runs.executor import FmuRunner

log = logging.getLogger(__name__)


def set_queue_prefetch(worker: dramatiq.Worker, prefetch: int) -> None:
    """Have ``worker``, once started, hold at most ``prefetch`` messages fetched and not yet acked.

    An undocumented ``Worker`` attribute, kept on purpose: ``Worker`` takes no prefetch argument,
    and the documented knob, the ``dramatiq_queue_prefetch`` environment variable, is read once,
    when ``dramatiq.worker`` is imported. ``Worker.__init__`` sets ``queue_prefetch`` and
    ``Worker.start`` hands it to each queue's consumer; checked in dramatiq 1.17.0, 1.17.1, 1.18.0,
    2.0.0, 2.0.1, 2.1.0, 2.2.0 and 2.2.1 (tests/test_dramatiq_compat.py fails if that changes).
    """
    worker.queue_prefetch = prefetch


class QueueConsumer:
    def __init__(self, broker: RedisBroker, runner: FmuRunner, threads: int, drain_s: float) -> None:
        self.runner = runner
        self.drain_s = drain_s
        self.threads = threads
        self.worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
        # Fetch no more than the threads can start: a message waiting in a worker that then dies
        # is stuck until the relay re-sends its run.
        set_queue_prefetch(self.worker, threads + max(1, threads // 2))

    def start(self) -> None:
        self.worker.start()
        log.info("worker %s consuming with %d thread(s)", self.runner.worker_id, self.threads)

    def stop(self) -> None:
        """Stop fetching; let running runs finish for ``drain_s``, then kill their sandboxes (the
        runs go back to the queue). Fetched messages not started go back to Redis."""
        interrupt = threading.Timer(self.drain_s, self.runner.stop)
        interrupt.daemon = True
        interrupt.start()
        try:
            self.worker.stop(timeout=int((self.drain_s + 30) * 1000))
        finally:
            interrupt.cancel()
