"""Run changes travel between processes over Redis (the real one on this machine)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from redis_keys import REDIS_URL, temporary_redis_prefix

from app.dispatch.change_relay import RelayedNotifier


@pytest.fixture
def relays() -> Iterator[tuple[RelayedNotifier, RelayedNotifier]]:
    """Two processes' relays on one channel: an API process and a worker, say."""
    with temporary_redis_prefix("relay") as prefix:
        api, worker = RelayedNotifier(REDIS_URL, prefix), RelayedNotifier(REDIS_URL, prefix)
        api.start()
        worker.start()
        try:
            yield api, worker
        finally:
            api.stop()
            worker.stop()


async def woken(relay: RelayedNotifier, run_id: str, publish: RelayedNotifier, state: object | None = None,
                timeout: float = 10.0) -> object | None:
    """Subscribe through ``relay``'s notifier, publish through ``publish``; the state seen once woken."""
    with relay.subscribe(run_id) as changed:
        # The listener subscribes in its own thread: publish until a message gets through.
        async def keep_publishing() -> None:
            while not changed.is_set():
                publish.publish(run_id, state)
                await asyncio.sleep(0.05)

        await asyncio.wait_for(keep_publishing(), timeout)
        return changed.state


def test_a_change_in_another_process_wakes_the_waiter(relays: tuple[RelayedNotifier, RelayedNotifier]) -> None:
    api, worker = relays
    # The worker's notifier alone could never wake a waiter of the API's: only the relay can.
    assert asyncio.run(woken(api, "run_elsewhere", worker, "final state")) is None  # read it back


def test_a_processs_own_change_is_not_delivered_twice(relays: tuple[RelayedNotifier, RelayedNotifier]) -> None:
    api, worker = relays
    # Woken locally with the final state; its echo from Redis must not replace it with nothing.
    state = asyncio.run(woken(api, "run_here", api, "final state"))
    assert state == "final state"

    async def after_echo() -> object | None:
        with api.subscribe("run_here") as changed:
            api.publish("run_here", "final state")
            await asyncio.wait_for(changed.wait(), 5)
            # The worker sees the message: so has the API's own listener by now (one channel, in order).
            await woken(worker, "probe", api)
            return changed.state

    assert asyncio.run(after_echo()) == "final state"


def test_publishing_without_redis_only_notifies_locally() -> None:
    relay = RelayedNotifier("redis://127.0.0.1:1/0", "unreachable:")

    async def local() -> object | None:
        with relay.subscribe("run_local") as changed:
            relay.publish("run_local", "final state")  # logs once, never raises
            await asyncio.wait_for(changed.wait(), 5)
            return changed.state

    assert asyncio.run(local()) == "final state"
