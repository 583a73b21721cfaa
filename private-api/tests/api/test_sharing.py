"""Sharing a model end to end, on SQLite and PostgreSQL: an owner grants a user the right to run an
FMU at a price per run; the grantee lists, reads and runs it and pays; the owner earns, less the
platform fee, in the settlement's own transaction; both ledgers sum to their balances; no route
gives the grantee a byte of the model; revocation stops new runs at once."""

from __future__ import annotations

import json
import math
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from books import assert_ledger_matches_balance, balance, ledger
from gateway_process import REPO_ROOT, Gateway
from problems import assert_problem

PRICING = json.loads((REPO_ROOT / "shared-specs" / "pricing_tiers.json").read_text())
FREE_FEE = next(t for t in PRICING["tiers"] if t["id"] == "free")["platform_fee_percent"]
PRICE = 7
HOSTILE = {"stop_time": 1, "output_interval": 0.1, "timeout_s": 10}


def new_user(gateway: Gateway, credits: int = 1000, display_name: str | None = None) -> tuple[httpx.Client, str]:
    email = f"{uuid.uuid4().hex[:10]}@Example.com"  # mixed case: a grant matches any case
    args = ["create-user", "--email", email, "--credits", str(credits)]
    if display_name:
        args += ["--display-name", display_name]
    created = gateway.admin(*args)
    assert created.returncode == 0, created.stderr
    return gateway.client(created.stdout.strip().splitlines()[-1]), email


def upload(client: httpx.Client, path: Path) -> dict[str, Any]:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def run(client: httpx.Client, fmu_id: str, **body: Any) -> httpx.Response:
    return client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={**body, "cache": False})


def cpu_cost(cpu_s: float) -> int:
    model = PRICING["cost_model"]
    billable = max(0.0, cpu_s - model["included_cpu_seconds"])
    return int(model["run_base_credits"] + math.ceil(round(billable * model["credits_per_cpu_second"], 6)))


@pytest.fixture
def shared(gateway: Gateway, fmus: dict[str, Path]) -> dict[str, Any]:
    """Hostile (which can be told to fail, or to steal itself) shared by its owner at PRICE a run."""
    owner, owner_email = new_user(gateway, display_name="Acme Models")
    grantee, grantee_email = new_user(gateway)
    fmu = upload(owner, fmus["Hostile"])
    response = owner.post(f"/v1/fmus/{fmu['id']}/grants",
                          json={"email": grantee_email.upper(), "price_credits_per_run": PRICE})
    assert response.status_code == 201, response.text
    return {"owner": owner, "owner_email": owner_email, "grantee": grantee, "email": grantee_email, "fmu": fmu,
            "grant": response.json()}


class TestGrants:
    def test_a_grant_as_created_and_listed(self, shared: dict[str, Any]) -> None:
        grant = shared["grant"]
        assert grant["id"].startswith("grt_") and grant["object"] == "grant"
        assert grant["email"] == shared["email"].lower() and grant["price_credits_per_run"] == PRICE
        assert grant["revoked_at"] is None and grant["runs"] == 0 and grant["earned_credits"] == 0
        listed = shared["owner"].get(f"/v1/fmus/{shared['fmu']['id']}/grants").json()
        assert [g["id"] for g in listed["data"]] == [grant["id"]]

    def test_sharing_twice_with_one_email_or_with_oneself_or_badly_is_refused(self, shared: dict[str, Any]) -> None:
        owner, fmu_id = shared["owner"], shared["fmu"]["id"]
        again = owner.post(f"/v1/fmus/{fmu_id}/grants", json={"email": shared["email"], "price_credits_per_run": 1})
        assert_problem(again, 409, "grant_exists")
        itself = owner.post(f"/v1/fmus/{fmu_id}/grants", json={"email": shared["owner_email"].upper()})
        assert_problem(itself, 422, "grant_to_self")
        for body in ({"email": "not-an-email"}, {"email": "a@example.com", "price_credits_per_run": -1},
                     {"email": "a@example.com", "price_credits_per_run": 10**9}, {"email": "a@example.com", "x": 1}):
            assert_problem(owner.post(f"/v1/fmus/{fmu_id}/grants", json=body), 422, "validation_error")
        assert len(owner.get(f"/v1/fmus/{fmu_id}/grants").json()["data"]) == 1

    def test_a_model_has_at_most_max_grants_per_fmu_live_grants(self, shared: dict[str, Any]) -> None:
        """The suite's gateways allow 3 (conftest); a revoked grant frees its place."""
        owner, fmu_id = shared["owner"], shared["fmu"]["id"]
        url = f"/v1/fmus/{fmu_id}/grants"
        for i in range(2):
            assert owner.post(url, json={"email": f"g{i}-{uuid.uuid4().hex[:6]}@example.com"}).status_code == 201
        refused = assert_problem(owner.post(url, json={"email": "fourth@example.com"}), 409, "too_many_grants")
        assert refused["limit"] == 3
        assert len(owner.get(url).json()["data"]) == 3
        assert owner.delete(f"{url}/{shared['grant']['id']}").status_code == 200
        assert owner.post(url, json={"email": "fourth@example.com"}).status_code == 201

    def test_only_the_owner_shares_lists_revokes_updates_or_deletes(self, shared: dict[str, Any]) -> None:
        grantee, fmu_id, grant_id = shared["grantee"], shared["fmu"]["id"], shared["grant"]["id"]
        for response in (grantee.post(f"/v1/fmus/{fmu_id}/grants", json={"email": "x@example.com"}),
                         grantee.get(f"/v1/fmus/{fmu_id}/grants"),
                         grantee.get(f"/v1/fmus/{fmu_id}/usage"),
                         grantee.delete(f"/v1/fmus/{fmu_id}/grants/{grant_id}"),
                         grantee.patch(f"/v1/fmus/{fmu_id}", json={"deterministic": False}),
                         grantee.delete(f"/v1/fmus/{fmu_id}")):
            assert_problem(response, 404, "not_found")

    def test_nobody_else_sees_a_shared_model(self, gateway: Gateway, shared: dict[str, Any]) -> None:
        stranger, _ = new_user(gateway)
        fmu_id = shared["fmu"]["id"]
        assert_problem(stranger.get(f"/v1/fmus/{fmu_id}"), 404, "not_found")
        assert_problem(run(stranger, fmu_id, **HOSTILE), 404, "not_found")
        assert fmu_id not in [f["id"] for f in stranger.get("/v1/fmus").json()["data"]]


class TestGrantee:
    def test_the_grantee_lists_and_reads_the_model_marked_shared_by_the_owners_name(
            self, shared: dict[str, Any]) -> None:
        grantee, fmu_id = shared["grantee"], shared["fmu"]["id"]
        listed = {f["id"]: f for f in grantee.get("/v1/fmus").json()["data"]}
        assert listed[fmu_id]["shared_by"] == "Acme Models"
        assert listed[fmu_id]["price_credits_per_run"] == PRICE
        detail = grantee.get(f"/v1/fmus/{fmu_id}").json()
        assert detail["shared_by"] == "Acme Models" and detail["variables"]
        variables = grantee.get(f"/v1/fmus/{fmu_id}/variables", params={"q": "mode"}).json()["data"]
        assert "mode" in [v["name"] for v in variables]
        # The owner sees it as their own.
        assert shared["owner"].get(f"/v1/fmus/{fmu_id}").json()["shared_by"] is None

    def test_an_unnamed_owner_is_shown_by_user_id_never_by_email(self, gateway: Gateway,
                                                                   fmus: dict[str, Path]) -> None:
        owner, owner_email = new_user(gateway)
        grantee, email = new_user(gateway)
        fmu = upload(owner, fmus["VanDerPol"])
        assert owner.post(f"/v1/fmus/{fmu['id']}/grants", json={"email": email}).status_code == 201
        shown = grantee.get(f"/v1/fmus/{fmu['id']}").json()["shared_by"]
        assert shown.startswith("usr_") and owner_email.split("@")[0].lower() not in shown.lower()

    def test_a_succeeded_run_pays_the_owner_less_the_fee_and_both_books_balance(self, shared: dict[str, Any]) -> None:
        owner, grantee, fmu_id = shared["owner"], shared["grantee"], shared["fmu"]["id"]
        owner_before, grantee_before = balance(owner), balance(grantee)
        quote = grantee.post(f"/v1/fmus/{fmu_id}/runs", params={"dry_run": "true"}, json=HOSTILE).json()
        assert quote["owner_credits_per_run"] == PRICE
        assert quote["credits_held"] == quote["credits_per_run"] + PRICE
        response = run(grantee, fmu_id, **HOSTILE)
        body = response.json()
        assert body["status"] == "succeeded", body
        assert body["grant_id"] == shared["grant"]["id"] and body["owner_credits"] == PRICE
        assert body["credits_held"] == quote["credits_held"]
        assert body["credits_charged"] == cpu_cost(body["timings"]["cpu_s"]) + PRICE
        earned = PRICE - PRICE * FREE_FEE // 100
        earnings = [e for e in ledger(owner) if e["kind"] == "earning"]
        assert [(e["amount"], e["run_id"]) for e in earnings] == [(earned, body["id"])]
        assert f"{PRICE} credit(s), less a {PRICE * FREE_FEE // 100} fee" in earnings[0]["description"]
        assert balance(owner) == owner_before + earned
        assert balance(grantee) == grantee_before - body["credits_charged"]
        assert_ledger_matches_balance(owner)
        assert_ledger_matches_balance(grantee)
        # The owner cannot read the grantee's run; the grantee lists it among their own.
        assert_problem(owner.get(f"/v1/runs/{body['id']}"), 404, "not_found")
        assert body["id"] in [r["id"] for r in grantee.get("/v1/runs").json()["data"]]

    def test_a_failed_run_pays_the_owner_nothing(self, shared: dict[str, Any]) -> None:
        owner, grantee, fmu_id = shared["owner"], shared["grantee"], shared["fmu"]["id"]
        body = run(grantee, fmu_id, **HOSTILE, start_values={"mode": 6}).json()  # fmi2Error
        assert body["status"] == "failed", body
        assert body["credits_charged"] == cpu_cost(body["timings"]["cpu_s"])
        assert [e for e in ledger(owner) if e["kind"] == "earning"] == []
        assert_ledger_matches_balance(owner)
        assert_ledger_matches_balance(grantee)

    def test_a_grantees_sweep_pays_per_succeeded_child(self, shared: dict[str, Any]) -> None:
        owner, grantee, fmu_id = shared["owner"], shared["grantee"], shared["fmu"]["id"]
        response = grantee.post(f"/v1/fmus/{fmu_id}/sweeps", json={
            **HOSTILE, "cache": False, "method": "list", "parameters": [{"mode": 0}, {"mode": 6}, {"mode": 0}]})
        assert response.status_code == 202, response.text
        sweep = response.json()
        quote = grantee.post(f"/v1/fmus/{fmu_id}/sweeps", params={"dry_run": "true"}, json={
            **HOSTILE, "method": "list", "parameters": [{"mode": 0}, {"mode": 6}, {"mode": 0}]}).json()
        assert quote["runs"] == 3 and sweep["credits_held"] == quote["credits_held"]
        assert quote["credits_held"] == 3 * (quote["credits_per_run"] + PRICE)
        deadline = time.monotonic() + 60
        while (final := grantee.get(f"/v1/sweeps/{sweep['id']}").json())["status"] != "finished":
            assert time.monotonic() < deadline, final
            time.sleep(0.2)
        assert final["counts"]["succeeded"] == 2 and final["counts"]["failed"] == 1
        earned = PRICE - PRICE * FREE_FEE // 100
        assert sorted(e["amount"] for e in ledger(owner) if e["kind"] == "earning") == [earned, earned]
        assert_ledger_matches_balance(owner)
        assert_ledger_matches_balance(grantee)
        usage = owner.get(f"/v1/fmus/{fmu_id}/usage").json()
        assert usage["by_grantee"] == [{"grant_id": shared["grant"]["id"], "email": shared["email"].lower(),
                                        "runs": 3, "succeeded": 2, "earned_credits": 2 * earned}]
        assert [(d["runs"], d["earned_credits"]) for d in usage["by_day"]] == [(3, 2 * earned)]
        grant = owner.get(f"/v1/fmus/{fmu_id}/grants").json()["data"][0]
        assert (grant["runs"], grant["earned_credits"]) == (3, 2 * earned)


class TestNoBytes:
    def test_a_model_that_copies_itself_out_reaches_the_grantee_as_numbers_and_text_only(
            self, shared: dict[str, Any], fmus: dict[str, Path], tmp_path: Path) -> None:
        """Mode 19 reads its own shared library and writes it over the result file, into its
        working directory, /tmp and stderr: the grantee's result, in every format, and log hold no
        64-byte run of it."""
        owner, grantee, fmu_id = shared["owner"], shared["grantee"], shared["fmu"]["id"]
        probe = {**HOSTILE, "start_values": {"mode": 19, "target_file": "/out/result.arrow"}}
        body = run(grantee, fmu_id, **probe).json()
        assert body["status"] == "succeeded", body
        with zipfile.ZipFile(fmus["Hostile"]) as archive:
            binaries = [archive.read(n) for n in archive.namelist() if n.startswith("binaries/")]
        assert binaries
        blocks = {binary[i:i + 64] for binary in binaries for i in range(0, len(binary) - 64, 64)}
        # The control: the owner's own run of the probe keeps its raw log, which does hold the binary.
        own = run(owner, fmu_id, **probe).json()
        assert any(block in owner.get(f"/v1/runs/{own['id']}/log").content for block in blocks)
        result = grantee.get(f"/v1/runs/{body['id']}/result")
        assert result.status_code == 200, result.text
        table = pa.ipc.open_file(pa.BufferReader(result.content)).read_all()
        assert table.column("probe").to_pylist()[-1] > 1000  # it did read itself
        received = [result.content, grantee.get(f"/v1/runs/{body['id']}/log").content]
        received += [grantee.get(f"/v1/runs/{body['id']}/result", params={"format": f}).content
                     for f in ("csv", "json", "parquet")]
        # A submission answered with its result (?result=) is filtered the same way.
        inline = grantee.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60, "result": "arrow"},
                              json={**probe, "cache": False})
        assert inline.status_code == 200 and inline.headers["content-type"].startswith("application/vnd.apache.arrow")
        received.append(inline.content)
        for data in received:
            assert not any(block in data for block in blocks)
        # No route serves an FMU's bytes to anyone (none exists for the owner either).
        for path in (f"/v1/fmus/{fmu_id}/download", f"/v1/fmus/{fmu_id}/file", f"/v1/fmus/{fmu_id}/binary"):
            assert grantee.get(path).status_code in (404, 405)


class TestRevocation:
    def test_revoking_refuses_the_next_run_and_lets_accepted_ones_finish(self, shared: dict[str, Any]) -> None:
        owner, grantee, fmu_id = shared["owner"], shared["grantee"], shared["fmu"]["id"]
        accepted = grantee.post(f"/v1/fmus/{fmu_id}/runs", json={**HOSTILE, "cache": False})
        assert accepted.status_code in (200, 202), accepted.text
        revoked = owner.delete(f"/v1/fmus/{fmu_id}/grants/{shared['grant']['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert_problem(run(grantee, fmu_id, **HOSTILE), 404, "not_found")
        assert_problem(grantee.get(f"/v1/fmus/{fmu_id}"), 404, "not_found")
        assert fmu_id not in [f["id"] for f in grantee.get("/v1/fmus").json()["data"]]
        finished = grantee.get(f"/v1/runs/{accepted.json()['id']}", params={"wait": 60}).json()
        assert finished["status"] == "succeeded"
        assert [e["run_id"] for e in ledger(owner) if e["kind"] == "earning"] == [finished["id"]]
        assert_ledger_matches_balance(owner)
        assert_ledger_matches_balance(grantee)
        # Shared again later: a new grant, the model back in the list.
        again = owner.post(f"/v1/fmus/{fmu_id}/grants", json={"email": shared["email"], "price_credits_per_run": 1})
        assert again.status_code == 201
        assert fmu_id in [f["id"] for f in grantee.get("/v1/fmus").json()["data"]]
