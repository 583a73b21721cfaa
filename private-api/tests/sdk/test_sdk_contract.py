"""The contract test: the SDK against the real server, end to end. What the SDK sends for
``fmpy.simulate_fmu``'s keywords (``RunOptions``) the server accepts and runs as FMPy runs them on the
same file: an FMU uploaded, simulated with ``output=``, ``step_size=``, ``validate=`` and
``debug_logging=``, swept with the same base run, from both clients; and the deprecated spellings
(``outputs=``, ``simulate(timeout=)``) still do what they did."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from pathlib import Path
from typing import Any, get_type_hints

import fmpy
import numpy as np
import pytest
from fmu_gateway_sdk import AsyncFMUGatewayClient, FMUGatewayClient, RunFailedError, RunOptions, SimulationResult
from gateway_process import Gateway

#: Euler on ModelExchange with a fixed step and no output_interval: FMPy then records a row per step
#: (0.05 s: 41 rows over 2 s, where its default step would give 1001), so the rows show the step arrived.
EULER_BASE: RunOptions = {"fmi_type": "ModelExchange", "solver": "Euler", "step_size": 0.05, "stop_time": 2.0,
                          "output": ["x0"]}
EULER: RunOptions = {**EULER_BASE, "start_values": {"mu": 1.5}}
HOSTILE_SLEEP = 4


def assert_same_as_fmpy(result: SimulationResult, reference: np.ndarray) -> None:
    table = result.to_numpy()
    assert table.dtype.names == reference.dtype.names and len(table) == len(reference)
    for name in reference.dtype.names:
        np.testing.assert_allclose(table[name], reference[name], rtol=1e-9, atol=0, err_msg=name)


def fmpy_run(path: Path, options: RunOptions | dict[str, Any]) -> np.ndarray:
    result: np.ndarray = fmpy.simulate_fmu(str(path), **options)
    return result


class TestSdkAgainstTheServer:
    def test_upload_simulate_and_sweep_with_fmpys_keywords(self, gateway: Gateway, fresh_key: str,
                                                          model_files: dict[str, Path]) -> None:
        path = model_files["VanDerPol"]
        reference = fmpy_run(path, EULER)
        assert len(reference) == 41  # the step size decides the rows: the test can tell it arrived
        with FMUGatewayClient(fresh_key, gateway.base_url) as client:
            fmu = client.fmus.upload(path)
            assert fmu.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
            assert fmu.variable("mu").causality == "parameter"

            result = client.simulate(fmu, **EULER)
            assert result.columns == ["time", "x0"]
            assert_same_as_fmpy(result, reference)

            swept = client.sweep(fmu, parameters={"mu": [0.5, 1.5]}, progress=False, **EULER_BASE)
            assert swept.counts.succeeded == 2 and swept.failed_runs == []
            frame = swept.to_pandas()
            assert list(frame.columns) == ["sweep_index", "mu", "time", "x0"]
            child = frame[frame["mu"] == 1.5]
            np.testing.assert_allclose(child["x0"].to_numpy(), reference["x0"], rtol=1e-9, atol=0)
            assert len(frame[frame["mu"] == 0.5]) == 41

    def test_the_async_client_sends_the_same_run(self, gateway: Gateway, api_key: str,
                                                 model_files: dict[str, Path]) -> None:
        async def scenario() -> SimulationResult:
            async with AsyncFMUGatewayClient(api_key, gateway.base_url) as client:
                return await client.simulate(model_files["VanDerPol"], **EULER)

        assert_same_as_fmpy(asyncio.run(scenario()), fmpy_run(model_files["VanDerPol"], EULER))

    def test_validate_and_debug_logging_reach_fmpy(self, client: FMUGatewayClient,
                                                   model_files: dict[str, Path]) -> None:
        options: RunOptions = {"stop_time": 0.5, "output_interval": 0.1, "validate": False, "debug_logging": True}
        logged = client.simulate(model_files["VanDerPol"], **options)
        quiet = client.simulate(model_files["VanDerPol"], **{**options, "debug_logging": False})
        assert_same_as_fmpy(logged, fmpy_run(model_files["VanDerPol"], options))
        # The test FMU logs its instantiation only when debug logging is on.
        assert "Instantiated VanDerPol." in client.runs.log(logged.run)
        assert "Instantiated VanDerPol." not in client.runs.log(quiet.run)

    def test_run_timeout_is_the_runs_limit_on_the_server(self, client: FMUGatewayClient,
                                                         model_files: dict[str, Path]) -> None:
        with pytest.raises(RunFailedError) as caught:
            client.simulate(model_files["Hostile"], start_values={"mode": HOSTILE_SLEEP}, stop_time=1, run_timeout=1)
        assert caught.value.run.status == "timed_out" and caught.value.code == "timed_out"


class TestDeprecatedSpellings:
    def test_outputs_still_chooses_the_recorded_variables(self, client: FMUGatewayClient,
                                                          model_files: dict[str, Path]) -> None:
        with pytest.warns(DeprecationWarning, match="output="):
            result = client.simulate(model_files["VanDerPol"], stop_time=1, outputs=["x1"])
        assert result.columns == ["time", "x1"]

    def test_simulates_timeout_is_still_the_runs_limit(self, client: FMUGatewayClient,
                                                      model_files: dict[str, Path]) -> None:
        with pytest.warns(DeprecationWarning, match="run_timeout="), pytest.raises(RunFailedError) as caught:
            client.simulate(model_files["Hostile"], start_values={"mode": HOSTILE_SLEEP}, stop_time=1, timeout=1)
        assert caught.value.run.status == "timed_out"


def test_run_options_are_named_as_fmpy_names_them() -> None:
    # The gateway's own: the run's limit, the deprecated alias, and the run cache's opt-out.
    ours = set(get_type_hints(RunOptions)) - {"run_timeout", "outputs", "cache"}
    assert ours <= set(inspect.signature(fmpy.simulate_fmu).parameters)
