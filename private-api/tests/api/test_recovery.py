"""A server killed with SIGKILL mid-run: once the dead process's lease on the run lapses, the next
start's reaper re-queues the run, finishes it, charges it once, and removes what the dead process
left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from gateway_process import REPO_ROOT, start_gateway, stop_gateway

# Short leases, so the restarted server reaps the dead one's run quickly.
LEASE = {"FMU_GATEWAY_RUN_LEASE_S": "2", "FMU_GATEWAY_DISPATCH_POLL_S": "0.5"}


def test_run_interrupted_by_a_server_crash_completes_after_restart(fmus: dict[str, Path]) -> None:
    var_dir = REPO_ROOT / "var" / f"test-crash-{uuid.uuid4().hex[:8]}"
    first = start_gateway(var_dir, **LEASE)
    second = None
    try:
        key = first.create_user(credits=3)
        client = first.client(key)
        fmu = client.post("/v1/fmus", files={"file": ("h.fmu", fmus["Hostile"].read_bytes())}).json()
        run_id = client.post(f"/v1/fmus/{fmu['id']}/runs",
                             json={"start_values": {"mode": 4}, "timeout_s": 3}).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/runs/{run_id}").json()["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        client.close()
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        left_behind = {p.name for p in (var_dir / "sandboxes").glob("sbx-*")}
        assert left_behind, "the killed server left no sandbox directory: nothing was running?"

        second = start_gateway(var_dir, **LEASE)
        client = second.client(key)
        run = client.get(f"/v1/runs/{run_id}", params={"wait": 30}).json()
        assert run["status"] == "timed_out", run
        assert client.get("/v1/billing/balance").json()["credits"] == 2
        assert not left_behind & {p.name for p in (var_dir / "sandboxes").glob("sbx-*")}
        assert "left by a previous process" in second.log_path.read_text()
    finally:
        for gateway in (first, second):
            if gateway is not None:
                stop_gateway(gateway)
        shutil.rmtree(var_dir, ignore_errors=True)


def test_a_retry_after_a_crash_mid_request_finds_the_run_the_first_attempt_created(fmus: dict[str, Path]) -> None:
    """The first attempt dies holding its Idempotency-Key; once the lock lapses a retry runs again
    and the run's own key column hands back the run instead of creating and charging another."""
    var_dir = REPO_ROOT / "var" / f"test-crash-idem-{uuid.uuid4().hex[:8]}"
    first = start_gateway(var_dir, **LEASE)
    second = None
    try:
        key = first.create_user(credits=50)
        client = first.client(key)
        fmu = client.post("/v1/fmus", files={"file": ("h.fmu", fmus["Hostile"].read_bytes())}).json()
        url, body = f"/v1/fmus/{fmu['id']}/runs", {"start_values": {"mode": 4}, "timeout_s": 3, "stop_time": 1}
        headers = {"Idempotency-Key": "crash-me"}
        with ThreadPoolExecutor(1) as pool:
            # A long-poll: the first attempt is still open, its key locked, when the server dies.
            attempt = pool.submit(client.post, url, json=body, headers=headers, params={"wait": 30})
            deadline = time.monotonic() + 30
            while not client.get("/v1/runs").json()["data"] and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait()
            with contextlib.suppress(httpx.HTTPError):
                attempt.result()
        second = start_gateway(var_dir, **LEASE)
        retry = second.client(key)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = retry.post(url, json=body, headers=headers)
            if response.status_code != 409:
                break
            assert response.json()["code"] == "idempotency_key_in_use"
            time.sleep(float(response.headers["retry-after"]))
        assert response.status_code in (200, 202), response.text
        assert response.headers["idempotent-replayed"] == "true"
        runs = retry.get("/v1/runs").json()["data"]
        assert [r["id"] for r in runs] == [response.json()["id"]]
        assert len(retry.get("/v1/billing/ledger", params={"kind": "hold"}).json()["data"]) == 1
    finally:
        for gateway in (first, second):
            if gateway is not None:
                stop_gateway(gateway)
        shutil.rmtree(var_dir, ignore_errors=True)
