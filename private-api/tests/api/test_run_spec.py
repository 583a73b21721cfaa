"""The run request end to end: every field of the spec reaches FMPy (each result equals
``fmpy.simulate_fmu`` given the same arguments here), ``outputs`` survives as a deprecated alias,
the 422s name their field, and a spec stored by the release before still runs."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import fmpy
import httpx
import numpy as np
import pyarrow as pa
import pytest
from fmus.variants import model_description, rewritten
from gateway_process import Gateway, running_gateway
from problems import assert_problem

from app.config import Settings
from app.main import create_app
from app.runs.spec import MAX_STEPS
from app.sandbox.runner import SIMULATE_FMU_ARGUMENTS, RunSpec


def run(client: httpx.Client, fmu_id: object, **spec: Any) -> dict[str, Any]:
    response = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json=spec)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] in ("succeeded", "failed", "timed_out"), body
    return body


def result(client: httpx.Client, run_id: str) -> pa.Table:
    response = client.get(f"/v1/runs/{run_id}/result")
    assert response.status_code == 200, response.text
    return pa.ipc.open_file(pa.BufferReader(response.content)).read_all()


def assert_same_as_fmpy(table: pa.Table, reference: np.ndarray) -> None:
    """Bit for bit: the same FMPy, the same arguments, the same model binary."""
    assert table.column_names == list(reference.dtype.names)
    for name in table.column_names:
        np.testing.assert_array_equal(table.column(name).to_numpy(), reference[name], err_msg=name)


def post(client: httpx.Client, fmu_id: object, **spec: Any) -> httpx.Response:
    return client.post(f"/v1/fmus/{fmu_id}/runs", json=spec)


@pytest.fixture(scope="module")
def undefined_unit(alice: httpx.Client, fmus: dict[str, Path]) -> tuple[str, Path]:
    """VanDerPol whose parameter mu names a unit its model description never defines: the gateway
    keeps it, FMPy's validation refuses it, the model itself runs as ever. (id, archive path)"""
    xml = model_description(fmus["VanDerPol"]).replace(b'<Real start="1"/>', b'<Real start="1" unit="furlong"/>', 1)
    path = fmus["VanDerPol"].with_name("VanDerPolUndefinedUnit.fmu")
    path.write_bytes(rewritten(fmus["VanDerPol"], xml=xml))
    response = alice.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    return response.json()["id"], path


class TestEveryFieldReachesFmpy:
    def test_euler_step_sizes_give_fmpys_two_results(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                     fmus: dict[str, Path]) -> None:
        spec = {"fmi_type": "ModelExchange", "solver": "Euler", "stop_time": 2}
        tables = []
        for step_size in (0.01, 0.001):
            body = run(alice, uploaded["VanDerPol"]["id"], step_size=step_size, **spec)
            assert body["status"] == "succeeded" and body["spec"]["step_size"] == step_size, body
            table = result(alice, body["id"])
            assert_same_as_fmpy(table, fmpy.simulate_fmu(str(fmus["VanDerPol"]), step_size=step_size, **spec))
            tables.append(table)
        coarse, fine = tables
        assert coarse.column("x0")[-1].as_py() != fine.column("x0")[-1].as_py()

    def test_relative_tolerance_changes_a_cvode_result(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                       fmus: dict[str, Path]) -> None:
        spec = {"fmi_type": "ModelExchange", "solver": "CVode", "stop_time": 10, "output_interval": 0.1}
        ends = []
        for tolerance in (1e-2, 1e-8):
            body = run(alice, uploaded["VanDerPol"]["id"], relative_tolerance=tolerance, **spec)
            table = result(alice, body["id"])
            assert_same_as_fmpy(table, fmpy.simulate_fmu(str(fmus["VanDerPol"]), relative_tolerance=tolerance,
                                                         **spec))
            ends.append(table.column("x1")[-1].as_py())
        assert abs(ends[0] - ends[1]) > 1e-3

    def test_output_selects_the_recorded_columns(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                 fmus: dict[str, Path]) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], stop_time=1, output=["x1", "mu"])
        assert body["spec"]["output"] == ["x1", "mu"] and "outputs" not in body["spec"]
        table = result(alice, body["id"])
        assert table.column_names == ["time", "x1", "mu"]
        assert_same_as_fmpy(table, fmpy.simulate_fmu(str(fmus["VanDerPol"]), stop_time=1, output=["x1", "mu"]))

    def test_time_range_and_output_interval(self, alice: httpx.Client, uploaded: dict[str, Any],
                                            fmus: dict[str, Path]) -> None:
        spec = {"start_time": 1, "stop_time": 4, "output_interval": 0.25, "start_values": {"mu": 2.0}}
        table = result(alice, run(alice, uploaded["VanDerPol"]["id"], **spec)["id"])
        assert table.column("time").to_pylist() == [1 + 0.25 * i for i in range(13)]
        assert_same_as_fmpy(table, fmpy.simulate_fmu(str(fmus["VanDerPol"]), **spec))

    def test_validate_false_runs_what_fmpys_validation_refuses(self, alice: httpx.Client,
                                                               undefined_unit: tuple[str, Path]) -> None:
        fmu_id, path = undefined_unit
        refused = run(alice, fmu_id, stop_time=1)
        assert (refused["status"], refused["error"]["code"]) == ("failed", "model_error")
        assert 'The unit "furlong" of variable "mu"' in refused["error"]["message"]
        body = run(alice, fmu_id, stop_time=1, validate=False)
        assert body["status"] == "succeeded" and body["spec"]["validate"] is False, body
        assert_same_as_fmpy(result(alice, body["id"]), fmpy.simulate_fmu(str(path), stop_time=1, validate=False))

    def test_debug_logging_puts_the_fmus_messages_in_the_runs_log(self, alice: httpx.Client,
                                                                  uploaded: dict[str, Any]) -> None:
        logs = {}
        for on in (False, True):
            body = run(alice, uploaded["VanDerPol"]["id"], stop_time=0.1, debug_logging=on)
            assert body["status"] == "succeeded" and body["spec"]["debug_logging"] is on, body
            logs[on] = alice.get(f"/v1/runs/{body['id']}/log").text
        assert "Instantiated VanDerPol" not in logs[False]
        assert "[OK] logAll: Instantiated VanDerPol." in logs[True]

    def test_a_sweeps_base_spec_takes_the_same_fields(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                      fmus: dict[str, Path]) -> None:
        spec = {"fmi_type": "ModelExchange", "solver": "Euler", "step_size": 0.01, "stop_time": 1,
                "output": ["x0"], "validate": False, "debug_logging": True}
        response = alice.post(f"/v1/fmus/{uploaded['VanDerPol']['id']}/sweeps",
                              json={"method": "grid", "parameters": {"mu": [0.5, 2.0]}, **spec})
        assert response.status_code == 202, response.text
        sweep = response.json()
        assert {k: sweep["spec"][k] for k in spec} == spec
        deadline = time.monotonic() + 120
        while (sweep := alice.get(f"/v1/sweeps/{sweep['id']}").json())["status"] != "finished":
            assert time.monotonic() < deadline, sweep
            time.sleep(0.2)
        children = alice.get(f"/v1/sweeps/{sweep['id']}/runs").json()["data"]
        assert len(children) == 2
        for child in children:
            assert child["status"] == "succeeded", child
            mu = child["parameters"]["mu"]
            assert_same_as_fmpy(result(alice, child["id"]),
                                fmpy.simulate_fmu(str(fmus["VanDerPol"]), start_values={"mu": mu}, **spec))
        # Children that share one instance (reset() between them) share its instantiation message.
        logs = [alice.get(f"/v1/runs/{child['id']}/log").text for child in children]
        assert any("[OK] logAll: Instantiated VanDerPol." in log for log in logs), logs


class TestDeprecatedOutputs:
    def test_outputs_still_selects_the_columns_and_is_stored_as_output(self, alice: httpx.Client,
                                                                       uploaded: dict[str, Any]) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], stop_time=1, outputs=["x0"])
        assert body["spec"]["output"] == ["x0"] and "outputs" not in body["spec"]
        assert result(alice, body["id"]).column_names == ["time", "x0"]

    def test_output_and_outputs_together_is_422_conflicting_fields(self, alice: httpx.Client,
                                                                   uploaded: dict[str, Any]) -> None:
        body = assert_problem(post(alice, uploaded["VanDerPol"]["id"], output=["x0"], outputs=["x0"]),
                              422, "conflicting_fields")
        assert body["field"] == "outputs" and "deprecated" in str(body["detail"])

    def test_an_unknown_name_in_outputs_names_that_field(self, alice: httpx.Client, uploaded: dict[str, Any]) -> None:
        body = assert_problem(post(alice, uploaded["VanDerPol"]["id"], outputs=["ghost"]), 422, "unknown_variable")
        assert (body["field"], body["variable"]) == ("outputs", "ghost")

    def test_the_contract_marks_outputs_deprecated(self) -> None:
        schema = create_app(Settings()).openapi()["components"]["schemas"]
        for model in ("RunCreate", "SweepCreate"):
            fields = schema[model]["properties"]
            assert fields["outputs"]["deprecated"] is True
            assert "deprecated" not in fields["output"]
            assert {"step_size", "validate", "debug_logging"} <= set(fields)


class TestSpecValidation:
    @pytest.mark.parametrize(("spec", "field"), [
        ({"fmi_type": "CoSimulation", "step_size": 0.01}, "step_size"),
        ({"fmi_type": "ModelExchange", "step_size": 1 / MAX_STEPS, "stop_time": 2}, "step_size"),
        ({"fmi_type": "ModelExchange", "solver": "Euler", "step_size": 0.03, "output_interval": 0.1}, "step_size"),
        ({"output": ["x0", "ghost"]}, "output"),
    ], ids=["co-simulation", "too-many-steps", "interval-not-a-multiple", "unknown-output"])
    def test_a_spec_fmpy_would_refuse_is_422_naming_the_field(self, alice: httpx.Client, uploaded: dict[str, Any],
                                                              spec: dict[str, Any], field: str) -> None:
        response = post(alice, uploaded["VanDerPol"]["id"], **spec)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] in ("invalid_run_spec", "unknown_variable") and body["field"] == field, body
        assert field in str(body["detail"])

    def test_euler_with_an_interval_that_is_a_multiple_of_the_step_runs(self, alice: httpx.Client,
                                                                        uploaded: dict[str, Any]) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], fmi_type="ModelExchange", solver="Euler", step_size=0.025,
                   output_interval=0.1, stop_time=1)
        assert body["status"] == "succeeded", body

    @pytest.mark.parametrize("spec", [{"step_size": 0}, {"step_size": -0.1}, {"validate": "maybe"},
                                      {"debug_logging": [1]}, {"validate_": False}])
    def test_a_malformed_field_is_422(self, alice: httpx.Client, uploaded: dict[str, Any],
                                      spec: dict[str, Any]) -> None:
        assert_problem(post(alice, uploaded["VanDerPol"]["id"], **spec), 422, "validation_error")


class TestStoredSpec:
    def test_the_spec_of_a_run_is_the_versioned_run_spec(self, alice: httpx.Client,
                                                         uploaded: dict[str, Any]) -> None:
        body = run(alice, uploaded["VanDerPol"]["id"], stop_time=1)
        assert body["spec"]["version"] == 2
        assert set(body["spec"]) == {"version", *SIMULATE_FMU_ARGUMENTS, "input_types", "timeout_s"}
        assert RunSpec.from_wire(body["spec"]).to_wire() == body["spec"]
        assert (body["spec"]["validate"], body["spec"]["debug_logging"], body["spec"]["step_size"]) == (
            True, False, None)

    def test_a_run_queued_by_the_release_before_runs_after_the_upgrade(self, fmus: dict[str, Path]) -> None:
        """A run queued with the spec the release before stored (no version, "outputs") is claimed
        by this release's worker: it runs with what it asked for, and reads back in today's form."""
        with running_gateway("spec-upgrade", FMU_GATEWAY_WORKERS="1") as gateway:
            client = gateway.client(gateway.create_user(credits=100))
            hostile = upload(client, fmus["Hostile"])
            vanderpol = upload(client, fmus["VanDerPol"])
            blocker = post(client, hostile, start_values={"mode": 4}, timeout_s=60).json()["id"]  # the one worker
            queued = post(client, vanderpol, stop_time=1)
            assert queued.status_code == 202 and queued.json()["status"] == "queued", queued.text
            run_id = queued.json()["id"]
            old = {"fmi_type": "ModelExchange", "start_time": 0.0, "stop_time": 3.0, "output_interval": 0.05,
                   "solver": "CVode", "relative_tolerance": 1e-6, "start_values": {"mu": 1.5}, "input": None,
                   "input_types": {}, "outputs": ["x1"], "timeout_s": 30.0}
            store_spec(gateway, run_id, old)
            assert client.post(f"/v1/runs/{blocker}/cancel").status_code == 200
            body = client.get(f"/v1/runs/{run_id}", params={"wait": 60}).json()
            assert body["status"] == "succeeded", body
            assert body["spec"]["version"] == 2 and body["spec"]["output"] == ["x1"] and "outputs" not in body["spec"]
            reference = fmpy.simulate_fmu(str(fmus["VanDerPol"]), fmi_type="ModelExchange", stop_time=3.0,
                                          output_interval=0.05, relative_tolerance=1e-6, start_values={"mu": 1.5},
                                          output=["x1"])
            assert_same_as_fmpy(result(client, run_id), reference)


def upload(client: httpx.Client, path: Path) -> str:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    fmu_id: str = response.json()["id"]
    return fmu_id


def store_spec(gateway: Gateway, run_id: str, spec: dict[str, Any]) -> None:
    """Write ``spec`` into a queued run's row, as an earlier release would have stored it."""
    with contextlib.closing(sqlite3.connect(gateway.var_dir / "fmu_gateway.db", timeout=30)) as db, db:
        changed = db.execute("UPDATE runs SET spec = ? WHERE id = ? AND status = 'queued'",
                             (json.dumps(spec), run_id)).rowcount
    assert changed == 1
