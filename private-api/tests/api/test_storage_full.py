"""A gateway whose blob storage fills up: a real gateway on a small tmpfs (its storage dir), filled
with a file by the test. Under the free-space threshold, uploads, runs and sweeps are refused with
507 ``storage_full`` before anything is stored; a write that still meets the full disk answers 507
(an upload) or fails the run ``storage_full``, refunded, its log kept; and once space is freed,
everything works again without a restart."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fmus.variants import rewritten
from gateway_process import Gateway, new_var_dir, start_gateway, stop_gateway
from problems import assert_problem
from tmpfs import FILLER, fill, mounted_tmpfs

from app.runs.service import log_key, result_key
from app.storage.space import FREE_SPACE_TTL_S

MIB = 1 << 20
DISK_BYTES = 32 * MIB
THRESHOLD = 2 * MIB
# Admitted (above the threshold), yet too little for BIG's result.
ROOM_FOR_LITTLE = THRESHOLD + MIB
# VanDerPol with 200,001 output rows: a 4.8 MB result, in a second or so.
BIG = {"stop_time": 100, "output_interval": 0.0005, "debug_logging": True, "timeout_s": 30}
LOG_LINE = "Instantiated VanDerPol"


@dataclass
class SmallDisk:
    gateway: Gateway
    storage: Path

    def leave_free(self, free: int) -> None:
        fill(self.storage, free)
        time.sleep(FREE_SPACE_TTL_S + 0.2)  # what the gateway last read has expired

    def free_up(self) -> None:
        (self.storage / FILLER).unlink(missing_ok=True)
        time.sleep(FREE_SPACE_TTL_S + 0.2)

    def stored(self) -> list[str]:
        return sorted(p.relative_to(self.storage).as_posix() for p in self.storage.rglob("*")
                      if p.is_file() and p.name != FILLER)


@pytest.fixture(scope="module")
def small_disk() -> Iterator[SmallDisk]:
    var_dir = new_var_dir("storage-full")
    try:
        with mounted_tmpfs(var_dir / "storage", DISK_BYTES) as storage:
            gateway = start_gateway(var_dir, FMU_GATEWAY_STORAGE_DIR=str(storage),
                                    FMU_GATEWAY_STORAGE_MIN_FREE_BYTES=str(THRESHOLD))
            try:
                yield SmallDisk(gateway, storage)
            finally:
                stop_gateway(gateway)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def space_given_back(small_disk: SmallDisk) -> Iterator[None]:
    yield
    small_disk.free_up()


def new_client(small_disk: SmallDisk, credits: int = 1000) -> httpx.Client:
    return small_disk.gateway.client(small_disk.gateway.create_user(credits))


def upload(client: httpx.Client, path: Path) -> str:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    fmu_id: str = response.json()["id"]
    return fmu_id


def ids(client: httpx.Client, path: str) -> list[str]:
    response = client.get(path, params={"limit": 100})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def ledger(client: httpx.Client, **filters: str) -> list[dict[str, Any]]:
    response = client.get("/v1/billing/ledger", params={"limit": 100, **filters})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def balance(client: httpx.Client) -> int:
    credits: int = client.get("/v1/billing/balance").json()["credits"]
    return credits


def state(small_disk: SmallDisk, client: httpx.Client) -> dict[str, Any]:
    """Everything a refused request could have left: blobs, rows, credits, spooled uploads."""
    return {"blobs": small_disk.stored(), "fmus": ids(client, "/v1/fmus"), "runs": ids(client, "/v1/runs"),
            "sweeps": ids(client, "/v1/sweeps"), "balance": balance(client), "ledger": len(ledger(client)),
            "tmp": sorted(os.listdir(small_disk.gateway.var_dir / "tmp"))}


def assert_storage_full(response: httpx.Response) -> None:
    assert_problem(response, 507, "storage_full")
    assert int(response.headers["retry-after"]) > 0


def wait_sweep(client: httpx.Client, sweep_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (sweep := client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "finished":
        assert time.monotonic() < deadline, sweep
        time.sleep(0.2)
    found: dict[str, Any] = sweep
    return found


class TestAdmission:
    def test_upload_run_and_sweep_are_507_storage_full_and_store_nothing_under_the_threshold(
            self, small_disk: SmallDisk, fmus: dict[str, Path]) -> None:
        client = new_client(small_disk)
        fmu_id = upload(client, fmus["VanDerPol"])
        before = state(small_disk, client)
        small_disk.leave_free(THRESHOLD // 2)

        assert_storage_full(client.post("/v1/fmus", files={"file": ("Feedthrough.fmu",
                                                                    fmus["Feedthrough"].read_bytes())}))
        assert_storage_full(client.post(f"/v1/fmus/{fmu_id}/runs", json={"stop_time": 1}))
        assert_storage_full(client.post(f"/v1/fmus/{fmu_id}/sweeps", json={
            "stop_time": 1, "method": "grid", "parameters": {"mu": [0.5, 1.0]}}))
        assert state(small_disk, client) == before

    def test_reads_and_health_are_served_while_storage_is_full(self, small_disk: SmallDisk,
                                                               fmus: dict[str, Path]) -> None:
        client = new_client(small_disk)
        fmu_id = upload(client, fmus["VanDerPol"])
        small_disk.leave_free(0)
        assert client.get(f"/v1/fmus/{fmu_id}").status_code == 200
        assert client.get("/v1/runs").status_code == 200
        assert httpx.get(f"{small_disk.gateway.base_url}/healthz").status_code == 200
        assert httpx.get(f"{small_disk.gateway.base_url}/readyz").status_code == 200

    def test_a_refused_request_is_not_replayed_to_its_retry_once_space_is_freed(
            self, small_disk: SmallDisk, fmus: dict[str, Path]) -> None:
        client = new_client(small_disk)
        fmu_id = upload(client, fmus["VanDerPol"])
        small_disk.leave_free(THRESHOLD // 2)
        body = fmus["BouncingBall3"].read_bytes()
        upload_key, run_key = {"Idempotency-Key": "upload-1"}, {"Idempotency-Key": "run-1"}
        assert_storage_full(client.post("/v1/fmus", files={"file": ("b.fmu", body)}, headers=upload_key))
        assert_storage_full(client.post(f"/v1/fmus/{fmu_id}/runs", json={"stop_time": 1}, headers=run_key))

        small_disk.free_up()
        uploaded = client.post("/v1/fmus", files={"file": ("b.fmu", body)}, headers=upload_key)
        assert uploaded.status_code == 201 and "idempotent-replayed" not in uploaded.headers, uploaded.text
        run = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={"stop_time": 1}, headers=run_key)
        assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text


class TestUploadThatFillsTheDisk:
    def test_an_admitted_upload_that_does_not_fit_is_507_and_leaves_nothing(
            self, small_disk: SmallDisk, fmus: dict[str, Path]) -> None:
        client = new_client(small_disk)
        before = state(small_disk, client)
        # Random bytes do not compress: a 4 MiB archive, more than is left.
        padded = rewritten(fmus["VanDerPol"], extra={"resources/padding.bin": os.urandom(4 * MIB)})
        small_disk.leave_free(ROOM_FOR_LITTLE)

        response = client.post("/v1/fmus", files={"file": ("padded.fmu", padded)})
        assert_storage_full(response)
        assert state(small_disk, client) == before
        # Nor its extracted tree: the failed upload's clean-up removed it.
        assert not (small_disk.gateway.var_dir / "cache" / "fmus" / hashlib.sha256(padded).hexdigest()).exists()
        assert "unhandled error" not in small_disk.gateway.log_path.read_text()  # a 507 of its own, not a 500

        small_disk.free_up()
        assert client.post("/v1/fmus", files={"file": ("padded.fmu", padded)}).status_code == 201


class TestRunThatFillsTheDisk:
    def test_a_run_whose_result_does_not_fit_fails_storage_full_refunded_with_its_log(
            self, small_disk: SmallDisk, fmus: dict[str, Path]) -> None:
        client = new_client(small_disk, credits=100)
        fmu_id = upload(client, fmus["VanDerPol"])
        small_disk.leave_free(ROOM_FOR_LITTLE)

        created = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json=BIG)
        assert created.status_code == 200, created.text
        run = created.json()
        assert (run["status"], run["error"]["code"]) == ("failed", "storage_full"), run
        assert "storage is full" in run["error"]["message"] and "log is kept" in run["error"]["message"]
        assert run["result"] is None and run["credits_charged"] == 0
        log = client.get(f"/v1/runs/{run['id']}/log")
        assert log.status_code == 200 and LOG_LINE in log.text
        assert_problem(client.get(f"/v1/runs/{run['id']}/result"), 409, "result_unavailable")
        # Nothing half-stored: the log alone, no partial result, no temporary file.
        assert [key for key in small_disk.stored() if run["id"] in key] == [log_key(run["id"])]
        assert not any(".tmp-" in key for key in small_disk.stored())
        # Refunded: the platform failed it.
        kinds = sorted((e["kind"], e["amount"]) for e in ledger(client, run_id=run["id"]))
        assert kinds == sorted([("hold", -run["credits_held"]), ("refund", run["credits_held"]), ("settle", 0)])
        assert balance(client) == 100

        # Still healthy and serving; once space is freed, the same run succeeds.
        assert small_disk.gateway.alive()
        assert httpx.get(f"{small_disk.gateway.base_url}/readyz").status_code == 200
        small_disk.free_up()
        again = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json=BIG).json()
        assert again["status"] == "succeeded" and again["result"]["rows"] == 200_001, again
        assert result_key(again["id"]) in small_disk.stored()

    def test_sweep_children_whose_results_do_not_fit_fail_storage_full_refunded_with_their_logs(
            self, small_disk: SmallDisk, fmus: dict[str, Path]) -> None:
        client = new_client(small_disk, credits=100)
        fmu_id = upload(client, fmus["VanDerPol"])
        small_disk.leave_free(ROOM_FOR_LITTLE)

        created = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={
            **BIG, "method": "grid", "parameters": {"mu": [1.0, 1.5]}})
        assert created.status_code == 202, created.text
        sweep = wait_sweep(client, created.json()["id"])
        children = client.get(f"/v1/sweeps/{sweep['id']}/runs").json()["data"]
        assert [(c["status"], c["error"]["code"]) for c in children] == [("failed", "storage_full")] * 2
        for child in children:
            assert child["credits_charged"] == 0
            assert LOG_LINE in client.get(f"/v1/runs/{child['id']}/log").text
        assert sweep["credits_charged"] == 0 and balance(client) == 100
        assert not any(".tmp-" in key or result_key(c["id"]) == key for key in small_disk.stored() for c in children)
