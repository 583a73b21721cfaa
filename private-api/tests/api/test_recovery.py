"""A server killed with SIGKILL mid-run: the next start re-queues the run, finishes it, charges it
once, and removes what the dead process left behind."""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from pathlib import Path

from gateway_process import REPO_ROOT, start_gateway, stop_gateway


def test_run_interrupted_by_a_server_crash_completes_after_restart(fmus: dict[str, Path]) -> None:
    var_dir = REPO_ROOT / "var" / f"test-crash-{uuid.uuid4().hex[:8]}"
    first = start_gateway(var_dir)
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

        second = start_gateway(var_dir)
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
