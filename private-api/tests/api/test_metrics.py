"""``GET /metrics``: Prometheus text whose run counters, histograms, request counts and queue depth
move with what the gateway does, served to this host or to the metrics token only."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import httpx
from gateway_process import Gateway, running_gateway
from problems import assert_problem
from prometheus_client.parser import text_string_to_metric_families


def scrape(gateway: Gateway, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    response = httpx.get(f"{gateway.base_url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_runs_move_the_counters_and_fill_the_histograms(fmus: dict[str, Path]) -> None:
    # A gateway of its own: runs other tests left behind would settle into the counts.
    with running_gateway("metrics-runs") as gateway:
        counted_runs(gateway, fmus)


def counted_runs(gateway: Gateway, fmus: dict[str, Path]) -> None:
    client = gateway.client(gateway.create_user(credits=1000))
    fmu = client.post("/v1/fmus", files={"file": ("v.fmu", fmus["VanDerPol"].read_bytes())}).json()["id"]
    before = scrape(gateway)
    runs = [client.post(f"/v1/fmus/{fmu}/runs", params={"wait": 60}, json={"stop_time": 1, "cache": False}).json()
            for _ in range(3)]  # three executed runs (the run cache would answer the repeats)
    assert [run["status"] for run in runs] == ["succeeded"] * 3
    after = scrape(gateway)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("fmu_gateway_runs_total", status="succeeded") == 3
    assert moved("fmu_gateway_credits_settled_total") == sum(run["credits_charged"] for run in runs)
    for histogram in ("fmu_gateway_run_duration_seconds", "fmu_gateway_queue_wait_seconds",
                      "fmu_gateway_sandbox_start_seconds"):
        assert moved(f"{histogram}_count") == 3, histogram
        assert moved(f"{histogram}_sum") > 0, histogram
    assert moved("fmu_gateway_run_duration_seconds_bucket", le="+Inf") == 3
    # By route template, never by path (a series per run id would grow without end).
    assert moved("fmu_gateway_http_requests_total", route="/v1/fmus/{fmu_id}/runs", status="200") == 3
    assert client.get(f"/v1/runs/{runs[0]['id']}").status_code == 200
    reads = scrape(gateway)
    assert value(reads, "fmu_gateway_http_requests_total", route="/v1/runs/{run_id}", status="200") \
        == value(after, "fmu_gateway_http_requests_total", route="/v1/runs/{run_id}", status="200") + 1
    routes = {dict(labels)["route"] for name, labels in reads if name == "fmu_gateway_http_requests_total"}
    assert not [route for route in routes if re.search(r"(run|fmu)_[0-9a-z]{20,}", route)], routes


def test_the_queue_depth_is_per_tenant(gateway: Gateway, fmus: dict[str, Path]) -> None:
    client = gateway.client(gateway.create_user(credits=1000, tier="pro"))
    fmu = client.post("/v1/fmus", files={"file": ("h.fmu", fmus["Hostile"].read_bytes())}).json()["id"]
    sleeping = {"start_values": {"mode": 4}, "timeout_s": 30}  # blocks in the model: the workers stay busy
    run_ids = [client.post(f"/v1/fmus/{fmu}/runs", json=sleeping).json()["id"] for _ in range(4)]
    try:
        deadline = time.monotonic() + 30
        while sum(client.get(f"/v1/runs/{r}").json()["status"] == "running" for r in run_ids) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        queued = sum(client.get(f"/v1/runs/{r}").json()["status"] == "queued" for r in run_ids)
        depths = [v for (name, _), v in scrape(gateway).items() if name == "fmu_gateway_queue_depth"]
        assert queued >= 1 and queued in depths
    finally:
        for run_id in run_ids:
            client.post(f"/v1/runs/{run_id}/cancel")


def test_the_free_space_of_blob_storage_is_the_file_systems(gateway: Gateway) -> None:
    free = scrape(gateway)[("fmu_gateway_storage_free_bytes", ())]
    actual = shutil.disk_usage(gateway.var_dir).free  # the storage dir sits in the var dir here
    assert free > 0 and abs(free - actual) < max(64 << 20, actual // 20), (free, actual)


def test_with_a_token_only_its_bearer_reads_them() -> None:
    with running_gateway("metrics", FMU_GATEWAY_METRICS_TOKEN="scrape-secret") as gateway:
        assert_problem(httpx.get(f"{gateway.base_url}/metrics", timeout=30), 403, "metrics_forbidden")
        assert_problem(httpx.get(f"{gateway.base_url}/metrics", headers={"Authorization": "Bearer nope"},
                                 timeout=30), 403, "metrics_forbidden")
        samples = scrape(gateway, Authorization="Bearer scrape-secret")
        assert any(name == "fmu_gateway_http_requests_total" for name, _ in samples)
