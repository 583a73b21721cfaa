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
from gateway_process import Gateway
from problems import assert_problem

from app.runs import result_formats


def run(client: httpx.Client, fmu_id: object, wait: float = 60, **spec: Any) -> dict[str, Any]:
    response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": wait}, json=spec)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def result_table(client: httpx.Client, run_id: str, fmt: str = "arrow") -> pa.Table:
    response = client.get(f"/v1/runs/{run_id}/result", params={"format": fmt})
    assert response.status_code == 200, response.text
    if fmt == "arrow":
        return pa.ipc.open_file(pa.BufferReader(response.content)).read_all()
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(response.content))
    if fmt == "csv":
        return pa_csv.read_csv(io.BytesIO(response.content))
    body = response.json()
    return pa.table(body["data"])


def assert_same_as_fmpy(table: pa.Table, reference: np.ndarray, rtol: float = 1e-9) -> None:
    assert table.num_rows == len(reference)
    for name in reference.dtype.names:
        np.testing.assert_allclose(table.column(name).to_numpy().astype(float),
                                   reference[name].astype(float), rtol=rtol, atol=0)


class TestRunResults:
    def test_cosimulation_run_matches_fmpy(self, alice: httpx.Client, uploaded: dict[str, Any],
                                           fmus: dict[str, Path]) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], stop_time=5, output_interval=0.01,
                   start_values={"mu": 2.5})
        assert body["status"] == "succeeded", body
        assert body["spec"]["fmi_type"] == "CoSimulation"
        reference = fmpy.simulate_fmu(str(fmus["VanDerPol"]), stop_time=5, output_interval=0.01,
                                      start_values={"mu": 2.5}, fmi_type="CoSimulation")
        assert_same_as_fmpy(result_table(alice, body["id"]), reference)
        assert body["result"]["rows"] == len(reference)
        assert body["timings"]["run_s"] > 0 and body["started_at"] and body["finished_at"]

    def test_model_exchange_run_with_cvode_matches_fmpy(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                        fmus: dict[str, Path]) -> None:
        spec = {"stop_time": 3, "fmi_type": "ModelExchange", "solver": "CVode", "relative_tolerance": 1e-6,
                "outputs": ["x0", "x1"]}
        body = run(alice, uploaded["VanDerPol"]["id"], **spec)
        assert body["status"] == "succeeded", body
        reference = fmpy.simulate_fmu(str(fmus["VanDerPol"]), stop_time=3, fmi_type="ModelExchange",
                                      solver="CVode", relative_tolerance=1e-6, output=["x0", "x1"])
        table = result_table(alice, body["id"])
        assert table.column_names == ["time", "x0", "x1"]
        assert_same_as_fmpy(table, reference)

    def test_start_values_change_the_result(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        slow = result_table(alice, run(alice, uploaded["VanDerPol"]["id"], stop_time=2,
                                       start_values={"mu": 0.1})["id"])
        fast = result_table(alice, run(alice, uploaded["VanDerPol"]["id"], stop_time=2,
                                       start_values={"mu": 5.0})["id"])
        assert not np.allclose(slow.column("x1").to_numpy(), fast.column("x1").to_numpy())

    def test_input_table_drives_the_model(self, alice: httpx.Client, uploaded: dict[str, Any],
                                          fmus: dict[str, Path]) -> None:
        signal = {"time": [0.0, 0.5, 1.0], "real_in": [1.0, 2.0, 3.0], "int_in": [1, 2, 3],
                  "bool_in": [False, True, False]}
        body = run(alice, uploaded["Feedthrough"]["id"], stop_time=1, output_interval=0.1,
                   start_values={"gain": 2.0}, input=signal)
        assert body["status"] == "succeeded", body
        dtype = [("time", float), ("real_in", float), ("int_in", np.int32), ("bool_in", bool)]
        structured = np.array(list(zip(*signal.values(), strict=True)), dtype=dtype)
        reference = fmpy.simulate_fmu(str(fmus["Feedthrough"]), stop_time=1, output_interval=0.1,
                                      start_values={"gain": 2.0}, input=structured)
        table = result_table(alice, body["id"])
        assert_same_as_fmpy(table, reference)
        assert table.column("real_out").to_numpy().max() > 2.0

    def test_fmi3_model_runs(self, alice: httpx.Client, uploaded: dict[str, Any], fmus: dict[str, Path]) -> None:
        body = run(alice, uploaded["BouncingBall3"]["id"], stop_time=3, output_interval=0.01)
        assert body["status"] == "succeeded", body
        reference = fmpy.simulate_fmu(str(fmus["BouncingBall3"]), stop_time=3, output_interval=0.01)
        assert_same_as_fmpy(result_table(alice, body["id"]), reference)

    @pytest.mark.parametrize("fmt", ["parquet", "csv", "json"])
    def test_result_formats_carry_the_same_table(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                 fmt: str) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], stop_time=1)
        arrow = result_table(alice, body["id"])
        other = result_table(alice, body["id"], fmt)
        assert other.column_names == arrow.column_names
        for name in arrow.column_names:
            np.testing.assert_allclose(other.column(name).to_numpy(), arrow.column(name).to_numpy(), rtol=1e-12)

    def test_run_without_wait_is_accepted_then_finishes(self, alice: httpx.Client,
                                                        uploaded: dict[str, Any]) -> None:
        response = alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/runs", json={"stop_time": 1, "cache": False})
        assert response.status_code == 202
        run_id = response.json()["id"]
        assert response.headers["location"] == f"/v1/runs/{run_id}"
        assert response.json()["status"] in ("queued", "running", "succeeded")
        finished = alice.get(f"/v1/runs/{run_id}", params={"wait": 60})
        assert finished.status_code == 200
        assert finished.json()["status"] == "succeeded"
        assert run_id in {r["id"] for r in alice.get("/v1/runs", params={"limit": 100}).json()["data"]}

    def test_waited_answer_is_the_stored_run(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        # ?wait= answers from the worker's own outcome: it must be exactly what a later read says.
        waited = run(alice, uploaded["VanDerPol"]["id"], stop_time=1, cache=False)
        assert waited["status"] == "succeeded" and waited["credits_charged"] >= 1
        assert waited["finished_at"] is not None and waited["result"]["rows"] > 0
        assert alice.get(f"/v1/runs/{waited['id']}").json() == waited

    def test_result_of_unfinished_run_is_409(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        response = alice.post(f"/v1/fmus/{uploaded['Hostile']['id']}/runs",
                              json={"start_values": {"mode": 4}, "timeout_s": 2, "stop_time": 1})
        run_id = response.json()["id"]
        assert_problem(alice.get(f"/v1/runs/{run_id}/result"), 409, "run_not_finished")
        started = time.monotonic()
        assert_problem(alice.get(f"/v1/runs/{run_id}/result", params={"wait": 0.5}), 409, "run_not_finished")
        assert time.monotonic() - started >= 0.5  # it waited
        # Waiting for the result of a run that ends without one: the reason, once it has ended.
        ended = alice.get(f"/v1/runs/{run_id}/result", params={"wait": 30})
        assert_problem(ended, 409, "result_unavailable")
        assert ended.json()["run_status"] == "timed_out"

    def test_result_with_wait_comes_once_the_run_finishes(self, alice: httpx.Client,
                                                          uploaded: dict[str, Any]) -> None:
        response = alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/runs", json={"stop_time": 1, "cache": False})
        assert response.status_code == 202
        table = alice.get(f"/v1/runs/{response.json()['id']}/result", params={"wait": 30})
        assert table.status_code == 200, table.text
        rows = pa.ipc.open_file(pa.BufferReader(table.content)).read_all().num_rows
        assert rows == alice.get(f"/v1/runs/{response.json()['id']}").json()["result"]["rows"] > 0

    @pytest.mark.parametrize("fmt", ["arrow", "csv", "json"])
    def test_a_submission_with_result_is_answered_with_the_result_it_stored(
            self, alice: httpx.Client, uploaded: dict[str, Any], fmt: str) -> None:
        """?wait=&result=: submission, wait and values in one round trip, the same bytes as the
        run's own result route sends; the run at Location."""
        response = alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/runs", params={"wait": 60, "result": fmt},
                              json={"stop_time": 1, "cache": False})
        assert response.status_code == 200, response.text
        run_id = response.headers["location"].rsplit("/", 1)[-1]
        assert response.headers["content-type"].startswith(result_formats.FORMATS[fmt].media_type.split(";")[0])
        assert f'filename="{run_id}.' in response.headers["content-disposition"]
        assert response.content == alice.get(f"/v1/runs/{run_id}/result", params={"format": fmt}).content
        assert alice.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"

    def test_a_submission_with_result_whose_run_has_none_is_answered_with_the_run(
            self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        """Not finished within wait (202), or finished without a result (200): the run, as without it."""
        fmu = uploaded["Hostile"]["id"]
        going = alice.post(f"/v1/fmus/{fmu}/runs", params={"wait": 0.2, "result": "arrow"},
                           json={"start_values": {"mode": 4}, "timeout_s": 2, "stop_time": 1})
        assert going.status_code == 202 and going.json()["object"] == "run", going.text
        ended = alice.post(f"/v1/fmus/{fmu}/runs", params={"wait": 30, "result": "arrow"},
                           json={"start_values": {"mode": 4}, "timeout_s": 1, "stop_time": 1})
        assert ended.status_code == 200 and ended.json()["status"] == "timed_out", ended.text
        assert_problem(alice.post(f"/v1/fmus/{fmu}/runs", params={"result": "xml"}, json={}), 422, "validation_error")

    def test_someone_elses_run_is_404(self, alice: httpx.Client, bob: httpx.Client,
                                      uploaded: dict[str, Any]) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], stop_time=0.1)
        for path in ("", "/result", "/log"):
            assert_problem(bob.get(f"/v1/runs/{body['id']}{path}"), 404, "not_found")
        assert body["id"] not in {r["id"] for r in bob.get("/v1/runs").json()["data"]}


class TestCancel:
    def test_cancelling_a_running_run_kills_its_sandbox(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = gateway.client(gateway.create_user(credits=50))
        fmu = client.post("/v1/fmus", files={"file": ("h.fmu", fmus["Hostile"].read_bytes())}).json()
        run_id = client.post(f"/v1/fmus/{fmu['id']}/runs",
                             json={"start_values": {"mode": 4}, "timeout_s": 60}).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/runs/{run_id}").json()["status"] != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let it reach the blocking sleep inside the model
        started = time.monotonic()
        cancelled = client.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        time.sleep(1)
        assert client.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
        assert time.monotonic() - started < 10
        again = client.post(f"/v1/runs/{run_id}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        # It ran in a sandbox: charged once its worker measured it, unlike a run cancelled while queued.
        deadline = time.monotonic() + 30
        while (charged := client.get(f"/v1/runs/{run_id}").json()["credits_charged"]) == 0 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert charged >= 1
        assert client.get("/v1/billing/balance").json()["credits"] == 50 - charged

    def test_cancelling_a_queued_run_gives_its_credits_back(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client = gateway.client(gateway.create_user(credits=50))
        fmu = client.post("/v1/fmus", files={"file": ("h.fmu", fmus["Hostile"].read_bytes())}).json()
        busy = {"start_values": {"mode": 4}, "timeout_s": 5}
        for _ in range(2):  # the gateway has two workers: both are now busy
            client.post(f"/v1/fmus/{fmu['id']}/runs", json=busy)
        before = client.get("/v1/billing/balance").json()["credits"]
        queued = client.post(f"/v1/fmus/{fmu['id']}/runs", json={"stop_time": 1}).json()
        assert client.get("/v1/billing/balance").json()["credits"] == before - queued["credits_held"]
        cancelled = client.post(f"/v1/runs/{queued['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["credits_charged"] == 0
        assert cancelled["started_at"] is None
        assert client.get("/v1/billing/balance").json()["credits"] == before

    def test_finished_run_cannot_be_cancelled(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        finished = run(alice, uploaded["VanDerPol"]["id"], stop_time=0.1)
        assert_problem(alice.post(f"/v1/runs/{finished['id']}/cancel"), 409, "run_finished")

    def test_someone_elses_run_cannot_be_cancelled(self, alice: httpx.Client, bob: httpx.Client,
                                                   uploaded: dict[str, Any]) -> None:
        run_id = alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/runs", json={"stop_time": 0.1}).json()["id"]
        assert_problem(bob.post(f"/v1/runs/{run_id}/cancel"), 404, "not_found")


class TestRunValidation:
    @pytest.mark.parametrize(("spec", "code", "variable"), [
        ({"start_values": {"nope": 1.0}}, "unknown_variable", "nope"),
        ({"start_values": {"x0": "high"}}, "invalid_value", "x0"),
        ({"start_values": {"der(x0)": 1.0}}, "variable_not_settable", "der(x0)"),
        ({"outputs": ["x0", "ghost"]}, "unknown_variable", "ghost"),
        ({"start_time": 2, "stop_time": 1}, "invalid_time_range", None),
        ({"fmi_type": "CoSimulation", "solver": "Euler"}, "invalid_run_spec", None),
    ])
    def test_bad_spec_is_422_naming_the_problem(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                spec: dict[str, Any], code: str, variable: str | None) -> None:
        body = assert_problem(alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/runs", json=spec), 422, code)
        if variable is not None:
            assert body["variable"] == variable
            assert variable in str(body["detail"])

    def test_integer_parameter_rejects_a_float(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        body = assert_problem(alice.post(f"/v1/fmus/{uploaded['Hostile']['id']}/runs",
                                         json={"start_values": {"mode": 1.5}}), 422, "invalid_value")
        assert body["variable"] == "mode"

    def test_input_for_a_non_input_is_422(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        body = assert_problem(alice.post(f"/v1/fmus/{uploaded['Feedthrough']['id']}/runs",
                                         json={"input": {"time": [0, 1], "real_out": [1, 2]}}),
                              422, "variable_not_settable")
        assert body["variable"] == "real_out"

    def test_malformed_body_is_422_problem(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        assert_problem(alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/runs",
                                  json={"stop_time": "soon"}), 422, "validation_error")

    def test_unknown_field_is_422(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        assert_problem(alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/runs",
                                  json={"stoptime": 3}), 422, "validation_error")


class TestConventions:
    def test_every_response_has_a_request_id(self, gateway: Gateway) -> None:
        response = gateway.client(None).get("/healthz")
        assert response.headers["x-request-id"].startswith("req_")
        echoed = gateway.client(None).get("/healthz", headers={"X-Request-ID": "trace-42"})
        assert echoed.headers["x-request-id"] == "trace-42"

    def test_unknown_route_is_problem_json(self, alice: httpx.Client) -> None:
        assert_problem(alice.get("/v1/nothing-here"), 404, "not_found")

    def test_json_result_is_valid_json(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], stop_time=0.5)
        data = json.loads(alice.get(f"/v1/runs/{body['id']}/result", params={"format": "json"}).text)
        assert data["columns"][0] == "time" and data["rows"] == len(data["data"]["time"])
