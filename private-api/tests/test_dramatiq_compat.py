"""The dramatiq internals ``app.dispatch`` relies on, checked against the installed dramatiq and the
machine's Redis: ``enqueue_on_pipeline`` (a pipelined enqueue, which dramatiq has no public API
for) must store exactly what ``RedisBroker.enqueue`` stores, and what a ``Worker`` then runs and
acks; ``set_queue_prefetch`` must bound what a started worker fetches. Also: the installed and the
pinned dramatiq are within the range pyproject.toml declares (capped at the newest version these
internals were checked in)."""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from dramatiq import Message
from packaging.requirements import Requirement
from packaging.version import Version
from redis_keys import REDIS_URL, temporary_redis_prefix

from app.config import Settings
from app.db import Database
from app.dispatch.redis_queue import ACTOR_NAME, QUEUE_NAME, RedisDispatcher
from app.dispatch.worker import QueueConsumer
from app.runs.executor import FmuRunner

PROJECT_DIR = Path(__file__).resolve().parent.parent


def declared_dramatiq() -> Requirement:
    dependencies = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    (requirement,) = [r for r in map(Requirement, dependencies) if r.name == "dramatiq"]
    return requirement


def test_the_installed_and_pinned_dramatiq_are_in_the_declared_range() -> None:
    declared = declared_dramatiq()
    assert "redis" in declared.extras
    assert declared.specifier.contains(version("dramatiq")), (version("dramatiq"), str(declared.specifier))
    pins = [Requirement(line.split("#")[0]) for line in (PROJECT_DIR / "requirements.txt").read_text().splitlines()
            if line.split("#")[0].strip()]
    (pin,) = [p for p in pins if p.name == "dramatiq"]
    (pinned,) = [Version(s.version) for s in pin.specifier if s.operator == "=="]
    assert declared.specifier.contains(pinned), (str(pinned), str(declared.specifier))


class Runner:
    """What ``QueueConsumer`` uses of an ``FmuRunner``: its id, and ``stop`` (which kills sandboxes)."""

    def __init__(self) -> None:
        self.worker_id = "wrk_dramatiq_compat"
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()


class Executions:
    """The actor's body: records run ids; the first ``blocking`` ones block until ``release`` is set."""

    def __init__(self, blocking: int = 1) -> None:
        self.blocking = blocking
        self.run_ids: list[str] = []
        self.started = threading.Event()  # all the blocking ones
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, run_id: str) -> None:
        with self.lock:
            self.run_ids.append(run_id)
            count = len(self.run_ids)
        if count <= self.blocking:
            if count == self.blocking:
                self.started.set()
            assert self.release.wait(30)


def eventually(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """Only there because a dispatcher needs one: nothing here touches it."""
    database = Database(Settings(var_dir=tmp_path))
    try:
        yield database
    finally:
        database.dispose()


@contextmanager
def dispatcher(database: Database, namespace: str,
               execute: Callable[[str], None] = lambda _: None) -> Iterator[RedisDispatcher]:
    result = RedisDispatcher(database, REDIS_URL, namespace, execute=execute, executes_locally=False)
    try:
        yield result
    finally:
        result.shutdown()


def stored(client: redis.Redis, namespace: str) -> tuple[list[bytes], dict[bytes, bytes]]:
    """The queue's message ids in order, and its messages by id."""
    return (cast(list[bytes], client.lrange(f"{namespace}:{QUEUE_NAME}", 0, -1)),
            cast(dict[bytes, bytes], client.hgetall(f"{namespace}:{QUEUE_NAME}.msgs")))


def comparable(message: Message[Any]) -> dict[str, Any]:
    fields = message.asdict()
    for per_message in ("message_id", "message_timestamp"):
        del fields[per_message]
    fields["options"] = {key: value for key, value in fields["options"].items() if key != "redis_message_id"}
    return fields


def test_a_pipelined_send_stores_what_dramatiq_enqueue_stores(database: Database) -> None:
    run_ids = [f"run_{index}" for index in range(5)]
    client = redis.Redis.from_url(REDIS_URL)
    with temporary_redis_prefix("dramatiq-send") as prefix:
        sent_ns, public_ns = f"{prefix}sent", f"{prefix}public"
        with dispatcher(database, sent_ns) as sent, dispatcher(database, public_ns) as public:
            sent.send(run_ids)
            for run_id in run_ids:
                public.actor.send(run_id)  # RedisBroker.enqueue: dramatiq's public way, a round trip each

            layouts = [{key.decode().removeprefix(f"{ns}:"): client.type(key)
                        for key in client.scan_iter(match=f"{ns}:*")} for ns in (sent_ns, public_ns)]
            assert layouts[0] == layouts[1] == {QUEUE_NAME: b"list", f"{QUEUE_NAME}.msgs": b"hash",
                                                "__heartbeats__": b"zset"}
            for ns, broker_id in ((sent_ns, sent.broker.broker_id), (public_ns, public.broker.broker_id)):
                assert client.zrange(f"{ns}:__heartbeats__", 0, -1) == [broker_id.encode()]

            messages = []
            for ns in (sent_ns, public_ns):
                ids, by_id = stored(client, ns)
                assert sorted(ids) == sorted(by_id)
                decoded = [Message.decode(by_id[message_id]) for message_id in ids]
                assert [m.options["redis_message_id"].encode() for m in decoded] == ids
                messages.append([comparable(m) for m in decoded])
            assert messages[0] == messages[1]
            assert [m["args"] for m in messages[0]] == [(run_id,) for run_id in run_ids]
            assert {(m["actor_name"], m["queue_name"]) for m in messages[0]} == {(ACTOR_NAME, QUEUE_NAME)}
    client.close()


def test_a_worker_runs_and_acks_what_was_sent_fetching_no_more_than_its_prefetch(database: Database) -> None:
    run_ids = [f"run_{index}" for index in range(8)]
    threads = 2
    executions = Executions(blocking=threads)
    client = redis.Redis.from_url(REDIS_URL)
    with temporary_redis_prefix("dramatiq-consume") as prefix, \
            dispatcher(database, f"{prefix}dramatiq", executions) as sender:
        namespace = f"{prefix}dramatiq"
        acks = f"{namespace}:__acks__.{sender.broker.broker_id}.{QUEUE_NAME}"
        consumer = QueueConsumer(sender.broker, cast(FmuRunner, Runner()), threads=threads, drain_s=5)
        prefetch = 3  # two threads: 2 + max(1, 2 // 2); dramatiq's default would be 4
        sender.send(run_ids)
        consumer.start()
        try:
            assert executions.started.wait(15)
            eventually(lambda: client.llen(f"{namespace}:{QUEUE_NAME}") == len(run_ids) - prefetch)
            time.sleep(0.5)  # and no more, while both threads are busy
            assert client.llen(f"{namespace}:{QUEUE_NAME}") == len(run_ids) - prefetch
            assert client.scard(acks) == prefetch
            executions.release.set()
            eventually(lambda: len(executions.run_ids) == len(run_ids))
            eventually(lambda: client.scard(acks) == 0)  # acked by the id it was stored under
        finally:
            executions.release.set()
            consumer.stop()
        assert sorted(executions.run_ids) == sorted(run_ids)
        assert stored(client, namespace) == ([], {})
    client.close()


def test_stopping_puts_fetched_messages_not_started_back(database: Database) -> None:
    run_ids = [f"run_{index}" for index in range(4)]
    executions = Executions()
    runner = Runner()
    client = redis.Redis.from_url(REDIS_URL)
    with temporary_redis_prefix("dramatiq-stop") as prefix, \
            dispatcher(database, f"{prefix}dramatiq", executions) as sender:
        namespace = f"{prefix}dramatiq"
        consumer = QueueConsumer(sender.broker, cast(FmuRunner, runner), threads=1, drain_s=0.2)
        sender.send(run_ids)
        consumer.start()
        try:
            assert executions.started.wait(15)
            eventually(lambda: client.llen(f"{namespace}:{QUEUE_NAME}") == len(run_ids) - 2)
            # The drain runs out: the runner is stopped (here that ends the running run), then the
            # fetched message nobody started goes back to Redis.
            threading.Thread(target=lambda: runner.stopped.wait(30) and executions.release.set(),
                             daemon=True).start()
            consumer.stop()
        finally:
            executions.release.set()
        assert runner.stopped.is_set()
        assert len(executions.run_ids) == 1  # which of the two fetched runs first: FIFO from dramatiq 2.2 on
        ids, by_id = stored(client, namespace)
        back = [Message.decode(by_id[message_id]).args[0] for message_id in ids]
        assert sorted(back + executions.run_ids) == run_ids
        assert sorted(ids) == sorted(by_id)
        assert client.scard(f"{namespace}:__acks__.{sender.broker.broker_id}.{QUEUE_NAME}") == 0
    client.close()
