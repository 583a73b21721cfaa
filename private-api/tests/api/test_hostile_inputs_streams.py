"""Hostile inputs, streams: a tenant's open event streams are capped (across all of its keys and,
through Redis, all API processes), every stream ends at a maximum lifetime and resumes with
Last-Event-ID (the SDK's wait still sees the end), and large results are encoded as JSON or CSV
while they are sent, so the server's memory does not grow with the result."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from fmu_gateway_sdk import AsyncFMUGatewayClient, FMUGatewayClient, Sweep
from gateway_pair import redis_gateway_pair
from gateway_process import Gateway, running_gateway
from problems import assert_problem

CAP = 3
# Hostile mode 4 blocks in fmi2DoStep until the run's timeout: a run that stays "running".
SLEEP = {"start_values": {"mode": 4}, "stop_time": 1}


def user(gateway: Gateway, keys: int = 1) -> list[httpx.Client]:
    """A new user's clients, one per API key."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    clients = [gateway.client(gateway.create_user(1000, email=email))]
    for _ in range(keys - 1):
        result = gateway.admin("create-key", "--email", email)
        assert result.returncode == 0, result.stderr
        clients.append(gateway.client(result.stdout.strip().splitlines()[-1]))
    return clients


def upload(client: httpx.Client, path: Path) -> str:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    fmu_id: str = response.json()["id"]
    return fmu_id


def sleeping_run(client: httpx.Client, fmu_id: str, timeout_s: float = 60) -> str:
    response = client.post(f"/v1/fmus/{fmu_id}/runs", json={**SLEEP, "timeout_s": timeout_s})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def open_stream(stack: ExitStack, client: httpx.Client, path: str) -> httpx.Response:
    """An event stream kept open until ``stack`` closes; the first line is already read."""
    response = stack.enter_context(client.stream("GET", path, timeout=30))
    if response.status_code == 200:
        lines = response.iter_lines()
        # Held by the stack: a dropped line iterator would close the connection.
        stack.callback(lines.close)
        assert next(lines).startswith("retry: ")
    else:
        response.read()
    return response


def wait_until_open(client: httpx.Client, path: str, timeout: float = 10) -> httpx.Response:
    """A slot freed by a closed stream is free again within moments."""
    deadline = time.monotonic() + timeout
    while True:
        with client.stream("GET", path, timeout=30) as response:
            if response.status_code == 200:
                return response
            response.read()
            assert_problem(response, 429, "too_many_streams")
        assert time.monotonic() < deadline, "the closed streams' slots were never freed"
        time.sleep(0.2)


def assert_too_many_streams(response: httpx.Response) -> None:
    body = assert_problem(response, 429, "too_many_streams")
    assert body["limit"] == CAP
    assert int(response.headers["retry-after"]) == body["retry_after"] >= 1


@pytest.fixture(scope="module")
def capped() -> Iterator[Gateway]:
    """A gateway capping each user at CAP open streams, counted in memory."""
    with running_gateway("streams", FMU_GATEWAY_EVENTS_MAX_STREAMS_PER_USER=str(CAP), FMU_GATEWAY_REDIS_URL="",
                         FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0", FMU_GATEWAY_WARM_SANDBOXES="0") as gateway:
        yield gateway


class TestStreamCap:
    def test_streams_beyond_the_cap_from_several_keys_of_one_user_are_429(self, capped: Gateway,
                                                                           fmus: dict[str, Path]) -> None:
        keys = user(capped, keys=CAP)
        fmu_id = upload(keys[0], fmus["Hostile"])
        run_id = sleeping_run(keys[0], fmu_id)
        path = f"/v1/runs/{run_id}/events"
        try:
            # A stream that never starts (a missing run) gives its slot back at once.
            for _ in range(CAP + 2):
                assert_problem(keys[0].get("/v1/runs/run_missing/events"), 404, "not_found")
            with ExitStack() as stack:
                # One stream from each key: the keys share their user's cap.
                assert all(open_stream(stack, key, path).status_code == 200 for key in keys)
                for key in keys:
                    assert_too_many_streams(open_stream(stack, key, path))
                    # The same for a sweep's stream: one cap for both kinds.
                    assert_too_many_streams(open_stream(stack, key, "/v1/sweeps/swp_missing/events"))
            # Every stream above closed: the slots are free again.
            with ExitStack() as stack:
                wait_until_open(keys[0], path)
                assert all(open_stream(stack, key, path).status_code == 200 for key in keys)
        finally:
            keys[0].post(f"/v1/runs/{run_id}/cancel")

    def test_another_user_is_unaffected_by_a_full_cap(self, capped: Gateway, fmus: dict[str, Path]) -> None:
        (mallory,), (bob,) = user(capped), user(capped)
        mallory_run = sleeping_run(mallory, upload(mallory, fmus["Hostile"]))
        bob_run = sleeping_run(bob, upload(bob, fmus["Hostile"]))
        try:
            with ExitStack() as stack:
                for _ in range(CAP):
                    assert open_stream(stack, mallory, f"/v1/runs/{mallory_run}/events").status_code == 200
                assert_too_many_streams(open_stream(stack, mallory, f"/v1/runs/{mallory_run}/events"))
                for _ in range(CAP):
                    assert open_stream(stack, bob, f"/v1/runs/{bob_run}/events").status_code == 200
        finally:
            mallory.post(f"/v1/runs/{mallory_run}/cancel")
            bob.post(f"/v1/runs/{bob_run}/cancel")


@pytest.fixture(scope="module")
def redis_pair() -> Iterator[tuple[Gateway, Gateway]]:
    """Two servers on one PostgreSQL database and one Redis, as behind a load balancer."""
    with redis_gateway_pair("streams", FMU_GATEWAY_EVENTS_MAX_STREAMS_PER_USER=str(CAP),
                            FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0", FMU_GATEWAY_WARM_SANDBOXES="0") as pair:
        yield pair


class TestStreamCapThroughRedis:
    def test_two_servers_count_one_cap_per_user(self, redis_pair: tuple[Gateway, Gateway],
                                                fmus: dict[str, Path]) -> None:
        first, second = redis_pair
        key = first.create_user()
        on_first, on_second = first.client(key), second.client(key)
        run_id = sleeping_run(on_first, upload(on_first, fmus["Hostile"]))
        path = f"/v1/runs/{run_id}/events"
        try:
            with ExitStack() as stack:
                assert open_stream(stack, on_first, path).status_code == 200
                for _ in range(CAP - 1):
                    assert open_stream(stack, on_second, path).status_code == 200
                # Alone, each server would have let this one through.
                assert_too_many_streams(open_stream(stack, on_first, path))
                assert_too_many_streams(open_stream(stack, on_second, path))
            wait_until_open(on_first, path)
        finally:
            on_first.post(f"/v1/runs/{run_id}/cancel")


LIFETIME_S = 1.0


@pytest.fixture(scope="module")
def short_lived() -> Iterator[Gateway]:
    """A gateway whose event streams live one second."""
    with running_gateway("stream-lifetime", FMU_GATEWAY_EVENTS_MAX_STREAM_S=str(LIFETIME_S),
                         FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0") as gateway:
        yield gateway


def read_stream(client: httpx.Client, path: str, headers: dict[str, str] | None = None,
                timeout: float = 10) -> tuple[list[tuple[str, str, dict[str, Any]]], list[str], float]:
    """``(id, event, data)`` of every event until the server closes the stream, its raw lines, and
    how long it stayed open."""
    started = time.monotonic()
    events: list[tuple[str, str, dict[str, Any]]] = []
    lines: list[str] = []
    fields: dict[str, str] = {}
    with client.stream("GET", path, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            lines.append(line)
            if line == "" and "data" in fields:
                events.append((fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
            elif ": " in line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
    return events, lines, time.monotonic() - started


class TestStreamLifetime:
    def test_a_stream_ends_at_its_lifetime_and_resumes_after_last_event_id(self, short_lived: Gateway,
                                                                           fmus: dict[str, Path]) -> None:
        (client,) = user(short_lived)
        run_id = sleeping_run(client, upload(client, fmus["Hostile"]), timeout_s=30)
        path = f"/v1/runs/{run_id}/events"
        try:
            events, lines, open_s = read_stream(client, path)
            assert LIFETIME_S <= open_s < LIFETIME_S + 5
            assert events and "end" not in [name for _, name, _ in events]
            assert [int(event_id) for event_id, _, _ in events] == list(range(1, len(events) + 1))
            assert lines[-2].startswith("retry: ")  # the hint to come back, before the closing blank line
            last = events[-1][0]
            resumed, _, _ = read_stream(client, path, headers={"Last-Event-ID": last})
            # Numbered after the last id it saw, starting from the run's current state.
            assert resumed[0][0] == str(int(last) + 1) and resumed[0][2]["id"] == run_id
            # An id the server never sent is ignored, not an error.
            for junk in ("abc", "-5", "9" * 40, "1e3"):
                fresh, _, _ = read_stream(client, path, headers={"Last-Event-ID": junk})
                assert fresh[0][0] == "1"
            client.post(f"/v1/runs/{run_id}/cancel")
            ended, _, _ = read_stream(client, path, headers={"Last-Event-ID": "41"})
            assert [name for _, name, _ in ended] == ["status", "end"]
            assert [event_id for event_id, _, _ in ended] == ["42", "43"]
            assert ended[-1][2]["status"] == "cancelled"
        finally:
            client.post(f"/v1/runs/{run_id}/cancel")

    def test_the_sdks_sweep_wait_reconnects_with_last_event_id_until_the_end(self, short_lived: Gateway,
                                                                            fmus: dict[str, Path]) -> None:
        key = short_lived.create_user()
        sent: list[httpx.Request] = []

        def record(request: httpx.Request) -> None:
            if request.url.path.endswith("/events"):
                sent.append(request)

        with FMUGatewayClient(key, short_lived.base_url) as client:
            client._api._http.event_hooks["request"].append(record)
            fmu = client.fmus.upload(fmus["Hostile"])
            # Each child sleeps until its 3 s timeout: the sweep outlives several streams.
            sweep = client.sweeps.create(fmu, method="list", parameters=[{"mode": 4}, {"mode": 4}], stop_time=1,
                                         run_timeout=3)
            done = client.sweeps.wait(sweep, timeout=60)
        assert done.finished and done.counts.timed_out == 2
        assert len(sent) >= 2
        resumed = [int(r.headers["last-event-id"]) for r in sent[1:]]
        assert "last-event-id" not in sent[0].headers
        assert resumed == sorted(resumed) and resumed[0] >= 1

    def test_the_async_sdk_resumes_too(self, short_lived: Gateway, fmus: dict[str, Path]) -> None:
        key = short_lived.create_user()
        sent: list[httpx.Request] = []

        async def record(request: httpx.Request) -> None:
            if request.url.path.endswith("/events"):
                sent.append(request)

        async def main() -> list[tuple[str, Sweep]]:
            async with AsyncFMUGatewayClient(key, short_lived.base_url) as client:
                client._api._http.event_hooks["request"].append(record)
                fmu = await client.fmus.upload(fmus["Hostile"])
                sweep = await client.sweeps.create(fmu, method="list", parameters=[{"mode": 4}], stop_time=1,
                                                   run_timeout=3)
                return [event async for event in client.sweeps.events(sweep)]

        events = asyncio.run(main())
        assert events[-1][0] == "end" and events[-1][1].finished
        assert len(sent) >= 2 and all("last-event-id" in r.headers for r in sent[1:])


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so each download is
    # measured from where it starts.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# 1,000,001 rows of time, x0, x1: a 24 MB Arrow file, ~50 MB of JSON or CSV. Built whole, the JSON
# took the server's peak up by ~250 MB and the CSV by ~80 MB; streamed, by the mapped Arrow file's
# pages and one chunk.
BIG = {"start_values": {"mu": 1.0}, "stop_time": 100, "output_interval": 1e-4, "timeout_s": 120}
MAX_GROWTH_KIB = 48 << 10


@pytest.fixture(scope="module")
def big_result(fmus: dict[str, Path]) -> Iterator[tuple[Gateway, httpx.Client, str, pa.Table]]:
    """A gateway of its own (nothing else moves its memory) with one large succeeded result."""
    with running_gateway("big-result", FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0",
                         FMU_GATEWAY_RUN_MAX_TIMEOUT_S="120") as gateway:
        client = gateway.client(gateway.create_user(1000, tier="pro"))
        fmu_id = upload(client, fmus["VanDerPol"])
        response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 120}, json=BIG, timeout=180)
        assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
        run_id = response.json()["id"]
        arrow = client.get(f"/v1/runs/{run_id}/result", params={"format": "arrow"}).content
        table = pa.ipc.open_file(pa.BufferReader(arrow)).read_all()
        assert table.num_rows > 1_000_000
        # A small result in every format first: the libraries' and threads' one-off start-up
        # memory is not the large result's.
        small = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={"stop_time": 1}).json()
        for fmt in ("json", "csv", "parquet"):
            assert client.get(f"/v1/runs/{small['id']}/result", params={"format": fmt}).status_code == 200
        yield gateway, client, run_id, table


def download(gateway: Gateway, client: httpx.Client, run_id: str, fmt: str) -> tuple[httpx.Response, int]:
    """The result in ``fmt``, and how far the server's peak memory rose while it sent it (KiB)."""
    pid = gateway.process.pid
    reset_peak(pid)
    before = memory_kib(pid, "VmHWM")
    response = client.get(f"/v1/runs/{run_id}/result", params={"format": fmt}, timeout=120)
    assert response.status_code == 200, response.text
    growth = memory_kib(pid, "VmHWM") - before
    print(f"{fmt}: {len(response.content) >> 20} MiB sent, server peak +{growth >> 10} MiB")
    return response, growth


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs /proc/<pid>/clear_refs")
class TestStreamedResults:
    def test_a_large_result_as_json_is_streamed_and_unchanged(
            self, big_result: tuple[Gateway, httpx.Client, str, pa.Table]) -> None:
        gateway, client, run_id, table = big_result
        response, growth_kib = download(gateway, client, run_id, "json")
        assert len(response.content) > MAX_GROWTH_KIB << 10
        assert growth_kib < MAX_GROWTH_KIB, f"the server grew by {growth_kib >> 10} MiB to send the JSON"
        assert "content-length" not in response.headers  # sent as it is encoded
        # The same document as before it was streamed: json.dumps of the whole table.
        columns = {name: [None if isinstance(v, float) and not math.isfinite(v) else v
                          for v in table.column(name).to_pylist()] for name in table.column_names}
        assert response.content == json.dumps({"columns": table.column_names, "rows": table.num_rows,
                                               "data": columns}, allow_nan=False).encode()
        body = json.loads(response.content)
        np.testing.assert_array_equal(body["data"]["x0"], table.column("x0").to_numpy())

    def test_a_large_result_as_csv_is_streamed_and_unchanged(
            self, big_result: tuple[Gateway, httpx.Client, str, pa.Table]) -> None:
        gateway, client, run_id, table = big_result
        response, growth_kib = download(gateway, client, run_id, "csv")
        assert growth_kib < MAX_GROWTH_KIB, f"the server grew by {growth_kib >> 10} MiB to send the CSV"
        assert "content-length" not in response.headers
        expected = io.BytesIO()
        pa_csv.write_csv(table, expected)
        assert response.content == expected.getvalue()
        assert pa_csv.read_csv(io.BytesIO(response.content)).equals(table)
