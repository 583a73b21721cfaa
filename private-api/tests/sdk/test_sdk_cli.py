"""``fmu-gateway``: the commands against a real server, their output and their exit codes
(0 ok, 1 API or run error with the problem on stderr, 2 usage)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import fmpy
import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from fmu_gateway_sdk import FMUGatewayClient
from fmu_gateway_sdk.cli import app
from gateway_process import Gateway
from typer.testing import CliRunner

FMU_ID = re.compile(r"^fmu_[0-9a-z]+$")
RUN_ID = re.compile(r"^run_[0-9a-z]+$")


@pytest.fixture
def cli(gateway: Gateway, fresh_key: str) -> CliRunner:
    """A runner whose environment points at the test gateway with a new user's key."""
    return CliRunner(env={"FMU_GATEWAY_API_KEY": fresh_key, "FMU_GATEWAY_URL": gateway.base_url, "COLUMNS": "200"})


def invoke(cli: CliRunner, *args: str | Path) -> Result:
    return cli.invoke(app, [str(a) for a in args])


def ok(cli: CliRunner, *args: str | Path) -> Result:
    result = invoke(cli, *args)
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def upload(cli: CliRunner, path: Path) -> str:
    return ok(cli, "upload", "-q", path).stdout.strip()


class TestUploadLsInfo:
    def test_upload_prints_the_fmu(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        out = ok(cli, "upload", model_files["VanDerPol"]).stdout
        assert "VanDerPol" in out and "FMI 2.0 ME+CS" in out
        fmu_id = upload(cli, model_files["VanDerPol"])
        assert FMU_ID.match(fmu_id) and fmu_id in out

    def test_upload_of_a_missing_file_is_a_usage_error(self, cli: CliRunner, tmp_path: Path) -> None:
        assert invoke(cli, "upload", tmp_path / "missing.fmu").exit_code == 2

    def test_ls_lists_uploads(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        ids = [upload(cli, model_files[name]) for name in ("VanDerPol", "Feedthrough")]
        assert ok(cli, "ls", "-q").stdout.split() == list(reversed(ids))
        table = ok(cli, "ls").stdout
        assert all(i in table for i in ids) and "Feedthrough.fmu" in table

    def test_info_shows_the_variables(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        fmu_id = upload(cli, model_files["VanDerPol"])
        out = ok(cli, "info", fmu_id).stdout
        assert fmu_id in out
        assert re.search(r"mu\s.*parameter", out)
        assert re.search(r"x0\s.*output", out)
        assert ok(cli, "info", model_files["VanDerPol"]).stdout == out  # a path finds the same FMU


class TestRun:
    def test_run_with_start_values_saves_csv_equal_to_fmpy(self, cli: CliRunner, model_files: dict[str, Path],
                                                          tmp_path: Path) -> None:
        out = tmp_path / "result.csv"
        result = ok(cli, "run", model_files["VanDerPol"], "--set", "mu=2.5", "--stop-time", "5",
                    "--output-interval", "0.01", "--output", out)
        assert "succeeded" in result.stderr and str(out) in result.stderr
        reference = fmpy.simulate_fmu(str(model_files["VanDerPol"]), start_values={"mu": 2.5}, stop_time=5,
                                      output_interval=0.01)
        table = pa_csv.read_csv(out)
        assert table.column_names == list(reference.dtype.names)
        for name in reference.dtype.names:
            np.testing.assert_allclose(table.column(name).to_numpy(), reference[name], rtol=1e-9)

    def test_run_saves_parquet_and_arrow(self, cli: CliRunner, model_files: dict[str, Path], tmp_path: Path) -> None:
        fmu_id = upload(cli, model_files["VanDerPol"])
        ok(cli, "run", fmu_id, "--stop-time", "1", "-o", tmp_path / "r.parquet")
        ok(cli, "run", fmu_id, "--stop-time", "1", "-o", tmp_path / "r.arrow")
        parquet = pq.read_table(tmp_path / "r.parquet")
        import pyarrow as pa

        arrow = pa.ipc.open_file(pa.memory_map(str(tmp_path / "r.arrow"))).read_all()
        assert parquet.equals(arrow) and parquet.num_rows > 10

    def test_run_prints_the_head_of_the_table(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        result = ok(cli, "run", model_files["VanDerPol"], "--stop-time", "1", "--head", "3")
        rows = [line.split() for line in result.stdout.splitlines() if re.match(r"^-?\d", line)]
        assert "time" in result.stdout and "x1" in result.stdout
        assert [float(cells[0]) for cells in rows] == [0.0, 0.01, 0.02]
        assert "3 of 101 rows" in result.stdout

    def test_run_with_an_input_file(self, cli: CliRunner, model_files: dict[str, Path], tmp_path: Path) -> None:
        signal = tmp_path / "input.csv"
        signal.write_text("time,real_in,int_in,bool_in\n0,1.0,1,false\n0.5,2.0,2,true\n1,3.0,3,false\n")
        out = tmp_path / "out.csv"
        ok(cli, "run", model_files["Feedthrough"], "--set", "gain=2", "--stop-time", "1", "--output-interval", "0.1",
           "--input-file", signal, "--output-variable", "real_out", "--output-variable", "bool_out", "-o", out)
        table = pa_csv.read_csv(out)
        assert table.column_names == ["time", "real_out", "bool_out"]
        assert max(table.column("real_out").to_pylist()) >= 4.0

    def test_quiet_run_prints_only_the_run_id(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        assert RUN_ID.match(ok(cli, "run", "-q", model_files["VanDerPol"], "--stop-time", "0.1").stdout.strip())

    def test_unknown_variable_is_exit_1_with_the_problem_on_stderr(self, cli: CliRunner,
                                                                   model_files: dict[str, Path]) -> None:
        result = invoke(cli, "run", model_files["VanDerPol"], "--set", "nope=1")
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "code: unknown_variable" in result.stderr and "variable: nope" in result.stderr
        assert re.search(r"request id: req_\w+", result.stderr)

    def test_failing_model_is_exit_1_with_its_log(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        result = invoke(cli, "run", model_files["Hostile"], "--set", "mode=6", "--stop-time", "1")
        assert result.exit_code == 1
        assert "code: model_error" in result.stderr and "Hostile: requested failure" in result.stderr

    @pytest.mark.parametrize("args", [
        ["--output", "result.xlsx"], ["--set", "mu"], ["--fmi-type", "Bogus"], ["--stop-time", "soon"],
    ])
    def test_usage_errors_are_exit_2_and_run_nothing(self, cli: CliRunner, gateway: Gateway, fresh_key: str,
                                                     model_files: dict[str, Path], args: list[str]) -> None:
        result = invoke(cli, "run", model_files["VanDerPol"], *args)
        assert result.exit_code == 2, result.output
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            assert list(client.runs.list()) == []


class TestRunsResultLog:
    def test_runs_result_log_and_balance(self, cli: CliRunner, model_files: dict[str, Path], tmp_path: Path) -> None:
        run_id = ok(cli, "run", "-q", model_files["VanDerPol"], "--stop-time", "1").stdout.strip()
        assert ok(cli, "runs", "-q").stdout.split() == [run_id]
        assert run_id in ok(cli, "runs", "--status", "succeeded").stdout
        assert ok(cli, "runs", "-q", "--status", "failed").stdout.strip() == ""
        ok(cli, "result", run_id, "-o", tmp_path / "r.csv")
        assert (tmp_path / "r.csv").read_text().splitlines()[0].replace('"', "") == "time,x0,x1"
        assert "x0" in ok(cli, "result", run_id).stdout
        ok(cli, "log", run_id)
        assert int(ok(cli, "balance").stdout) < 1000

    def test_result_of_a_failed_run_is_exit_1(self, cli: CliRunner, model_files: dict[str, Path]) -> None:
        invoke(cli, "run", model_files["Hostile"], "--set", "mode=6", "--stop-time", "1")
        run_id = ok(cli, "runs", "-q", "--status", "failed").stdout.split()[0]
        result = invoke(cli, "result", run_id)
        assert result.exit_code == 1 and "model_error" in result.stderr

    def test_unknown_run_is_exit_1(self, cli: CliRunner) -> None:
        result = invoke(cli, "result", "run_nope")
        assert result.exit_code == 1 and "code: not_found" in result.stderr


class TestConfiguration:
    def test_missing_api_key_is_a_usage_error(self, gateway: Gateway) -> None:
        result = CliRunner(env={"FMU_GATEWAY_API_KEY": None, "FMU_GATEWAY_URL": gateway.base_url}).invoke(app, ["ls"])
        assert result.exit_code == 2 and "FMU_GATEWAY_API_KEY" in result.stderr

    def test_unreachable_server_is_exit_1(self, fresh_key: str) -> None:
        result = CliRunner().invoke(app, ["--api-key", fresh_key, "--base-url", "http://127.0.0.1:9",
                                          "--max-retries", "0", "ls"])
        assert result.exit_code == 1 and "code: connection_error" in result.stderr

    def test_installed_console_script(self, gateway: Gateway) -> None:
        script = Path(sys.executable).parent / "fmu-gateway"
        if not script.exists():
            pytest.skip(f"{script} is not installed (pip install -e open-sdk)")
        assert subprocess.run([script, "--help"], capture_output=True, timeout=60).returncode == 0
        bad = subprocess.run([script, "--api-key", "fmu_test_" + "A" * 49, "--base-url", gateway.base_url, "ls"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "code: unauthenticated" in bad.stderr

