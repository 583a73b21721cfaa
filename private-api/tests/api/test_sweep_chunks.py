"""Sweeps run in chunks: one sandbox process runs several children of one sweep, one after another,
reusing the model description and (where reset() is exact) one instance. Every child's result
equals the same spec run alone; a child that crashes or hangs fails alone; an inexact reset() is
found and recorded on the FMU. End to end through a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.ipc
import pytest
from gateway_process import Gateway
from sqlalchemy import create_engine, text
from test_sweeps import BASE, children, create, new_client, upload, wait

from app.config import Settings
from app.sandbox.child import runner_digest
from app.sweeps.service import chunk_size, message_spacing

pytestmark = pytest.mark.timeout(300)
LARGEST_CHUNK = Settings.model_fields["sweep_chunk_size"].default


def result(client: httpx.Client, run_id: str) -> pa.Table:
    response = client.get(f"/v1/runs/{run_id}/result")
    assert response.status_code == 200, response.text
    return pyarrow.ipc.open_file(pa.BufferReader(response.content)).read_all()


def run_alone(client: httpx.Client, fmu_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    # Computed on its own: the run cache would answer it with the very child it is compared with.
    response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={**spec, "cache": False})
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def reset_check(gateway: Gateway, fmu_id: str) -> tuple[bool | None, str | None]:
    engine = create_engine(gateway.env["FMU_GATEWAY_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT reset_exact, reset_checked_by FROM fmus WHERE id = :id"),
                                     {"id": fmu_id}).one()
    finally:
        engine.dispose()
    return (None if row[0] is None else bool(row[0])), row[1]


def chunk_sizes(gateway: Gateway, sweep_id: str) -> list[int]:
    """How many children each sandbox of this sweep ran, from the server's log."""
    return [int(line.split(" of sweep ")[0].rsplit("(", 1)[1])
            for line in gateway.log_path.read_text().splitlines() if f" of sweep {sweep_id}): sandbox" in line]


def test_every_child_equals_the_same_spec_run_alone(gateway: Gateway, fmus: dict[str, Any]) -> None:
    client = new_client(gateway, 1000, tier="pro")
    fmu_id = upload(client, fmus["VanDerPol"])
    sweep = create(client, fmu_id, method="grid", parameters={"mu": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]})
    assert wait(client, sweep["id"])["counts"]["succeeded"] == 6
    assert max(chunk_sizes(gateway, sweep["id"])) > 1  # children shared a process
    for child in children(client, sweep["id"]):
        alone = run_alone(client, fmu_id, {**BASE, "start_values": child["parameters"]})
        assert alone["sweep_id"] is None
        assert result(client, child["id"]).equals(result(client, alone["id"])), child["parameters"]
    assert reset_check(gateway, fmu_id) == (True, runner_digest())


def test_chunks_take_a_share_of_what_is_left_up_to_the_largest() -> None:
    assert chunk_size(1000, 64, threads=2) == 64  # capped
    assert chunk_size(100, 64, threads=2) == 25  # a quarter: 2 threads here, more elsewhere
    assert chunk_size(100, 64, threads=0) == 50
    # Never below a message's worth of children: a sweep's messages cover all of it.
    assert message_spacing(64) == 8
    assert chunk_size(9, 64, threads=2) == chunk_size(0, 64, threads=2) == 8
    assert message_spacing(4) == chunk_size(100, 4, threads=2) == 4
    assert message_spacing(1) == chunk_size(100, 1, threads=2) == 1  # SWEEP_CHUNK_SIZE=1: each child alone


def test_chunks_shrink_as_a_sweep_drains(gateway: Gateway, fmus: dict[str, Any]) -> None:
    """Big chunks first (each chunk's own cost amortized), small ones last (no worker idles while
    another finishes a long chunk)."""
    client = new_client(gateway, 1000, tier="pro")
    fmu_id = upload(client, fmus["VanDerPol"])
    sweep = create(client, fmu_id, method="list", parameters=[{"mu": 1.0 + i / 100} for i in range(40)])
    assert wait(client, sweep["id"])["counts"]["succeeded"] == 40
    sizes = chunk_sizes(gateway, sweep["id"])
    # The first claim (its message is among the first two taken) gets the largest share.
    assert max(sizes) == chunk_size(40, LARGEST_CHUNK, threads=int(gateway.env["FMU_GATEWAY_WORKERS"])), sizes
    assert min(sizes) < max(sizes) and sum(sizes) <= 40, sizes


def test_a_crashing_child_fails_alone(gateway: Gateway, fmus: dict[str, Any]) -> None:
    client = new_client(gateway, 1000, tier="pro")
    fmu_id = upload(client, fmus["Hostile"])
    sweep = create(client, fmu_id, method="grid", parameters={"mode": [0, 0, 1, 0, 2, 0]}, fmi_type="CoSimulation")
    wait(client, sweep["id"])
    runs = children(client, sweep["id"])
    outcomes = [(r["status"], (r["error"] or {}).get("code")) for r in runs]
    assert outcomes == [("succeeded", None), ("succeeded", None), ("failed", "model_crashed"),
                        ("succeeded", None), ("failed", "model_crashed"), ("succeeded", None)]
    assert "SIGSEGV" in runs[2]["error"]["message"] and "SIGABRT" in runs[4]["error"]["message"]
    # Each crash is refunded nothing and charged only its own run; the others were charged once.
    assert all(r["credits_charged"] >= 1 for r in runs)


def test_a_hanging_child_times_out_alone_at_its_own_deadline(gateway: Gateway, fmus: dict[str, Any]) -> None:
    client = new_client(gateway, 1000, tier="pro")
    fmu_id = upload(client, fmus["Hostile"])
    started = time.monotonic()
    sweep = create(client, fmu_id, method="grid", parameters={"mode": [0, 4, 0, 0]}, fmi_type="CoSimulation",
                   timeout_s=3)
    wait(client, sweep["id"])
    runs = children(client, sweep["id"])
    assert [r["status"] for r in runs] == ["succeeded", "timed_out", "succeeded", "succeeded"]
    assert 3 <= runs[1]["timings"]["run_s"] < 3 + 2
    assert time.monotonic() - started < 3 * 3  # one deadline, not the chunk's sum of them


def test_an_inexact_reset_is_found_and_every_child_gets_a_fresh_instance(
    gateway: Gateway, fmus: dict[str, Any]
) -> None:
    client = new_client(gateway, 1000, tier="pro")
    fmu_id = upload(client, fmus["Hostile"])
    # Mode 18 reports how often its instance was reset: 0 on a fresh one.
    sweep = create(client, fmu_id, method="grid", parameters={"mode": [18, 18, 18, 18, 18]}, fmi_type="CoSimulation")
    assert wait(client, sweep["id"])["counts"]["succeeded"] == 5
    assert reset_check(gateway, fmu_id) == (False, runner_digest())
    for child in children(client, sweep["id"]):
        assert result(client, child["id"]).column("probe").to_pylist()[-1] == 0.0
