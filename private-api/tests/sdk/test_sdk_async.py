"""``AsyncFMUGatewayClient`` behaves as ``FMUGatewayClient`` does against the same server (that
they have the same surface is tested in open-sdk/tests/test_async_twin.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from fmu_gateway_sdk import (
    AsyncFMUGatewayClient,
    FMUGatewayClient,
    NotFoundError,
    RunFailedError,
    SimulationResult,
    ValidationError,
)
from gateway_process import Gateway
from sdk_support import count_requests


class TestBehaviour:
    def test_upload_hashes_first_and_skips_known_bytes(self, gateway: Gateway, fresh_key: str,
                                                       model_files: dict[str, Path]) -> None:
        async def scenario() -> tuple[str, str]:
            async with AsyncFMUGatewayClient(fresh_key, gateway.base_url) as client:
                first = await client.fmus.upload(model_files["VanDerPol"])
                second = await client.fmus.upload(model_files["VanDerPol"], progress=True)
                return first.id, second.id

        before = count_requests(gateway, "POST", "/v1/fmus")
        first, second = asyncio.run(scenario())
        assert first == second
        assert count_requests(gateway, "POST", "/v1/fmus") == before + 1

    def test_simulate_gives_the_sync_clients_table(self, gateway: Gateway, api_key: str, client: FMUGatewayClient,
                                                   model_files: dict[str, Path]) -> None:
        settings = {"start_values": {"mu": 1.7}, "stop_time": 3, "output_interval": 0.05}

        async def scenario() -> SimulationResult:
            async with AsyncFMUGatewayClient(api_key, gateway.base_url) as aclient:
                return await aclient.simulate(model_files["VanDerPol"], **settings)  # type: ignore[arg-type]

        async_result = asyncio.run(scenario())
        sync_result = client.simulate(model_files["VanDerPol"], **settings)  # type: ignore[arg-type]
        assert async_result.run.id != sync_result.run.id
        np.testing.assert_array_equal(async_result.to_numpy(), sync_result.to_numpy())

    def test_concurrent_simulations(self, gateway: Gateway, fresh_key: str, model_files: dict[str, Path]) -> None:
        mus = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]

        async def scenario() -> list[SimulationResult]:
            async with AsyncFMUGatewayClient(fresh_key, gateway.base_url) as client:
                fmu = await client.fmus.upload(model_files["VanDerPol"])
                return await asyncio.gather(*(client.simulate(fmu, start_values={"mu": mu}, stop_time=2)
                                              for mu in mus))

        results = asyncio.run(scenario())
        assert [r.run.spec["start_values"]["mu"] for r in results] == mus
        assert len({r.run.id for r in results}) == len(mus)

    def test_runs_list_get_wait_result_and_log(self, gateway: Gateway, fresh_key: str,
                                               model_files: dict[str, Path]) -> None:
        async def scenario() -> None:
            async with AsyncFMUGatewayClient(fresh_key, gateway.base_url) as client:
                fmu = await client.fmus.upload(model_files["Feedthrough"])
                assert [f.id async for f in client.fmus.list()] == [fmu.id]
                assert (await client.fmus.get(fmu.id)).variables == fmu.variables
                run = await client.runs.create(fmu, stop_time=1, input={"time": [0, 1], "real_in": [1.0, 2.0]})
                finished = await client.runs.wait(run, timeout=60)
                assert finished.succeeded
                assert [r.id async for r in client.runs.list(fmu=fmu)] == [run.id]
                result = await client.runs.result(run.id)
                assert result.columns[0] == "time" and len(result) == finished.result.rows  # type: ignore[union-attr]
                assert isinstance(await client.runs.log(run), str)
                assert b"time" in await client.runs.download_result(run, format="csv")
                assert (await client.billing.balance()).credits < 1000
                await client.fmus.delete(fmu)
                with pytest.raises(NotFoundError):
                    await client.fmus.get(fmu.id)

        asyncio.run(scenario())

    def test_errors_are_the_same_classes(self, gateway: Gateway, api_key: str, model_files: dict[str, Path]) -> None:
        async def scenario() -> None:
            async with AsyncFMUGatewayClient(api_key, gateway.base_url) as client:
                with pytest.raises(ValidationError) as invalid:
                    await client.simulate(model_files["VanDerPol"], start_values={"nope": 1})
                assert invalid.value.code == "unknown_variable" and invalid.value.variable == "nope"
                assert invalid.value.request_id
                with pytest.raises(RunFailedError) as failed:
                    await client.simulate(model_files["Hostile"], start_values={"mode": 6}, stop_time=1)
                assert failed.value.code == "model_error" and failed.value.log

        asyncio.run(scenario())
