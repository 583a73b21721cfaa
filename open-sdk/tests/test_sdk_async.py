"""``AsyncFMUGatewayClient`` has the surface of ``FMUGatewayClient`` and behaves the same against the
same server."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import numpy as np
import pytest
from gateway_process import Gateway
from sdk_support import count_requests

from fmu_gateway_sdk import (
    AsyncFMUGatewayClient,
    FMUGatewayClient,
    NotFoundError,
    RunFailedError,
    SimulationResult,
    ValidationError,
)
from fmu_gateway_sdk.resources import AsyncBilling, AsyncFmus, AsyncRuns, Billing, Fmus, Runs

PAIRS = [(FMUGatewayClient, AsyncFMUGatewayClient), (Fmus, AsyncFmus), (Runs, AsyncRuns), (Billing, AsyncBilling)]
SYNC_ONLY = {"close", "__enter__", "__exit__"}
ASYNC_ONLY = {"aclose", "close", "__aenter__", "__aexit__"}


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")}


class TestSurface:
    @pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=[s.__name__ for s, _ in PAIRS])
    def test_same_methods_with_the_same_parameters(self, sync_cls: type, async_cls: type) -> None:
        sync_methods = {k: v for k, v in public_methods(sync_cls).items() if k not in SYNC_ONLY}
        async_methods = {k: v for k, v in public_methods(async_cls).items() if k not in ASYNC_ONLY}
        assert sync_methods.keys() == async_methods.keys()
        for name, signature in sync_methods.items():
            theirs = async_methods[name]
            assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == \
                   [(p.name, p.kind, p.default) for p in theirs.parameters.values()], name
            member = getattr(async_cls, name)
            assert inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member), name

    def test_constructors_take_the_same_configuration(self) -> None:
        sync = inspect.signature(FMUGatewayClient.__init__).parameters
        assert list(sync) == list(inspect.signature(AsyncFMUGatewayClient.__init__).parameters)

    def test_both_clients_have_the_same_resources(self, gateway: Gateway, api_key: str) -> None:
        with FMUGatewayClient(api_key, gateway.base_url) as sync:
            async_client = AsyncFMUGatewayClient(api_key, gateway.base_url)
            assert {k for k in vars(sync) if not k.startswith("_")} == \
                   {k for k in vars(async_client) if not k.startswith("_")}
            asyncio.run(async_client.aclose())


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
