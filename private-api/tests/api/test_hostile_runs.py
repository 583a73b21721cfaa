"""Hostile models through the whole service: each ends as a clean failed/timed_out run or a
harmless run that saw nothing; the server answers throughout and nothing is left running."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from gateway_process import REPO_ROOT, SECRET_KEY, Gateway

MODES = {"segfault": 1, "abort": 2, "endless_loop": 3, "sleep": 4, "memory_hog": 5, "fmi_error": 6,
         "fork_loop": 7, "network": 8, "secrets": 9, "write_outside": 10, "leave_process": 11,
         "fill_directory": 12}


def hostile_run(client: httpx.Client, fmu_id: object, mode: str, timeout_s: float = 5,
                **start_values: Any) -> dict[str, Any]:
    response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={
        "stop_time": 1, "output_interval": 0.1, "timeout_s": timeout_s,
        "start_values": {"mode": MODES[mode], **start_values}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def final_probe(client: httpx.Client, run_id: str) -> float:
    content = client.get(f"/v1/runs/{run_id}/result").content
    table = pa.ipc.open_file(pa.BufferReader(content)).read_all()
    return float(table.column("probe").to_pylist()[-1])


def leftover_processes(gateway: Gateway, run_id: str) -> list[str]:
    """Processes still carrying the sandbox id of a finished run (the server logs which one it used)."""
    match = re.search(rf"run {run_id}: sandbox (sbx-[0-9a-f]+)", gateway.log_path.read_text())
    assert match, f"no sandbox logged for {run_id}"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"FMU_GATEWAY_SANDBOX_ID={match.group(1)}".encode() in environ.split(b"\0"):
                found.append(entry.name)
    return found


@pytest.fixture
def hostile(uploaded: dict[str, Any]) -> object:
    return uploaded["Hostile"]["id"]


class TestCrashes:
    @pytest.mark.parametrize(("mode", "signal_name"), [("segfault", "SIGSEGV"), ("abort", "SIGABRT")])
    def test_crash_fails_the_run_naming_the_signal(self, alice: httpx.Client, hostile: object,
                                                   mode: str, signal_name: str) -> None:
        body = hostile_run(alice, hostile, mode)
        assert body["status"] == "failed"
        assert body["error"]["code"] == "model_crashed"
        assert signal_name in body["error"]["message"]

    @pytest.mark.parametrize("mode", ["endless_loop", "sleep"])
    def test_hang_is_killed_at_the_deadline(self, gateway: Gateway, alice: httpx.Client, hostile: object,
                                            mode: str) -> None:
        started = time.monotonic()
        body = hostile_run(alice, hostile, mode, timeout_s=2)
        assert body["status"] == "timed_out", body
        assert time.monotonic() - started < 15
        assert leftover_processes(gateway, body["id"]) == []

    def test_memory_hog_fails_with_memory_limit(self, alice: httpx.Client, hostile: object) -> None:
        body = hostile_run(alice, hostile, "memory_hog", timeout_s=30)
        assert body["status"] == "failed", body
        assert body["error"]["code"] == "memory_limit"

    def test_fmi_error_fails_with_the_models_log(self, alice: httpx.Client, hostile: object) -> None:
        body = hostile_run(alice, hostile, "fmi_error")
        assert body["status"] == "failed"
        assert body["error"]["code"] == "model_error"
        assert "Hostile: requested failure" in alice.get(f"/v1/runs/{body['id']}/log").text

    def test_fork_loop_ends_and_leaves_nothing(self, gateway: Gateway, alice: httpx.Client,
                                               hostile: object) -> None:
        body = hostile_run(alice, hostile, "fork_loop", timeout_s=3)
        assert body["status"] in ("failed", "timed_out"), body
        assert leftover_processes(gateway, body["id"]) == []

    def test_server_keeps_answering_while_models_misbehave(self, gateway: Gateway, alice: httpx.Client,
                                                           hostile: object) -> None:
        latencies: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=gateway.base_url, timeout=5) as client:
                while not stop.is_set():
                    started = time.monotonic()
                    assert client.get("/healthz").status_code == 200
                    latencies.append(time.monotonic() - started)
                    time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            for mode in ("segfault", "abort", "endless_loop"):
                hostile_run(alice, hostile, mode, timeout_s=2)
        finally:
            stop.set()
            poller.join()
        assert gateway.alive()
        assert len(latencies) > 10 and max(latencies) < 5


class TestIsolation:
    def test_model_cannot_open_network_connections(self, alice: httpx.Client, hostile: object) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            body = hostile_run(alice, hostile, "network", port=port)
        assert body["status"] == "succeeded", body
        assert final_probe(alice, body["id"]) <= 0  # neither 1.1.1.1 nor the host's loopback

    def test_model_cannot_read_the_servers_secrets(self, gateway: Gateway, alice: httpx.Client,
                                                   hostile: object) -> None:
        secret_file = REPO_ROOT / "private-api" / ".env.test-secret"
        secret_file.write_text(f"FMU_GATEWAY_SECRET_KEY={SECRET_KEY}\n")
        try:
            for target in (secret_file, gateway.var_dir / "fmu_gateway.db", Path("/etc/shadow")):
                body = hostile_run(alice, hostile, "secrets", target_env="FMU_GATEWAY_SECRET_KEY",
                                   target_file=str(target))
                assert body["status"] == "succeeded", body
                assert final_probe(alice, body["id"]) == 0, target
        finally:
            secret_file.unlink()

    def test_model_cannot_write_outside_its_sandbox(self, alice: httpx.Client, hostile: object) -> None:
        target = REPO_ROOT / "var" / f"pwned-{os.getpid()}"
        body = hostile_run(alice, hostile, "write_outside", target_file=str(target))
        assert body["status"] == "succeeded", body
        assert not target.exists()
        assert final_probe(alice, body["id"]) == 10  # only its private /tmp was writable

    @pytest.mark.parametrize("directory", ["/out", "/tmp"])
    def test_model_cannot_fill_the_disk(self, gateway: Gateway, alice: httpx.Client, hostile: object,
                                        directory: str) -> None:
        before = shutil.disk_usage(gateway.var_dir).free
        body = hostile_run(alice, hostile, "fill_directory", timeout_s=60, target_file=directory)
        if directory == "/out":
            # The host-side output dir is watched while the model runs: stopped at the output quota.
            assert body["status"] == "failed", body
            assert body["error"]["code"] == "output_too_large"
        else:
            # The private /tmp is a size-capped tmpfs: writes fail with ENOSPC and the model goes on.
            assert body["status"] in ("succeeded", "failed"), body
            assert body["error"] is None or body["error"]["code"] == "memory_limit"
        assert shutil.disk_usage(gateway.var_dir).free > before - (64 << 20)

    def test_model_cannot_leave_a_process_running(self, gateway: Gateway, alice: httpx.Client,
                                                  hostile: object) -> None:
        body = hostile_run(alice, hostile, "leave_process")
        assert body["status"] == "succeeded", body
        assert final_probe(alice, body["id"]) > 0  # it did fork a daemon inside the sandbox
        assert leftover_processes(gateway, body["id"]) == []
