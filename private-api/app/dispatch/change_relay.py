"""Run changes across processes: with Dramatiq workers a run finishes in another process, whose
notifier cannot wake this one's ``?wait=`` requests and event streams. Each process publishes the
runs it changes on one Redis channel and forwards what the others publish to its own notifier, so a
waiting request is woken at once instead of by its one-second re-read (which stays, should a
message be lost: Redis pub/sub does not keep messages for a subscriber that is reconnecting)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import redis

from app.background import BackgroundThread
from app.dispatch.notifier import RunNotifier

log = logging.getLogger(__name__)

# Between reconnections to Redis while it is unreachable.
RETRY_S = 1.0


class RelayedNotifier(RunNotifier):
    """A ``RunNotifier`` whose ``publish`` also tells the other processes, and whose listener
    thread (``start``/``stop``) wakes this process's subscribers for theirs."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self.channel = f"{prefix}run-changes"
        self.origin = uuid.uuid4().hex  # this process: its own messages are delivered already
        self.client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._listener = _Listener(self)
        self._failing = False

    def publish(self, run_id: str, state: object | None = None) -> None:
        self.publish_all([(run_id, state)])

    def publish_all(self, changes: Sequence[tuple[str, object | None]]) -> None:
        """Wake this process's subscribers, then tell the others, in one round trip (never raises:
        a lost message costs a waiter its re-read, not the run)."""
        for run_id, state in changes:
            super().publish(run_id, state)
        try:
            pipe = self.client.pipeline(transaction=False)
            for run_id, _ in changes:
                pipe.publish(self.channel, f"{self.origin} {run_id}")
            pipe.execute()
            self._failing = False
        except redis.RedisError as exc:
            if not self._failing:  # once per outage
                log.warning("cannot publish run changes to Redis; waiters fall back to re-reading: %s", exc)
            self._failing = True

    def forward(self, data: object) -> None:
        """A message from the channel: another process changed this run."""
        if not isinstance(data, bytes):
            return
        origin, _, run_id = data.decode("ascii", "replace").partition(" ")
        if origin != self.origin and run_id:
            super().publish(run_id)

    def start(self) -> None:
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()
        self.client.close()


class _Listener(BackgroundThread):
    thread_name = "run-change-listener"
    join_timeout_s = 3.0

    def __init__(self, notifier: RelayedNotifier) -> None:
        super().__init__()
        self.notifier = notifier

    def _loop(self) -> None:
        while not self._stop.is_set():
            pubsub = self.notifier.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self.notifier.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self.notifier.forward(message.get("data"))
            except redis.RedisError as exc:
                log.debug("run change listener: %s; reconnecting", exc)
                self._stop.wait(RETRY_S)
            finally:
                pubsub.close()
