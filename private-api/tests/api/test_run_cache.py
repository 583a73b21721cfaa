"""The run cache end to end, on SQLite and PostgreSQL: a run that computes what an earlier succeeded
run of the same user computed is served at once from that run's result (``cached_from``), for the
tier's cache-hit price, without a sandbox; opting out, a changed spec, a non-deterministic model,
another tenant or an expired result computes again; sweeps use it child by child."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import sqlalchemy as sa
from books import assert_ledger_matches_balance, balance
from gateway_process import REPO_ROOT, Gateway, running_gateway

from app.kit.models import utcnow
from app.runs.models import Run

HIT_PRICE = next(t for t in json.loads((REPO_ROOT / "shared-specs" / "pricing_tiers.json").read_text())["tiers"]
                 if t["id"] == "free")["cache_hit_credits"]
SPEC = {"stop_time": 2, "output_interval": 0.1, "start_values": {"mu": 1.5}}


def user_with(gateway: Gateway, fmus: dict[str, Path], name: str = "VanDerPol") -> tuple[httpx.Client, str]:
    client = gateway.client(gateway.create_user(credits=1000))
    response = client.post("/v1/fmus", files={"file": (f"{name}.fmu", fmus[name].read_bytes())})
    assert response.status_code in (200, 201), response.text
    return client, response.json()["id"]


def run(client: httpx.Client, fmu_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={**SPEC, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "succeeded", result
    return result


def table(client: httpx.Client, run_id: str) -> pa.Table:
    response = client.get(f"/v1/runs/{run_id}/result")
    assert response.status_code == 200, response.text
    return pa.ipc.open_file(pa.BufferReader(response.content)).read_all()


class TestSingleRuns:
    def test_the_same_run_twice_is_served_from_the_first_at_the_cache_hit_price(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, fmu_id = user_with(gateway, fmus)
        first = run(client, fmu_id)
        assert first["cached_from"] is None and first["credits_charged"] >= 1
        before = balance(client)
        second = run(client, fmu_id, timeout_s=30)  # the run's own limit is not part of what it computes
        assert second["cached_from"] == first["id"] and second["id"] != first["id"]
        assert second["credits_charged"] == HIT_PRICE and balance(client) == before - HIT_PRICE
        assert second["timings"]["cpu_s"] == 0 and second["result"] == first["result"]
        # Never queued, never in a sandbox: started and finished as it was created.
        assert second["created_at"] == second["started_at"] == second["finished_at"]
        assert second["timings"]["queued_s"] == 0 and second["timings"]["run_s"] == 0
        assert table(client, second["id"]).equals(table(client, first["id"]))
        assert client.get(f"/v1/runs/{second['id']}/log").content == client.get(f"/v1/runs/{first['id']}/log").content
        for fmt in ("csv", "json"):
            assert (client.get(f"/v1/runs/{second['id']}/result", params={"format": fmt}).content
                    == client.get(f"/v1/runs/{first['id']}/result", params={"format": fmt}).content)
        # A third points at the run that computed it, not at the second.
        assert run(client, fmu_id)["cached_from"] == first["id"]
        assert second["id"] in [r["id"] for r in client.get("/v1/runs").json()["data"]]
        assert_ledger_matches_balance(client)

    def test_what_keeps_a_run_out_of_the_cache(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, fmu_id = user_with(gateway, fmus)
        first = run(client, fmu_id)
        assert run(client, fmu_id, cache=False)["cached_from"] is None
        assert run(client, fmu_id, start_values={"mu": 1.6})["cached_from"] is None
        assert run(client, fmu_id, output_interval=0.2)["cached_from"] is None
        # Another tenant with the same bytes and the same spec computes its own.
        other, other_fmu = user_with(gateway, fmus)
        assert run(other, other_fmu)["cached_from"] is None
        # A model its owner marks non-deterministic is never served from the cache.
        marked = client.patch(f"/v1/fmus/{fmu_id}", json={"deterministic": False})
        assert marked.status_code == 200 and marked.json()["deterministic"] is False
        assert run(client, fmu_id)["cached_from"] is None
        assert client.patch(f"/v1/fmus/{fmu_id}", json={"deterministic": True}).json()["deterministic"] is True
        assert run(client, fmu_id)["cached_from"] == first["id"]

    def test_a_failed_run_is_not_cached(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, fmu_id = user_with(gateway, fmus, "Hostile")
        body = {"stop_time": 1, "output_interval": 0.1, "timeout_s": 5, "start_values": {"mode": 6}}
        for _ in range(2):
            response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json=body).json()
            assert response["status"] == "failed" and response["cached_from"] is None

    def test_a_dry_run_quotes_and_places_nothing(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, fmu_id = user_with(gateway, fmus)
        before = balance(client)
        quote = client.post(f"/v1/fmus/{fmu_id}/runs", params={"dry_run": "true"}, json={**SPEC, "timeout_s": 20})
        assert quote.status_code == 200, quote.text
        body = quote.json()
        assert body["object"] == "quote" and body["runs"] == 1 and body["owner_credits_per_run"] == 0
        assert body["credits_held"] == body["credits_per_run"] > 1 and body["balance"] == before
        assert body["sufficient"] is True and body["spec"]["timeout_s"] == 20
        assert client.get("/v1/runs").json()["data"] == [] and balance(client) == before
        bad = client.post(f"/v1/fmus/{fmu_id}/runs", params={"dry_run": "true"},
                          json={"stop_time": -1, "start_time": 0})
        assert bad.status_code == 422
        poor = gateway.client(gateway.create_user(credits=0))
        poor_fmu = poor.post("/v1/fmus", files={"file": ("v.fmu", fmus["VanDerPol"].read_bytes())}).json()["id"]
        quoted = poor.post(f"/v1/fmus/{poor_fmu}/runs", params={"dry_run": "true"}, json=SPEC).json()
        assert quoted["sufficient"] is False and quoted["balance"] == 0


class TestSweeps:
    def test_a_resubmitted_sweep_computes_nothing_and_an_overlapping_one_only_its_new_points(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, fmu_id = user_with(gateway, fmus)

        def sweep(values: list[float]) -> dict[str, Any]:
            response = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={
                **SPEC, "method": "grid", "parameters": {"mu": values}})
            assert response.status_code == 202, response.text
            deadline = time.monotonic() + 60
            while (body := client.get(f"/v1/sweeps/{response.json()['id']}").json())["status"] != "finished":
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
            return body

        def children(sweep_id: str) -> list[dict[str, Any]]:
            runs: list[dict[str, Any]] = client.get(f"/v1/sweeps/{sweep_id}/runs").json()["data"]
            return runs

        first = sweep([0.5, 1.0, 1.5])
        assert all(c["cached_from"] is None for c in children(first["id"]))
        before = balance(client)
        created = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={**SPEC, "method": "grid",
                                                                  "parameters": {"mu": [0.5, 1.0, 1.5]}}).json()
        assert created["counts"]["succeeded"] == 3 and created["status"] == "finished"
        again = client.get(f"/v1/sweeps/{created['id']}").json()
        assert again["credits_charged"] == 3 * HIT_PRICE and balance(client) == before - 3 * HIT_PRICE
        served = {c["parameters"]["mu"]: c["cached_from"] for c in children(created["id"])}
        computed = {c["parameters"]["mu"]: c["id"] for c in children(first["id"])}
        assert served == computed
        assert (client.get(f"/v1/sweeps/{created['id']}/result", params={"format": "csv"}).text.split("\n", 1)[1]
                == client.get(f"/v1/sweeps/{first['id']}/result", params={"format": "csv"}).text.split("\n", 1)[1])
        overlapping = sweep([1.0, 1.5, 2.0, 2.5])
        new = {c["parameters"]["mu"] for c in children(overlapping["id"]) if c["cached_from"] is None}
        assert new == {2.0, 2.5}
        assert_ledger_matches_balance(client)


@contextmanager
def gateway_database(gateway: Gateway) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{gateway.var_dir / 'fmu_gateway.db'}", connect_args={"timeout": 30})
    try:
        yield engine
    finally:
        engine.dispose()


def age_and_purge(gateway: Gateway, run_id: str) -> None:
    """Make the run ten days old, then run retention's purge."""
    with gateway_database(gateway) as engine, engine.begin() as connection:
        connection.execute(sa.update(Run).where(Run.id == run_id).values(finished_at=utcnow() - timedelta(days=10)))
    assert gateway.admin("purge").returncode == 0


@contextmanager
def hit_of_a_purged_run(name: str,
                        fmus: dict[str, Path]) -> Iterator[tuple[Gateway, httpx.Client, str, dict[str, Any]]]:
    """A gateway whose retention has just purged a run that a cache hit was served from: the
    gateway, the user's client, the FMU and the hit."""
    with running_gateway(name, FMU_GATEWAY_RETENTION_INTERVAL_S="0") as gateway:
        client, fmu_id = user_with(gateway, fmus)
        first = run(client, fmu_id)
        hit = run(client, fmu_id)
        assert hit["cached_from"] == first["id"]
        age_and_purge(gateway, first["id"])
        yield gateway, client, fmu_id, hit


def test_a_hit_on_an_expired_result_computes_again(fmus: dict[str, Path]) -> None:
    """Retention removes the result a hit would serve, and the hits served from it with it."""
    with hit_of_a_purged_run("cache-retention", fmus) as (_, client, fmu_id, hit):
        assert client.get(f"/v1/runs/{hit['id']}").json()["result_expired_at"] is not None
        assert client.get(f"/v1/runs/{hit['id']}/result").status_code == 410
        fresh = run(client, fmu_id)
        assert fresh["cached_from"] is None
        assert run(client, fmu_id)["cached_from"] == fresh["id"]


def test_a_hit_made_while_retention_removed_its_source_answers_gone(fmus: dict[str, Path]) -> None:
    """A hit made between retention's marking of the run it is served from and the removal of its
    files is not marked itself: its result and log are answered 410, as the source's are, not 409."""
    with hit_of_a_purged_run("cache-race", fmus) as (gateway, client, _, hit):
        with gateway_database(gateway) as engine, engine.begin() as connection:
            # The hit as the race leaves it: made after the marking.
            connection.execute(sa.update(Run).where(Run.id == hit["id"]).values(result_expired_at=None))
        assert client.get(f"/v1/runs/{hit['id']}").json()["result_expired_at"] is None
        for path in (f"/v1/runs/{hit['id']}/result", f"/v1/runs/{hit['id']}/log"):
            response = client.get(path)
            assert response.status_code == 410, (path, response.text)
            assert response.json()["code"] == "result_expired"
