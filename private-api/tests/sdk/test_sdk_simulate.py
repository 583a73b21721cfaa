"""``client.simulate`` and ``client.runs`` give the same table as ``fmpy.simulate_fmu`` on the same
FMU and settings, as NumPy and as pandas."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import fmpy
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fmu_gateway_sdk import Fmu, FMUGatewayClient, Run, SimulationResult
from fmu_gateway_sdk.resources import runs as runs_resource
from gateway_process import Gateway

try:
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is in requirements-dev.txt
    pd = None


def assert_same_as_fmpy(result: SimulationResult, reference: np.ndarray, rtol: float = 1e-9) -> None:
    table = result.to_numpy()
    assert table.dtype == reference.dtype
    assert len(table) == len(reference)
    for name in reference.dtype.names:
        np.testing.assert_allclose(table[name], reference[name], rtol=rtol, atol=0, err_msg=name)
    if pd is None:
        print("pandas is not installed: to_pandas() not compared")
        return
    pd.testing.assert_frame_equal(result.to_pandas(), pd.DataFrame(reference), check_exact=False, rtol=rtol)


@pytest.fixture(scope="module")
def vanderpol(client: FMUGatewayClient, model_files: dict[str, Path]) -> Fmu:
    return client.fmus.upload(model_files["VanDerPol"])


FEEDTHROUGH_INPUT = {"time": [0.0, 0.5, 1.0], "real_in": [1.0, 2.0, 3.0], "int_in": [1, 2, 3],
                     "bool_in": [False, True, False]}


def feedthrough_structured() -> np.ndarray:
    dtype = [("time", float), ("real_in", float), ("int_in", np.int32), ("bool_in", bool)]
    return np.array(list(zip(*FEEDTHROUGH_INPUT.values(), strict=True)), dtype=dtype)


class TestSimulate:
    def test_path_with_start_values_equals_fmpy(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        path = model_files["VanDerPol"]
        result = client.simulate(path, start_values={"mu": 2.5}, stop_time=5, output_interval=0.01)
        reference = fmpy.simulate_fmu(str(path), start_values={"mu": 2.5}, stop_time=5, output_interval=0.01,
                                      fmi_type="CoSimulation")
        assert_same_as_fmpy(result, reference)

    def test_an_fmu_id_or_object_works_like_the_path(self, client: FMUGatewayClient, vanderpol: Fmu) -> None:
        by_object = client.simulate(vanderpol, start_values={"mu": 0.5}, stop_time=1)
        by_id = client.simulate(vanderpol.id, start_values={"mu": 0.5}, stop_time=1)
        assert by_object.run.fmu_id == by_id.run.fmu_id == vanderpol.id
        np.testing.assert_array_equal(by_object.to_numpy(), by_id.to_numpy())

    def test_model_exchange_with_solver_settings_and_chosen_outputs(self, client: FMUGatewayClient, vanderpol: Fmu,
                                                                    model_files: dict[str, Path]) -> None:
        result = client.simulate(vanderpol, stop_time=3, fmi_type="ModelExchange", solver="CVode",
                                 relative_tolerance=1e-6, output=["x0"])
        assert result.columns == ["time", "x0"]
        reference = fmpy.simulate_fmu(str(model_files["VanDerPol"]), stop_time=3, fmi_type="ModelExchange",
                                      solver="CVode", relative_tolerance=1e-6, output=["x0"])
        assert_same_as_fmpy(result, reference)

    def test_fmi3_model(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        path = model_files["BouncingBall3"]
        result = client.simulate(path, stop_time=3, output_interval=0.01)
        assert_same_as_fmpy(result, fmpy.simulate_fmu(str(path), stop_time=3, output_interval=0.01))


INPUT_FORMS = {
    "dict of lists": lambda: FEEDTHROUGH_INPUT,
    "dict of numpy arrays": lambda: {k: np.asarray(v) for k, v in FEEDTHROUGH_INPUT.items()},
    "structured array": feedthrough_structured,
    "DataFrame": lambda: pd.DataFrame(FEEDTHROUGH_INPUT),
    "DataFrame indexed by time": lambda: pd.DataFrame(FEEDTHROUGH_INPUT).set_index("time"),
}


class TestInput:
    @pytest.mark.parametrize("form", list(INPUT_FORMS))
    def test_input_table_drives_the_model_like_fmpy(self, client: FMUGatewayClient, model_files: dict[str, Path],
                                                    form: str) -> None:
        if form.startswith("DataFrame") and pd is None:
            pytest.skip("pandas is not installed")
        path = model_files["Feedthrough"]
        result = client.simulate(path, stop_time=1, output_interval=0.1, start_values={"gain": 2.0},
                                 input=INPUT_FORMS[form]())
        reference = fmpy.simulate_fmu(str(path), stop_time=1, output_interval=0.1, start_values={"gain": 2.0},
                                      input=feedthrough_structured())
        assert_same_as_fmpy(result, reference)
        assert result.to_numpy()["real_out"].max() > 2.0


THIRD_PARTY_CASES = [
    ("om_fmi2", {"fmi_type": "ModelExchange", "stop_time": 1, "start_values": {"m1": 2.0, "k2": 3.0}}),
    ("om_fmi2", {"fmi_type": "CoSimulation", "stop_time": 1, "output_interval": 0.01, "start_values": {"m1": 2.0}}),
    ("fmi3", {"fmi_type": "CoSimulation", "stop_time": 5, "output_interval": 0.01, "start_values": {"mu": 2.0}}),
]


class TestThirdPartyFmus:
    @pytest.mark.parametrize(("name", "settings"), THIRD_PARTY_CASES)
    def test_third_party_fmu_equals_fmpy(self, client: FMUGatewayClient, thirdparty: dict[str, Path], name: str,
                                         settings: dict[str, Any]) -> None:
        if name not in thirdparty:
            pytest.skip(f"{name} was not downloaded")
        result = client.simulate(thirdparty[name], **settings)
        assert_same_as_fmpy(result, fmpy.simulate_fmu(str(thirdparty[name]), **settings))


class TestSimulationResult:
    def test_result_describes_its_run(self, client: FMUGatewayClient, vanderpol: Fmu) -> None:
        result = client.simulate(vanderpol, stop_time=2, output_interval=0.5)
        assert isinstance(result.run, Run) and result.run.succeeded
        assert result.run.timings.run_s is not None and result.run.timings.run_s > 0
        assert result.columns == ["time", "x0", "x1"]
        assert len(result) == 5
        table = result.to_arrow()
        assert isinstance(table, pa.Table) and table.column_names == result.columns
        assert "rows=5" in repr(result)

    def test_simulate_is_one_round_trip_and_reads_the_run_when_asked(self, client: FMUGatewayClient,
                                                                      vanderpol: Fmu) -> None:
        sent: list[str] = []
        http = client._api._http
        http.event_hooks["request"].append(lambda request: sent.append(f"{request.method} {request.url.path}"))
        try:
            result = client.simulate(vanderpol, stop_time=2, output_interval=0.5, cache=False)
            assert sent == [f"POST /v1/fmus/{vanderpol.id}/runs"], sent
            assert len(result.to_numpy()) == 5 and len(sent) == 1
            run = result.run  # its record: one read, the first time only
            assert run.succeeded and run.result is not None and run.result.rows == 5 and result.run is run
            assert len(sent) == 2 and sent[-1] == f"GET /v1/runs/{run.id}" and result.run_id == run.id
        finally:
            http.event_hooks["request"].pop()

    def test_a_run_still_going_when_the_submission_answers_is_waited_for_as_before(
            self, client: FMUGatewayClient, vanderpol: Fmu, monkeypatch: pytest.MonkeyPatch) -> None:
        """A submission answered before its run ends (here: told not to wait) is answered with the
        run; simulate then waits for the result with GET .../result?wait=, and gets the same values."""
        monkeypatch.setitem(runs_resource.RESULT_PARAMS, "wait", 0)
        sent: list[str] = []
        http = client._api._http
        http.event_hooks["request"].append(lambda request: sent.append(f"{request.method} {request.url.path}"))
        try:
            result = client.simulate(vanderpol, stop_time=2, output_interval=0.5, cache=False)
            run = result.run
        finally:
            http.event_hooks["request"].pop()
        assert sent == [f"POST /v1/fmus/{vanderpol.id}/runs", f"GET /v1/runs/{run.id}/result",
                        f"GET /v1/runs/{run.id}"], sent
        assert run.succeeded and len(result.to_numpy()) == 5

    def test_plot_saves_one_panel_per_variable(self, client: FMUGatewayClient, vanderpol: Fmu,
                                               tmp_path: Path) -> None:
        pytest.importorskip("matplotlib", reason="matplotlib (the [plot] extra) is not installed")
        result = client.simulate(vanderpol, stop_time=2)
        figure = result.plot(filename=tmp_path / "vdp.png")
        assert len(figure.axes) == 2
        assert (tmp_path / "vdp.png").read_bytes().startswith(b"\x89PNG")
        assert len(result.plot(["x1"]).axes) == 1
        with pytest.raises(KeyError, match="nope"):
            result.plot(["nope"])

    def test_missing_extra_is_named(self, client: FMUGatewayClient, vanderpol: Fmu,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
        result = client.simulate(vanderpol, stop_time=1)
        monkeypatch.setitem(sys.modules, "pandas", None)
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(ImportError, match=r"fmu-gateway-sdk\[pandas\]"):
            result.to_pandas()
        with pytest.raises(ImportError, match=r"fmu-gateway-sdk\[plot\]"):
            result.plot()


class TestRuns:
    def test_create_wait_result_step_by_step(self, client: FMUGatewayClient, vanderpol: Fmu) -> None:
        run = client.runs.create(vanderpol, start_values={"mu": 1.0}, stop_time=2)
        assert run.status in ("queued", "running", "succeeded")
        finished = client.runs.wait(run)
        assert finished.id == run.id and finished.succeeded and finished.finished
        assert client.runs.get(run.id) == finished
        result = client.runs.result(run.id)
        assert result.run.id == run.id and len(result) == finished.result.rows  # type: ignore[union-attr]

    def test_downloads_in_every_format_carry_the_same_table(self, client: FMUGatewayClient, vanderpol: Fmu) -> None:
        result = client.simulate(vanderpol, stop_time=1)
        arrow = result.to_arrow()
        parquet = pq.read_table(io.BytesIO(client.runs.download_result(result.run, format="parquet")))
        assert parquet.equals(arrow)
        csv_text = client.runs.download_result(result.run, format="csv").decode()
        assert csv_text.splitlines()[0].replace('"', "") == "time,x0,x1"
        body = json.loads(client.runs.download_result(result.run, format="json"))
        np.testing.assert_allclose(body["data"]["x0"], arrow.column("x0").to_numpy())

    def test_list_filters_by_fmu_and_status(self, gateway: Gateway, fresh_key: str,
                                            model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            vdp = client.fmus.upload(model_files["VanDerPol"])
            ft = client.fmus.upload(model_files["Feedthrough"])
            runs = [client.simulate(vdp, stop_time=0.1).run for _ in range(3)]
            client.simulate(ft, stop_time=0.1)
            listed = list(client.runs.list(fmu=vdp, page_size=2))
            assert [r.id for r in listed] == [r.id for r in reversed(runs)]
            assert len(list(client.runs.list(status="succeeded"))) == 4
            assert list(client.runs.list(status="failed")) == []

    def test_log_is_text(self, client: FMUGatewayClient, vanderpol: Fmu) -> None:
        result = client.simulate(vanderpol, stop_time=0.1)
        assert isinstance(client.runs.log(result.run), str)
