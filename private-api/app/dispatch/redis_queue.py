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
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis

from app.db import Database
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


class RedisDispatcher(Dispatcher):
    def __init__(self, db: Database, url: str, namespace: str, execute: Callable[[str], None],
                 executes_locally: bool) -> None:
        super().__init__(db)
        self.broker = create_broker(url, namespace)
        self._executes_locally = executes_locally
        # A key no message outlives: when it is gone, so is the queue (see ``queue_lost``).
        self._epoch_key = f"{namespace}:fmu-gateway:epoch"

        # Declared in every process (it declares the queue); only workers consume it.
        self.actor: dramatiq.Actor[[str], None] = dramatiq.actor(
            actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, broker=self.broker)(execute)

    def check(self) -> bool:
        self.broker.client.ping()
        return True

    def queue_lost(self) -> bool:
        """An epoch key marks the broker's memory: a restart without persistence or a flush takes
        it with the queue. The first process to find it gone sets it again (SET NX: exactly one
        wins) and re-sends what the database says is queued; the others find it set. A broker
        seen for the first time counts as lost: what was queued while no process watched is sent
        again (a duplicate message does nothing)."""
        won = bool(self.broker.client.set(self._epoch_key, uuid.uuid4().hex, nx=True))
        if won:
            log.warning("the broker has no queue epoch (a first start, or its queue was lost to a restart or a "
                        "flush): sending every queued run again")
        return won

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
