"""Fairness across tenants on a real gateway: a worker that comes free serves the tenant with the
fewest runs running (app.runs.scheduling), and a sweep's chunks are sized to last about
``FMU_GATEWAY_SWEEP_CHUNK_SECONDS``, so one tenant's large sweep does not hold the queue: another
tenant's single run, or small sweep, starts within seconds.

The sweeps' children sleep in the model until their 1 s deadline: they take a worker's time and
no CPU, so the timings measured here are the scheduler's, not the machine's load."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_process import Gateway, running_gateway
from test_sweeps import create, new_client, upload, wait

pytestmark = pytest.mark.timeout(300)

WORKERS = 2
# Hostile mode 4 sleeps in fmi2DoStep from t = 0.5: each child takes its whole 1 s deadline.
SLEEPING = {"stop_time": 1, "output_interval": 0.1, "timeout_s": 1, "fmi_type": "CoSimulation"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with running_gateway("fairness", FMU_GATEWAY_WORKERS=str(WORKERS), FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0") as gw:
        yield gw


def big_sweep(client: httpx.Client, fmus: dict[str, Path], children: int) -> dict[str, Any]:
    fmu_id = upload(client, fmus["Hostile"])
    return create(client, fmu_id, method="grid", parameters={"mode": [4], "port": list(range(8000, 8000 + children))},
                  **SLEEPING)


def counts(client: httpx.Client, sweep_id: str) -> dict[str, int]:
    response = client.get(f"/v1/sweeps/{sweep_id}")
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()["counts"]
    return result


def wait_running(client: httpx.Client, sweep_id: str) -> None:
    """Until every worker is busy with the sweep."""
    deadline = time.monotonic() + 30
    while counts(client, sweep_id)["running"] < WORKERS:
        assert time.monotonic() < deadline, counts(client, sweep_id)
        time.sleep(0.1)


def test_a_single_run_behind_another_tenants_large_sweep_starts_within_seconds(gateway: Gateway,
                                                                              fmus: dict[str, Path]) -> None:
    owner, other = new_client(gateway, 10_000, tier="pro"), new_client(gateway, 100)
    sweep = big_sweep(owner, fmus, 80)
    try:
        wait_running(owner, sweep["id"])
        fmu_id = upload(other, fmus["Feedthrough"])
        response = other.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={"stop_time": 1})
        assert response.status_code == 200, response.text
        run = response.json()
        left = counts(owner, sweep["id"])["queued"]
        assert run["status"] == "succeeded", run
        # In a FIFO it would wait for 10 of the sweep's messages, each a chunk of several seconds.
        assert run["timings"]["queued_s"] < 5, run["timings"]
        assert left >= 40, left  # it did not wait for the sweep
    finally:
        owner.post(f"/v1/sweeps/{sweep['id']}/cancel")


def test_a_small_sweep_shares_the_workers_with_an_earlier_large_one(gateway: Gateway,
                                                                      fmus: dict[str, Path]) -> None:
    large_owner, small_owner = new_client(gateway, 10_000, tier="pro"), new_client(gateway, 10_000, tier="pro")
    large = big_sweep(large_owner, fmus, 80)
    try:
        wait_running(large_owner, large["id"])
        started = time.monotonic()
        small = big_sweep(small_owner, fmus, 6)
        assert wait(small_owner, small["id"], timeout=60)["counts"]["timed_out"] == 6
        elapsed = time.monotonic() - started
        left = counts(large_owner, large["id"])["queued"]
        # Six 1 s children with at least one of the two workers: about 6 s, not the large sweep's 40.
        assert elapsed < 15, elapsed
        assert left >= 30, left
    finally:
        large_owner.post(f"/v1/sweeps/{large['id']}/cancel")
