"""Dramatiq on Redis: API processes enqueue ``execute_run(run_id)`` messages; worker processes
(``fmu-gateway-admin worker``) consume them, any number of them on any number of hosts.

Dramatiq acks a message after the actor returns; a worker that dies holding messages leaves them
unacked, and Dramatiq only moves them back once the worker's heartbeat is a minute old and a
random maintenance pass happens to run. So delivery is not what makes runs reliable: the database
is. Leases (``app.dispatch.leases``) notice a vanished worker, the relay re-sends queued runs whose
message went missing, and a message for a run that is no longer queued does nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from app.db import DATABASE_DOWN, Database
from app.dispatch.base import Dispatcher

log = logging.getLogger(__name__)

ACTOR_NAME = "execute_run"
QUEUE_NAME = "runs"
# Short, so a worker thread that finished a run gets the next message without idling; it is
# also how often an idle consumer polls Redis.
WORKER_TIMEOUT_MS = 100


def create_broker(url: str, namespace: str) -> RedisBroker:
    # No middleware: no retries (a failed run is final; a lost one is the leases' business), no
    # time limit (the sandbox enforces the run's own), no age limit.
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=30)
    return RedisBroker(client=client, namespace=namespace, middleware=[])  # type: ignore[no-untyped-call]


def enqueue_on_pipeline(broker: RedisBroker, pipe: redis.client.Pipeline, message: dramatiq.Message[Any]) -> None:
    """Queue on ``pipe`` what ``broker.enqueue(message)`` does in a round trip of its own.

    Private dramatiq API, kept on purpose: dramatiq has no batch or pipelined
    enqueue (``RedisBroker.enqueue`` runs its ``dispatch`` Lua script once per message, on the
    broker's own client, and ``group(...).run()`` just calls it per message). So this runs that
    script with the arguments ``RedisBroker._dispatch("enqueue")`` passes (worker id, heartbeat
    timeout, dead message TTL, ``_max_unpack_size()``), and the fresh ``redis_message_id`` option
    ``RedisBroker.enqueue`` adds; only the random maintenance pass is left to the workers' fetches.
    Checked identical in dramatiq 1.17.0, 1.17.1, 1.18.0, 2.0.0, 2.0.1, 2.1.0, 2.2.0 and 2.2.1 (the
    enqueue branch of ``dispatch.lua``, ``_dispatch``, ``_max_unpack_size``, ``enqueue``);
    pyproject.toml caps dramatiq below the next unchecked minor, and tests/test_dramatiq_compat.py
    fails when an installed version stores or consumes these messages differently.
    """
    message_id = str(uuid.uuid4())
    message = message.copy(options={"redis_message_id": message_id})
    broker.scripts["dispatch"](keys=[broker.namespace], client=pipe, args=[
        "enqueue", current_millis(), message.queue_name, broker.broker_id, broker.heartbeat_timeout,
        broker.dead_message_ttl, 0, broker._max_unpack_size(),  # type: ignore[no-untyped-call]
        message_id, message.encode()])


# How long a message waits for a database that does not answer before it is given up (the relay
# sends its run again later: the database is the queue's source of truth).
DATABASE_WAIT_S = 300.0
DATABASE_BACKOFF_MAX_S = 2.0


def run_waiting_for_the_database(execute: Callable[[str], None], run_id: str) -> None:
    """``execute(run_id)``, again with backoff while the database does not answer: the broker here
    retries nothing, so a message whose first database step failed would be dropped, and its run
    would wait for the relay's re-send (minutes) instead of the database's return (seconds)."""
    deadline = time.monotonic() + DATABASE_WAIT_S
    delay = 0.1
    while True:
        try:
            execute(run_id)
            return
        except DATABASE_DOWN as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("run %s waits for the database (%s); again in %.1f s", run_id, type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, DATABASE_BACKOFF_MAX_S)


class RedisDispatcher(Dispatcher):
    def __init__(self, db: Database, url: str, namespace: str, execute: Callable[[str], None],
                 executes_locally: bool) -> None:
        super().__init__(db)
        self.broker = create_broker(url, namespace)
        self._executes_locally = executes_locally

        def execute_run(run_id: str) -> None:
            run_waiting_for_the_database(execute, run_id)

        # Declared in every process (it declares the queue); only workers consume it.
        self.actor: dramatiq.Actor[[str], None] = dramatiq.actor(
            actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, broker=self.broker)(execute_run)

    def check(self) -> bool:
        self.broker.client.ping()
        return True

    @property
    def executes_locally(self) -> bool:
        return self._executes_locally

    def send(self, run_ids: Sequence[str]) -> None:
        """Enqueue one message per run in a single pipelined round trip (``RedisBroker.enqueue``
        costs a round trip per message; see ``enqueue_on_pipeline``)."""
        pipe = self.broker.client.pipeline(transaction=False)
        for run_id in run_ids:
            enqueue_on_pipeline(self.broker, pipe, self.actor.message(run_id))
        pipe.execute()

    def shutdown(self) -> None:
        super().shutdown()
        self.broker.close()
