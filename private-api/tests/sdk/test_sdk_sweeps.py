"""Sweeps through the SDK and the CLI against a real gateway: ``client.sweep`` (sync and async),
the ``client.sweeps`` resource, progress from Server-Sent Events, and ``fmu-gateway sweep``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fmu_gateway_sdk import (
    AsyncFMUGatewayClient,
    ConflictError,
    FMUGatewayClient,
    Sweep,
    SweepResult,
    ValidationError,
)
from fmu_gateway_sdk.cli import app
from gateway_process import Gateway
from scipy.stats import qmc
from sdk_support import count_requests
from typer.testing import CliRunner

SHORT = {"stop_time": 1.0, "output_interval": 0.1}


class TestClientSweep:
    def test_grid_sweep_returns_its_tables(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        result = client.sweep(model_files["VanDerPol"], parameters={"mu": [0.5, 1.5]}, progress=False, **SHORT)
        assert isinstance(result, SweepResult) and result.id.startswith("swp_")
        assert result.sweep.status == "finished" and result.counts.succeeded == 2
        assert [run.parameters for run in result.runs] == [{"mu": 0.5}, {"mu": 1.5}]
        frame = result.to_pandas()
        assert list(frame.columns) == ["sweep_index", "mu", "time", "x0", "x1"]
        assert len(frame) == 2 * 11 and sorted(frame["mu"].unique()) == [0.5, 1.5]
        summary = result.summary()
        assert list(summary["sweep_index"]) == [0, 1] and "final(x0)" in summary.columns
        assert result.failed_runs == []

    def test_sobol_sweep_samples_are_scipys(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        result = client.sweep(model_files["VanDerPol"], method="sobol", samples=4, seed=11,
                              parameters={"mu": (0.5, 2.0)}, progress=False, **SHORT)
        expected = qmc.scale(qmc.Sobol(d=1, scramble=True, rng=11).random(4), [0.5], [2.0])[:, 0]
        np.testing.assert_array_equal([run.parameters["mu"] for run in result.runs], expected)
        assert result.sweep.seed == 11

    def test_progress_bar_follows_the_event_stream(self, gateway: Gateway, client: FMUGatewayClient,
                                                   model_files: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
        fmu = client.fmus.ensure_uploaded(model_files["VanDerPol"])
        sweep = client.sweeps.create(fmu, parameters={"mu": [0.5, 1.0, 1.5]}, **SHORT)
        before = count_requests(gateway, "GET", rf"/v1/sweeps/{sweep.id}/events")
        done = client.sweeps.wait(sweep, progress=True)
        assert done.finished and done.counts.succeeded == 3
        assert count_requests(gateway, "GET", rf"/v1/sweeps/{sweep.id}/events") > before
        assert "3/3" in capsys.readouterr().err

    def test_events_end_with_the_final_sweep(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        fmu = client.fmus.ensure_uploaded(model_files["VanDerPol"])
        sweep = client.sweeps.create(fmu, parameters={"mu": [1.0]}, **SHORT)
        events = list(client.sweeps.events(sweep))
        assert events[0][0] == "status" and events[-1][0] == "end"
        assert isinstance(events[-1][1], Sweep) and events[-1][1].status == "finished"

    def test_resource_lists_gets_and_cancels(self, client: FMUGatewayClient, model_files: dict[str, Path]) -> None:
        fmu = client.fmus.ensure_uploaded(model_files["Hostile"])
        # mode 4 sleeps until its timeout: the sweep is still running when cancelled.
        sweep = client.sweeps.create(fmu, parameters=[{"mode": 4}, {"mode": 4}], method="list", stop_time=1,
                                     run_timeout=30)
        assert next(iter(client.sweeps.list())).id == sweep.id
        assert client.sweeps.get(sweep.id).total == 2
        with pytest.raises(ConflictError) as info:
            client.sweeps.download_result(sweep)
        assert info.value.code == "sweep_not_finished"
        cancelled = client.sweeps.cancel(sweep)
        assert cancelled.status == "cancelled" and cancelled.counts.cancelled == 2
        assert [run.status for run in client.sweeps.runs(sweep)] == ["cancelled", "cancelled"]

    def test_invalid_space_raises_validation_error(self, client: FMUGatewayClient,
                                                   model_files: dict[str, Path]) -> None:
        with pytest.raises(ValidationError) as info:
            client.sweep(model_files["VanDerPol"], parameters={"nope": [1.0]}, progress=False)
        assert info.value.code == "unknown_variable"

    def test_sweep_creation_carries_an_idempotency_key(self, client: FMUGatewayClient,
                                                       model_files: dict[str, Path]) -> None:
        fmu = client.fmus.ensure_uploaded(model_files["VanDerPol"])
        first = client.sweeps.create(fmu, parameters={"mu": [1.0]}, idempotency_key="sweep-key-1", **SHORT)
        again = client.sweeps.create(fmu, parameters={"mu": [1.0]}, idempotency_key="sweep-key-1", **SHORT)
        assert again.id == first.id
        client.sweeps.wait(first)


class TestAsyncSweep:
    def test_async_sweep_matches_the_sync_one(self, gateway: Gateway, api_key: str, client: FMUGatewayClient,
                                              model_files: dict[str, Path]) -> None:
        async def main() -> SweepResult:
            async with AsyncFMUGatewayClient(api_key, gateway.base_url) as aclient:
                result = await aclient.sweep(model_files["VanDerPol"], method="lhs", samples=2, seed=5,
                                             parameters={"mu": {"min": 0.5, "max": 1.5}}, progress=False, **SHORT)
                listed = [s.id async for s in aclient.sweeps.list()]
                assert result.id in listed
                return result

        result = asyncio.run(main())
        again = client.sweep(model_files["VanDerPol"], method="lhs", samples=2, seed=5,
                             parameters={"mu": {"min": 0.5, "max": 1.5}}, progress=False, **SHORT)
        assert [r.parameters for r in result.runs] == [r.parameters for r in again.runs]
        assert result.summary()["final(x0)"].tolist() == again.summary()["final(x0)"].tolist()


class TestCliSweep:
    @pytest.fixture
    def cli(self, gateway: Gateway, fresh_key: str) -> CliRunner:
        return CliRunner(env={"FMU_GATEWAY_API_KEY": fresh_key, "FMU_GATEWAY_URL": gateway.base_url,
                              "COLUMNS": "200"})

    def test_sobol_sweep_saves_the_long_table(self, cli: CliRunner, model_files: dict[str, Path],
                                              tmp_path: Path) -> None:
        out, summary = tmp_path / "result.parquet", tmp_path / "summary.csv"
        result = cli.invoke(app, ["sweep", str(model_files["VanDerPol"]), "--method", "sobol", "--samples", "2",
                                  "--seed", "1", "--param", "mu=0.1:2.0", "--param", "x0=0:1", "--stop-time", "1",
                                  "--out", str(out), "--summary", str(summary)])
        assert result.exit_code == 0, result.stderr
        assert "finished: 2 succeeded" in result.stderr
        table = pq.read_table(out)
        assert table.column_names[:3] == ["sweep_index", "mu", "start(x0)"]
        assert set(table.column("sweep_index").to_pylist()) == {0, 1}
        assert summary.read_text().splitlines()[0].startswith('"sweep_index","run_id","status"')

    def test_grid_sweep_prints_the_summary(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        result = cli.invoke(app, ["sweep", str(model_files["VanDerPol"]), "--value", "mu=0.5,1.5", "--stop-time", "1"])
        assert result.exit_code == 0, result.stderr
        assert "final(x0)" in result.stdout and "succeeded" in result.stdout

    def test_sampled_method_without_samples_is_a_usage_error(self, cli: CliRunner,
                                                             model_files: dict[str, Path]) -> None:
        result = cli.invoke(app, ["sweep", str(model_files["VanDerPol"]), "--method", "lhs", "--param", "mu=0:1"])
        assert result.exit_code == 2

    def test_invalid_parameter_is_an_api_error(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        result = cli.invoke(app, ["sweep", str(model_files["VanDerPol"]), "--value", "nope=1,2"])
        assert result.exit_code == 1 and "unknown_variable" in result.stderr
