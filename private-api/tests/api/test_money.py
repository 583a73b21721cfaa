"""Credits end to end: holds, settlement, the ledger, Idempotency-Key, and no overdraft under
concurrency — on SQLite and PostgreSQL, and with two API processes sharing one database."""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from books import assert_ledger_matches_balance, balance, ledger
from databases import temporary_database
from gateway_process import REPO_ROOT, Gateway, new_var_dir, start_gateway, stop_gateway
from problems import assert_problem

PRICING = json.loads((REPO_ROOT / "shared-specs" / "pricing_tiers.json").read_text())["cost_model"]
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def cpu_cost(cpu_s: float) -> int:
    billable = max(0.0, cpu_s - PRICING["included_cpu_seconds"])
    return int(PRICING["run_base_credits"] + math.ceil(round(billable * PRICING["credits_per_cpu_second"], 6)))


def new_user(gateway: Gateway, credits: int, tier: str | None = None) -> httpx.Client:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    created = gateway.admin("create-user", "--email", email, "--credits", str(credits))
    assert created.returncode == 0, created.stderr
    if tier is not None:
        assert gateway.admin("set-tier", "--email", email, "--tier", tier).returncode == 0
    return gateway.client(created.stdout.strip().splitlines()[-1])


def upload(client: httpx.Client, path: Path) -> str:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    fmu_id: str = response.json()["id"]
    return fmu_id


def wait_final(client: httpx.Client, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/runs/{run_id}", params={"wait": 60}).json()
    assert body["status"] in FINAL, body
    return body


class TestHoldAndSettle:
    def test_a_run_holds_its_worst_case_and_is_charged_its_cost(self, gateway: Gateway,
                                                               fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 100)
        fmu = upload(client, fmus["VanDerPol"])
        created = client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 1, "timeout_s": 30}).json()
        held = cpu_cost(30)
        assert created["credits_held"] == held > 1
        run = wait_final(client, created["id"])
        assert run["status"] == "succeeded"
        assert run["credits_charged"] == cpu_cost(run["timings"]["cpu_s"]) == 1  # a short run: the base charge
        assert balance(client) == 100 - 1
        entries = sorted(ledger(client, run_id=run["id"]), key=lambda e: e["kind"])
        assert [(e["kind"], e["amount"]) for e in entries] == [("hold", -held), ("release", held - 1), ("settle", 0)]
        assert_ledger_matches_balance(client)

    def test_cpu_time_is_charged(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 100)
        fmu = upload(client, fmus["Hostile"])
        run = client.post(f"/v1/fmus/{fmu}/runs", params={"wait": 60}, json={
            "stop_time": 1, "timeout_s": 8, "start_values": {"mode": 3}}).json()  # a native busy loop
        assert run["status"] == "timed_out"
        assert run["timings"]["cpu_s"] > PRICING["included_cpu_seconds"]
        assert run["credits_charged"] == cpu_cost(run["timings"]["cpu_s"]) > PRICING["run_base_credits"]
        assert run["credits_charged"] <= run["credits_held"]
        assert balance(client) == 100 - run["credits_charged"]
        assert_ledger_matches_balance(client)

    def test_a_run_cancelled_while_running_pays_for_the_cpu_time_it_used(self, gateway: Gateway,
                                                            fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 100)
        fmu = upload(client, fmus["Hostile"])
        run_id = client.post(f"/v1/fmus/{fmu}/runs", json={"start_values": {"mode": 4}, "timeout_s": 60}).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/runs/{run_id}").json()["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # the model sleeps: wall time passes, CPU time hardly
        cancelled = client.post(f"/v1/runs/{run_id}/cancel").json()
        assert cancelled["status"] == "cancelled"
        # Charged as a finished run is, for the CPU time its sandbox used, once the worker has
        # stopped it and measured it.
        deadline = time.monotonic() + 30
        while not any(e["kind"] == "settle" for e in ledger(client, run_id=run_id)) and time.monotonic() < deadline:
            time.sleep(0.1)
        settled = client.get(f"/v1/runs/{run_id}").json()
        cpu_s = settled["timings"]["cpu_s"]
        assert cpu_s is not None and cpu_s < 1.0
        assert settled["credits_charged"] == cpu_cost(cpu_s) < settled["credits_held"]
        assert balance(client) == 100 - settled["credits_charged"]
        kinds = Counter(e["kind"] for e in ledger(client, run_id=run_id))
        assert kinds == {"hold": 1, "settle": 1, "release": 1}
        time.sleep(1)  # nothing settles it again
        assert balance(client) == 100 - settled["credits_charged"]
        assert_ledger_matches_balance(client)

    def test_a_run_the_platform_fails_is_refunded_in_full(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 20)
        fmu = client.post("/v1/fmus", files={"file": ("b.fmu", fmus["BouncingBall3"].read_bytes())}).json()
        # The platform loses the model: its stored blob and its unpacked cache are gone.
        sha = fmu["sha256"]
        (gateway.var_dir / "storage" / "fmus" / sha[:2] / f"{sha}.fmu").unlink()
        shutil.rmtree(gateway.var_dir / "cache" / "fmus" / sha, ignore_errors=True)
        run = client.post(f"/v1/fmus/{fmu['id']}/runs", params={"wait": 60}, json={"timeout_s": 10}).json()
        assert run["status"] == "failed" and run["error"]["code"] == "internal_error"
        assert run["credits_charged"] == 0
        assert balance(client) == 20
        kinds = Counter(e["kind"] for e in ledger(client, run_id=run["id"]))
        assert kinds == {"hold": 1, "refund": 1, "settle": 1}
        assert_ledger_matches_balance(client)

    def test_a_run_without_enough_credits_for_its_hold_is_402(self, gateway: Gateway,
                                                             fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 3)
        fmu = upload(client, fmus["VanDerPol"])
        body = assert_problem(client.post(f"/v1/fmus/{fmu}/runs", json={"timeout_s": 60}), 402,
                              "insufficient_credits")
        assert body["required"] == cpu_cost(60)
        assert client.get("/v1/runs").json()["data"] == []
        assert balance(client) == 3
        # A shorter timeout holds less and fits.
        assert client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 0.1, "timeout_s": 10}).status_code == 202


class TestIdempotencyKey:
    def test_a_retry_gets_the_run_the_first_created_and_nothing_is_charged_twice(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 50)
        fmu = upload(client, fmus["VanDerPol"])
        headers = {"Idempotency-Key": "retry-me-1"}
        spec = {"stop_time": 1, "timeout_s": 1}
        first = client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers)
        second = client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers, params={"wait": 30})
        assert first.status_code == 202
        # Run submission replays from the run row: the retry waits like the request it repeats
        # and answers with that run as it is now.
        assert second.status_code == 200, second.text
        assert second.json()["id"] == first.json()["id"] and second.json()["status"] == "succeeded"
        assert second.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        assert [r["id"] for r in client.get("/v1/runs").json()["data"]] == [first.json()["id"]]
        assert wait_final(client, first.json()["id"])["credits_charged"] == 1
        assert balance(client) == 49

    def test_twenty_concurrent_requests_with_one_key_create_one_run_and_one_hold(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 50, tier="pro")
        fmu = upload(client, fmus["VanDerPol"])

        def submit(_: int) -> httpx.Response:
            return client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 1, "timeout_s": 1},
                               headers={"Idempotency-Key": "burst"})

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(submit, range(20)))
        # Each is answered with the one run (no 409: the run row, not a lock, decides), 200 once
        # it has finished; all but its creator say they are replays.
        assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
        runs = client.get("/v1/runs").json()["data"]
        assert len(runs) == 1
        assert [e["kind"] for e in ledger(client) if e["kind"] == "hold"] == ["hold"]
        # Every retry is answered with that run (as it is now: 200 once it has finished).
        again = submit(0)
        assert again.status_code in (200, 202) and again.json()["id"] == runs[0]["id"]
        assert again.headers["idempotent-replayed"] == "true"

    def test_the_same_key_with_another_body_or_path_is_422(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 50)
        fmu = upload(client, fmus["VanDerPol"])
        headers = {"Idempotency-Key": f"reuse-{uuid.uuid4().hex}"}
        assert client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 1, "timeout_s": 1},
                           headers=headers).status_code == 202
        assert_problem(client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 2, "timeout_s": 1}, headers=headers),
                       422, "idempotency_key_reused")
        run_id = client.get("/v1/runs").json()["data"][0]["id"]
        assert_problem(client.post(f"/v1/runs/{run_id}/cancel", headers=headers), 422, "idempotency_key_reused")
        assert len(client.get("/v1/runs").json()["data"]) == 1
        # The other way round: a key another route took is not a run submission's either.
        other = {"Idempotency-Key": f"reuse-{uuid.uuid4().hex}"}
        assert client.post("/v1/api-keys", json={"name": "k"}, headers=other).status_code == 201
        assert_problem(client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 1, "timeout_s": 1}, headers=other),
                       422, "idempotency_key_reused")
        assert len(client.get("/v1/runs").json()["data"]) == 1

    def test_another_key_of_the_same_user_cannot_replay_a_run_submission(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 50)
        fmu = upload(client, fmus["VanDerPol"])
        twin = gateway.client(client.post("/v1/api-keys", json={"name": "twin"}).json()["secret"])
        headers, spec = {"Idempotency-Key": f"bound-{uuid.uuid4().hex}"}, {"stop_time": 1, "timeout_s": 1}
        assert client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers).status_code == 202
        assert_problem(twin.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers), 422, "idempotency_key_reused")
        assert len(client.get("/v1/runs").json()["data"]) == 1

    def test_keys_belong_to_their_user(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        alice, bob = new_user(gateway, 50), new_user(gateway, 50)
        spec = {"stop_time": 1, "timeout_s": 1}
        headers = {"Idempotency-Key": f"shared-{uuid.uuid4().hex}"}
        a = alice.post(f"/v1/fmus/{upload(alice, fmus['VanDerPol'])}/runs", json=spec, headers=headers)
        b = bob.post(f"/v1/fmus/{upload(bob, fmus['VanDerPol'])}/runs", json=spec, headers=headers)
        assert a.status_code == b.status_code == 202
        assert a.json()["id"] != b.json()["id"]
        assert "idempotent-replayed" not in b.headers

    def test_an_upload_with_a_key_is_replayed_even_with_a_new_multipart_boundary(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 0)
        data = fmus["Feedthrough"].read_bytes()
        headers = {"Idempotency-Key": f"upload-{uuid.uuid4().hex}"}
        first = client.post("/v1/fmus", files={"file": ("f.fmu", data)}, headers=headers)
        second = client.post("/v1/fmus", files={"file": ("f.fmu", data)}, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.json() == first.json() and second.headers["idempotent-replayed"] == "true"
        other = client.post("/v1/fmus", files={"file": ("v.fmu", fmus["VanDerPol"].read_bytes())}, headers=headers)
        assert_problem(other, 422, "idempotency_key_reused")
        assert len(client.get("/v1/fmus").json()["data"]) == 1

    def test_an_error_response_is_replayed_but_a_rate_limit_or_auth_error_is_not_stored(
            self, gateway: Gateway) -> None:
        client = new_user(gateway, 0)
        headers = {"Idempotency-Key": f"bad-{uuid.uuid4().hex}"}
        files = {"file": ("f.fmu", b"not a zip")}
        assert_problem(client.post("/v1/fmus", files=files, headers=headers), 422, "not_a_zip")
        replay = client.post("/v1/fmus", files=files, headers=headers)
        assert_problem(replay, 422, "not_a_zip")
        assert replay.headers["idempotent-replayed"] == "true"
        unauthenticated = gateway.client(None).post("/v1/fmus", files=files, headers=headers)
        assert_problem(unauthenticated, 401, "unauthenticated")

    def test_a_refused_run_submission_is_not_kept_a_retry_is_judged_again(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        client = gateway.client(gateway.create_user(0, email=email))
        fmu = upload(client, fmus["VanDerPol"])
        headers = {"Idempotency-Key": f"poor-{uuid.uuid4().hex}"}
        spec = {"stop_time": 1, "timeout_s": 1}
        assert_problem(client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers), 402, "insufficient_credits")
        assert gateway.admin("grant", "--email", email, "--credits", "5", "--reason", "bought").returncode == 0
        retry = client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers)
        assert retry.status_code == 202, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers).json()["id"] == retry.json()["id"]

    def test_a_malformed_key_is_422(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = new_user(gateway, 10)
        fmu = upload(client, fmus["VanDerPol"])
        assert_problem(client.post(f"/v1/fmus/{fmu}/runs", json={}, headers={"Idempotency-Key": "x" * 300}),
                       422, "invalid_idempotency_key")
        assert client.get("/v1/runs").json()["data"] == []


def submit_burst(client: httpx.Client, fmu: str, total: int = 200, threads: int = 50) -> list[int]:
    """``total`` submissions from ``threads`` threads at once, each thread with a connection pool of
    its own (one httpx pool shared by 50 threads once read from a socket another thread closed)."""
    local = threading.local()

    def submit(_: int) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=client.base_url, headers=client.headers, timeout=60)
            clients.append(local.client)
        # Computed, each one (the run cache would answer the repeats at once, for nothing).
        response = local.client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 0.01, "timeout_s": 1, "cache": False})
        assert response.status_code in (202, 402), response.text
        return response.status_code

    clients: list[httpx.Client] = []
    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(submit, range(total)))
    finally:
        for each in clients:
            each.close()


def assert_exactly_forty_accepted(statuses: list[int], client: httpx.Client) -> None:
    assert statuses.count(202) == 40
    assert statuses.count(402) == 160
    runs = client.get("/v1/runs", params={"limit": 100}).json()["data"]
    assert len(runs) == 40
    for run in runs:
        wait_final(client, run["id"])
    assert balance(client) == 0
    assert_ledger_matches_balance(client)
    assert Counter(e["kind"] for e in ledger(client))["hold"] == 40


class TestNoOverdraft:
    def test_200_concurrent_submissions_against_40_credits_accept_exactly_40(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        assert cpu_cost(1) == 1  # each submission below holds exactly one credit
        client = new_user(gateway, 40, tier="enterprise")
        assert_exactly_forty_accepted(submit_burst(client, upload(client, fmus["VanDerPol"])), client)


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[Gateway, Gateway]]:
    """Two API processes on one PostgreSQL database and one blob store, as behind a load balancer."""
    var_dirs = [new_var_dir("two-servers-a"), new_var_dir("two-servers-b")]
    gateways: list[Gateway] = []
    try:
        with temporary_database("postgresql", var_dirs[0]) as url:
            shared = {"FMU_GATEWAY_DATABASE_URL": url, "FMU_GATEWAY_STORAGE_DIR": str(var_dirs[0] / "shared-storage")}
            for var_dir in var_dirs:
                gateways.append(start_gateway(var_dir, **shared))
            yield gateways[0], gateways[1]
    finally:
        for gateway in gateways:
            stop_gateway(gateway)
        for var_dir in var_dirs:
            shutil.rmtree(var_dir, ignore_errors=True)


class TestTwoServers:
    def test_200_concurrent_submissions_through_two_servers_accept_exactly_40(
            self, two_servers: tuple[Gateway, Gateway], fmus: dict[str, Path]) -> None:
        a, b = two_servers
        client_a = new_user(a, 40, tier="enterprise")
        key = client_a.headers["authorization"]
        client_b = b.client(None)
        client_b.headers["authorization"] = key
        fmu = upload(client_a, fmus["VanDerPol"])
        with ThreadPoolExecutor(2) as pool:
            halves = list(pool.map(lambda c: submit_burst(c, fmu, total=100, threads=25), [client_a, client_b]))
        assert_exactly_forty_accepted(halves[0] + halves[1], client_a)

    def test_one_key_sent_to_both_servers_creates_one_run(self, two_servers: tuple[Gateway, Gateway],
                                                          fmus: dict[str, Path]) -> None:
        a, b = two_servers
        client_a = new_user(a, 50, tier="pro")
        client_b = b.client(None)
        client_b.headers["authorization"] = client_a.headers["authorization"]
        fmu = upload(client_a, fmus["VanDerPol"])

        def submit(client: httpx.Client) -> httpx.Response:
            return client.post(f"/v1/fmus/{fmu}/runs", json={"stop_time": 1, "timeout_s": 1},
                               headers={"Idempotency-Key": "both-servers"})

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(submit, [client_a, client_b] * 10))
        # Each is answered with the one run (200 once it has finished), whichever server took it.
        assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert len(client_a.get("/v1/runs").json()["data"]) == 1
        assert Counter(e["kind"] for e in ledger(client_a))["hold"] == 1
