"""Parameter sweeps end to end: the children each method creates (checked against scipy itself),
the hold for the whole sweep, settlement, the tables against FMPy, failures, cancel, Server-Sent
Events and the errors — on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import fmpy
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from books import balance, ledger
from gateway_process import Gateway
from problems import assert_problem
from scipy.stats import qmc

# A short VanDerPol run: enough rows to compare, little sandbox time.
BASE = {"stop_time": 2, "output_interval": 0.1, "timeout_s": 10}
HOLD_PER_CHILD = 2  # run_hold(10 s) = 1 + ceil((10 - 1) * 0.1)
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def new_client(gateway: Gateway, credits: int = 1000, tier: str | None = None) -> httpx.Client:
    return gateway.client(gateway.create_user(credits, tier=tier))


def upload(client: httpx.Client, path: Path) -> str:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    fmu_id: str = response.json()["id"]
    return fmu_id


def create(client: httpx.Client, fmu_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={**BASE, **body})
    assert response.status_code == 202, response.text
    sweep: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/sweeps/{sweep['id']}"
    return sweep


def wait(client: httpx.Client, sweep_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        sweep: dict[str, Any] = client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] in ("finished", "cancelled"):
            return sweep
        assert time.monotonic() < deadline, sweep
        time.sleep(0.2)


def children(client: httpx.Client, sweep_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(f"/v1/sweeps/{sweep_id}/runs", params={"limit": 3, "cursor": cursor}).json()
        runs += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return runs


def table_of(content: bytes, fmt: str) -> pa.Table:
    if fmt == "arrow":
        return pa.ipc.open_file(pa.BufferReader(content)).read_all()
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(content))
    return pa_csv.read_csv(io.BytesIO(content))


@pytest.fixture(scope="module")
def carol(gateway: Gateway) -> httpx.Client:
    return new_client(gateway, 100_000, tier="pro")


@pytest.fixture(scope="module")
def vdp(carol: httpx.Client, fmus: dict[str, Path]) -> str:
    return upload(carol, fmus["VanDerPol"])


@pytest.fixture(scope="module")
def hostile(carol: httpx.Client, fmus: dict[str, Path]) -> str:
    return upload(carol, fmus["Hostile"])


class TestCreateSweep:
    def test_grid_is_the_cartesian_product_last_parameter_fastest(self, carol: httpx.Client, vdp: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [0.5, 1.5], "x0": [1.0, 2.0, 3.0]},
                       start_values={"x1": 0.5})
        assert sweep["total"] == 6 and sweep["parameter_names"] == ["mu", "x0"]
        assert sweep["status"] == "queued" and sweep["counts"]["queued"] == 6
        runs = children(carol, sweep["id"])
        assert [r["sweep_index"] for r in runs] == list(range(6))
        expected = [{"mu": m, "x0": x} for m in (0.5, 1.5) for x in (1.0, 2.0, 3.0)]
        assert [r["parameters"] for r in runs] == expected
        # The sample is merged over the base spec's start values.
        assert [r["spec"]["start_values"] for r in runs] == [{"x1": 0.5, **e} for e in expected]
        assert all(r["sweep_id"] == sweep["id"] and r["spec"]["stop_time"] == 2 for r in runs)
        assert wait(carol, sweep["id"])["counts"]["succeeded"] == 6

    def test_the_first_read_of_a_finished_sweep_says_when_it_finished(self, carol: httpx.Client, vdp: str) -> None:
        """The read that finds every child final marks the sweep finished, and answers with it
        (on SQLite its own read transaction could not see what it had just written)."""
        sweep = create(carol, vdp, method="grid", parameters={"mu": [0.5, 1.0]})
        deadline = time.monotonic() + 60
        while not all(run["status"] in FINAL for run in children(carol, sweep["id"])):  # not the sweep itself
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first = carol.get(f"/v1/sweeps/{sweep['id']}").json()
        assert first["status"] == "finished" and first["finished_at"] is not None, first
        assert carol.get(f"/v1/sweeps/{sweep['id']}").json()["finished_at"] == first["finished_at"]

    def test_a_retry_under_one_idempotency_key_creates_one_sweep_and_one_hold(
            self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        """The sweep keeps its key: a retry finds it even when the first answer was never stored
        (the process died after its commit), and another request under the key is refused."""
        client = new_client(gateway)
        body = {**BASE, "method": "grid", "parameters": {"mu": [0.5, 1.0, 1.5]}}
        headers = {"Idempotency-Key": "sweep-once"}
        fmu_id = upload(client, fmus["VanDerPol"])
        first = client.post(f"/v1/fmus/{fmu_id}/sweeps", json=body, headers=headers)
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers, first.text
        engine = sa.create_engine(gateway.env["FMU_GATEWAY_DATABASE_URL"])
        try:
            with engine.begin() as connection:  # as if no answer had been stored
                connection.execute(sa.text("DELETE FROM idempotency_records WHERE key = 'sweep-once'"))
        finally:
            engine.dispose()
        again = client.post(f"/v1/fmus/{fmu_id}/sweeps", json=body, headers=headers)
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true", again.text
        assert again.json()["id"] == first.json()["id"]
        assert [s["id"] for s in client.get("/v1/sweeps").json()["data"]] == [first.json()["id"]]
        holds = [e for e in ledger(client) if e["kind"] == "hold"]
        assert len(holds) == 1 and holds[0]["amount"] == -3 * HOLD_PER_CHILD
        other = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={**body, "parameters": {"mu": [0.5]}}, headers=headers)
        assert_problem(other, 422, "idempotency_key_reused")
        # Runs and sweeps share the user's keys.
        run = client.post(f"/v1/fmus/{fmu_id}/runs", json={"stop_time": 1}, headers=headers)
        assert_problem(run, 422, "idempotency_key_reused")
        taken = client.post(f"/v1/fmus/{fmu_id}/runs", json={"stop_time": 1}, headers={"Idempotency-Key": "run-first"})
        assert taken.status_code == 202, taken.text
        assert_problem(client.post(f"/v1/fmus/{fmu_id}/sweeps", json=body, headers={"Idempotency-Key": "run-first"}),
                       422, "idempotency_key_reused")
        assert wait(client, first.json()["id"])["counts"]["succeeded"] == 3

    def test_a_retry_after_every_child_ended_answers_with_the_finished_sweep(
            self, carol: httpx.Client, vdp: str) -> None:
        """The retry is the read that finds every child final: it marks the sweep finished (a write
        of its own, after the submission's transaction, not inside it) and answers with that."""
        body = {**BASE, "method": "grid", "parameters": {"mu": [0.5, 1.0]}}
        headers = {"Idempotency-Key": "sweep-retried-late"}
        first = carol.post(f"/v1/fmus/{vdp}/sweeps", json=body, headers=headers)
        assert first.status_code == 202, first.text
        deadline = time.monotonic() + 60
        while not all(run["status"] in FINAL for run in children(carol, first.json()["id"])):  # not the sweep
            assert time.monotonic() < deadline
            time.sleep(0.1)
        started = time.monotonic()
        again = carol.post(f"/v1/fmus/{vdp}/sweeps", json=body, headers=headers, timeout=60)
        assert time.monotonic() - started < 10, "the retry waited for a lock"
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true", again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["status"] == "finished" and again.json()["finished_at"] is not None, again.json()

    def test_list_creates_one_child_per_set(self, carol: httpx.Client, vdp: str) -> None:
        sets = [{"mu": 0.3, "x0": 1.0}, {"mu": 2.0, "x0": 0.0}]
        sweep = create(carol, vdp, method="list", parameters=sets)
        assert sweep["total"] == 2 and sweep["parameters"] == sets
        assert [r["parameters"] for r in children(carol, sweep["id"])] == sets
        wait(carol, sweep["id"])

    @pytest.mark.parametrize("method", ["lhs", "sobol", "random"])
    def test_sampled_children_are_scipys_samples_for_the_seed(self, carol: httpx.Client, vdp: str,
                                                              method: str) -> None:
        sweep = create(carol, vdp, method=method, samples=5, seed=42,
                       parameters={"mu": {"min": 0.1, "max": 2.0}, "x0": {"min": 0, "max": 1}})
        assert sweep["seed"] == 42 and sweep["samples"] == 5 and sweep["total"] == 5
        if method == "lhs":
            unit = qmc.LatinHypercube(d=2, rng=42).random(5)
        elif method == "sobol":
            with pytest.warns(UserWarning, match="balance properties"):
                unit = qmc.Sobol(d=2, scramble=True, rng=42).random(5)
        else:
            unit = np.random.default_rng(42).random((5, 2))
        expected = qmc.scale(unit, [0.1, 0], [2.0, 1])
        got = np.array([[r["parameters"]["mu"], r["parameters"]["x0"]] for r in children(carol, sweep["id"])])
        np.testing.assert_array_equal(got, expected)
        wait(carol, sweep["id"])

    def test_without_a_seed_the_chosen_one_is_returned_and_reproduces(self, carol: httpx.Client, vdp: str) -> None:
        space = {"mu": {"min": 0.5, "max": 1.0}}
        first = create(carol, vdp, method="lhs", samples=2, parameters=space)
        again = create(carol, vdp, method="lhs", samples=2, parameters=space, seed=first["seed"])
        assert isinstance(first["seed"], int)
        assert ([r["parameters"] for r in children(carol, first["id"])]
                == [r["parameters"] for r in children(carol, again["id"])])
        wait(carol, first["id"]), wait(carol, again["id"])

    def test_a_sweep_counts_as_one_submission_against_the_concurrent_run_cap(self, gateway: Gateway,
                                                                             fmus: dict[str, Path]) -> None:
        client = new_client(gateway)  # free tier: 4 runs at a time
        fmu_id = upload(client, fmus["VanDerPol"])
        sweep = create(client, fmu_id, method="grid", parameters={"mu": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]})
        assert sweep["total"] == 6
        assert wait(client, sweep["id"])["counts"]["succeeded"] == 6

    def test_sweeps_are_listed_newest_first_and_private(self, carol: httpx.Client, bob: httpx.Client,
                                                        vdp: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [1.0]})
        listed = carol.get("/v1/sweeps", params={"limit": 1}).json()
        assert listed["data"][0]["id"] == sweep["id"] and listed["has_more"]
        assert sweep["id"] not in [s["id"] for s in bob.get("/v1/sweeps").json()["data"]]
        assert_problem(bob.get(f"/v1/sweeps/{sweep['id']}"), 404, "not_found")
        wait(carol, sweep["id"])


class TestSweepCredits:
    def test_the_whole_sweep_is_held_at_once_and_every_child_settles(self, gateway: Gateway, vdp: str,
                                                                     fmus: dict[str, Path]) -> None:
        client = new_client(gateway, 100)
        fmu_id = upload(client, fmus["VanDerPol"])
        sweep = create(client, fmu_id, method="grid", parameters={"mu": [0.5, 1.0, 1.5]})
        assert sweep["credits_held"] == 3 * HOLD_PER_CHILD
        done = wait(client, sweep["id"])
        holds = [e for e in ledger(client) if e["kind"] == "hold"]
        assert [(e["amount"], e["run_id"]) for e in holds] == [(-3 * HOLD_PER_CHILD, None)]
        runs = children(client, sweep["id"])
        assert all(r["credits_held"] == HOLD_PER_CHILD and r["status"] == "succeeded" for r in runs)
        entries = ledger(client)
        for run in runs:
            assert {e["kind"] for e in entries if e["run_id"] == run["id"]} == {"settle", "release"}
        charged = sum(r["credits_charged"] for r in runs)
        assert done["credits_charged"] == charged
        assert balance(client) == 100 - charged == sum(e["amount"] for e in entries)

    def test_a_sweep_the_balance_cannot_cover_is_402_and_creates_nothing(self, gateway: Gateway,
                                                                         fmus: dict[str, Path]) -> None:
        client = new_client(gateway, 2 * HOLD_PER_CHILD + 1)
        fmu_id = upload(client, fmus["VanDerPol"])
        response = client.post(f"/v1/fmus/{fmu_id}/sweeps",
                               json={**BASE, "method": "grid", "parameters": {"mu": [0.5, 1.0, 1.5]}})
        assert_problem(response, 402, "insufficient_credits")
        assert client.get("/v1/sweeps").json()["data"] == []
        assert client.get("/v1/runs").json()["data"] == []
        assert balance(client) == 2 * HOLD_PER_CHILD + 1 and [e["kind"] for e in ledger(client)] == ["grant"]


class TestSweepTables:
    def test_summary_matches_fmpy_on_the_same_samples(self, carol: httpx.Client, vdp: str,
                                                      fmus: dict[str, Path]) -> None:
        sweep = create(carol, vdp, method="sobol", samples=4, seed=3,
                       parameters={"mu": {"min": 0.5, "max": 2.5}, "x0": {"min": 1, "max": 2}})
        assert wait(carol, sweep["id"])["status"] == "finished"
        summary = carol.get(f"/v1/sweeps/{sweep['id']}/summary").json()
        assert summary["columns"][:6] == ["sweep_index", "run_id", "status", "error_code", "mu", "x0"]
        assert summary["columns"][6:] == ["final(x0)", "min(x0)", "max(x0)", "final(x1)", "min(x1)", "max(x1)"]
        data = summary["data"]
        for i in range(4):
            start = {"mu": data["mu"][i], "x0": data["x0"][i]}
            ref = fmpy.simulate_fmu(str(fmus["VanDerPol"]), stop_time=2, output_interval=0.1,
                                    start_values=start, fmi_type="CoSimulation")
            for output in ("x0", "x1"):
                np.testing.assert_allclose(
                    [data[f"final({output})"][i], data[f"min({output})"][i], data[f"max({output})"][i]],
                    [ref[output][-1], ref[output].min(), ref[output].max()], rtol=1e-9, atol=0)
        assert data["status"] == ["succeeded"] * 4 and data["sweep_index"] == [0, 1, 2, 3]

    @pytest.mark.parametrize("fmt", ["arrow", "parquet", "csv"])
    def test_result_is_one_long_table(self, carol: httpx.Client, vdp: str, fmt: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [0.5, 1.0], "x0": [1.5]})
        wait(carol, sweep["id"])
        response = carol.get(f"/v1/sweeps/{sweep['id']}/result", params={"format": fmt})
        assert response.status_code == 200, response.text
        table = table_of(response.content, fmt)
        # x0 is swept and an output: the parameter is start(x0), the time series x0.
        assert table.column_names == ["sweep_index", "mu", "start(x0)", "time", "x0", "x1"]
        rows = [r["result"]["rows"] for r in children(carol, sweep["id"])]
        assert table.num_rows == sum(rows) == 2 * 21
        assert table.column("sweep_index").to_pylist() == [0] * rows[0] + [1] * rows[1]
        assert table.column("mu").to_pylist() == [0.5] * rows[0] + [1.0] * rows[1]
        assert set(table.column("start(x0)").to_pylist()) == {1.5}

    def test_summary_formats_hold_the_same_rows(self, carol: httpx.Client, vdp: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [0.5, 1.0]})
        wait(carol, sweep["id"])
        tables = {fmt: table_of(carol.get(f"/v1/sweeps/{sweep['id']}/summary", params={"format": fmt}).content, fmt)
                  for fmt in ("arrow", "parquet", "csv")}
        assert tables["arrow"].equals(tables["parquet"])
        assert tables["csv"].column("final(x1)").to_pylist() == tables["arrow"].column("final(x1)").to_pylist()

    def test_result_of_an_unfinished_sweep_is_409(self, carol: httpx.Client, hostile: str) -> None:
        sweep = create(carol, hostile, method="grid", parameters={"mode": [4]}, timeout_s=30)
        assert_problem(carol.get(f"/v1/sweeps/{sweep['id']}/result"), 409, "sweep_not_finished")
        carol.post(f"/v1/sweeps/{sweep['id']}/cancel")

    def test_a_failed_child_is_reported_and_the_sweep_still_finishes(self, carol: httpx.Client,
                                                                     hostile: str) -> None:
        # mode 0 behaves; mode 6 fails with an FMI error.
        sweep = create(carol, hostile, method="grid", parameters={"mode": [0, 6]}, stop_time=1)
        done = wait(carol, sweep["id"])
        assert done["status"] == "finished" and done["progress"] == 1.0
        assert done["counts"]["succeeded"] == 1 and done["counts"]["failed"] == 1
        summary = carol.get(f"/v1/sweeps/{sweep['id']}/summary").json()["data"]
        assert summary["status"] == ["succeeded", "failed"]
        assert summary["error_code"] == [None, "model_error"]
        assert summary["final(y)"][1] is None and summary["final(y)"][0] == pytest.approx(1.0)
        table = table_of(carol.get(f"/v1/sweeps/{sweep['id']}/result").content, "arrow")
        assert set(table.column("sweep_index").to_pylist()) == {0}


class TestCancelSweep:
    def test_cancel_stops_every_child_and_releases_the_holds(self, gateway: Gateway,
                                                             fmus: dict[str, Path]) -> None:
        client = new_client(gateway, 1000, tier="pro")
        fmu_id = upload(client, fmus["Hostile"])
        # mode 4 sleeps until its timeout: nothing finishes before the cancel.
        sweep = create(client, fmu_id, method="grid", parameters={"mode": [4, 4, 4, 4, 4]}, timeout_s=30)
        time.sleep(1.0)  # some children start
        response = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
        assert response.status_code == 200, response.text
        cancelled = response.json()
        assert cancelled["status"] == "cancelled" and cancelled["counts"]["cancelled"] == 5
        assert cancelled["finished_at"] is not None
        # Retried cancel: the same answer.
        assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").json()["status"] == "cancelled"
        runs = children(client, sweep["id"])
        assert {r["status"] for r in runs} == {"cancelled"}
        # Queued children cost nothing; running ones pay for the time they ran (under a second).
        charged = sum(r["credits_charged"] for r in runs)
        assert charged <= 5
        time.sleep(0.5)
        entries = ledger(client)
        assert balance(client) == 1000 - charged == sum(e["amount"] for e in entries)
        assert client.get("/v1/billing/balance").json()["held_credits"] == 0

    def test_cancel_of_a_finished_sweep_is_409(self, carol: httpx.Client, vdp: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [1.0]})
        wait(carol, sweep["id"])
        assert_problem(carol.post(f"/v1/sweeps/{sweep['id']}/cancel"), 409, "sweep_finished")


def read_events(client: httpx.Client, path: str, timeout: float = 60) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", path, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert name is not None
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


class TestEvents:
    def test_sweep_events_report_progress_and_end(self, carol: httpx.Client, vdp: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [0.5, 1.0, 1.5]})
        events = read_events(carol, f"/v1/sweeps/{sweep['id']}/events")
        names = [name for name, _ in events]
        assert names[0] == "status" and names[-1] == "end" and "progress" in names
        final = events[-1][1]
        assert final["status"] == "finished" and final["counts"]["succeeded"] == 3
        done = [data["counts"]["succeeded"] for name, data in events if name == "progress"]
        assert done == sorted(done) and done[-1] == 3

    def test_run_events_report_each_status_then_end(self, carol: httpx.Client, hostile: str) -> None:
        run = carol.post(f"/v1/fmus/{hostile}/runs", json={"stop_time": 1, "start_values": {"mode": 0}}).json()
        events = read_events(carol, f"/v1/runs/{run['id']}/events")
        statuses = [data["status"] for name, data in events if name == "status"]
        assert statuses[-1] == "succeeded" and len(statuses) == len(set(statuses))
        assert events[-1][0] == "end" and events[-1][1]["id"] == run["id"]

    def test_events_of_a_finished_sweep_end_at_once(self, carol: httpx.Client, vdp: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [1.0]})
        wait(carol, sweep["id"])
        assert [name for name, _ in read_events(carol, f"/v1/sweeps/{sweep['id']}/events")] == [
            "status", "progress", "end"]

    def test_events_need_authentication_and_ownership(self, gateway: Gateway, carol: httpx.Client,
                                                      bob: httpx.Client, vdp: str) -> None:
        sweep = create(carol, vdp, method="grid", parameters={"mu": [1.0]})
        assert_problem(gateway.client(None).get(f"/v1/sweeps/{sweep['id']}/events"), 401, "unauthenticated")
        assert_problem(bob.get(f"/v1/sweeps/{sweep['id']}/events"), 404, "not_found")
        wait(carol, sweep["id"])


@pytest.fixture(scope="module")
def dave(gateway: Gateway, fmus: dict[str, Path]) -> tuple[httpx.Client, str]:
    """A user whose sweeps are all refused, with VanDerPol uploaded."""
    client = new_client(gateway, 100_000)
    return client, upload(client, fmus["VanDerPol"])


class TestInvalidSweeps:
    @pytest.mark.parametrize(("body", "code"), [
        ({"method": "grid", "parameters": {"nope": [1.0]}}, "unknown_variable"),
        ({"method": "grid", "parameters": {"der(x0)": [1.0]}}, "variable_not_settable"),
        ({"method": "grid", "parameters": {"mu": ["fast"]}}, "invalid_value"),
        ({"method": "grid", "parameters": {"mu": []}}, "invalid_sweep"),
        ({"method": "grid", "parameters": {"mu": [1.0]}, "seed": 1}, "invalid_sweep"),
        ({"method": "lhs", "parameters": {"mu": {"min": 2, "max": 1}}, "samples": 3}, "invalid_parameter_range"),
        ({"method": "lhs", "parameters": {"mu": {"min": 0, "max": 1}}}, "invalid_sweep"),
        ({"method": "lhs", "parameters": {"mu": [1.0]}, "samples": 2}, "invalid_sweep"),
        ({"method": "sobol", "parameters": {"mu": {"min": 0, "max": 1}}, "samples": 10_001}, "too_many_samples"),
        ({"method": "grid", "parameters": {"mu": list(range(101)), "x0": list(range(100))}}, "too_many_samples"),
        ({"method": "list", "parameters": [{"mu": 1.0}, {"x0": 1.0}]}, "invalid_sweep"),
        ({"method": "list", "parameters": []}, "invalid_sweep"),
        ({"method": "grid", "parameters": {"mu": [1.0]}, "stop_time": -1}, "invalid_time_range"),
        ({"method": "halton", "parameters": {"mu": [1.0]}}, "validation_error"),
    ])
    def test_invalid_space_is_422_and_creates_nothing(self, dave: tuple[httpx.Client, str],
                                                      body: dict[str, Any], code: str) -> None:
        client, fmu_id = dave
        assert_problem(client.post(f"/v1/fmus/{fmu_id}/sweeps", json={**BASE, **body}), 422, code)
        assert client.get("/v1/sweeps").json()["data"] == []
        assert client.get("/v1/runs").json()["data"] == []

    def test_integer_parameter_needs_whole_bounds(self, carol: httpx.Client, hostile: str) -> None:
        response = carol.post(f"/v1/fmus/{hostile}/sweeps", json={
            **BASE, "method": "random", "samples": 2, "parameters": {"mode": {"min": 0.5, "max": 2}}})
        assert_problem(response, 422, "invalid_value")

    def test_sweep_of_someone_elses_fmu_is_404(self, bob: httpx.Client, vdp: str) -> None:
        response = bob.post(f"/v1/fmus/{vdp}/sweeps", json={**BASE, "method": "grid", "parameters": {"mu": [1.0]}})
        assert_problem(response, 404, "not_found")
