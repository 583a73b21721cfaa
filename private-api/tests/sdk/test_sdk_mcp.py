"""``fmu-gateway mcp`` end to end: the official MCP client (``mcp.Client``) drives the server, started
as .venv/bin/fmu-gateway with the gateway's URL and a user's key in its environment, over stdio and
over streamable HTTP, against a real gateway. One stdio server per user serves the whole module
(through an anyio portal): starting one takes seconds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fmu_gateway_sdk import FMUGatewayClient
from gateway_process import Gateway, free_port
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, Tool
from sdk_support import has_parameter, require_server_feature

FMU_GATEWAY = Path(sys.executable).parent / "fmu-gateway"
TOOLS = {"list_models", "describe_model", "simulate", "sweep", "sweep_summary", "balance", "quote"}
SHORT = {"stop_time": 2.0, "output_interval": 0.1}
T = TypeVar("T")


@dataclass(frozen=True)
class User:
    key: str
    email: str
    fmu_id: str


def new_user(gateway: Gateway, model_files: dict[str, Path], credits: int) -> User:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    key = gateway.create_user(credits=credits, email=email)
    with FMUGatewayClient(key, gateway.base_url) as client:
        return User(key, email, client.fmus.upload(model_files["VanDerPol"]).id)


@pytest.fixture(scope="module")
def user(gateway: Gateway, model_files: dict[str, Path]) -> User:
    return new_user(gateway, model_files, credits=10_000)


@pytest.fixture(scope="module")
def broke(gateway: Gateway, model_files: dict[str, Path]) -> User:
    """Another user, with a model of their own and no credits."""
    return new_user(gateway, model_files, credits=0)


def server_env(gateway: Gateway, key: str) -> dict[str, str]:
    return {"FMU_GATEWAY_URL": gateway.base_url, "FMU_GATEWAY_API_KEY": key}


@dataclass(frozen=True)
class Session:
    """An MCP client session with a ``fmu-gateway mcp`` subprocess, used from synchronous tests."""

    portal: BlockingPortal
    client: Client

    def run(self, work: Callable[[Client], Awaitable[T]]) -> T:
        return self.portal.call(work, self.client)

    def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        return self.portal.call(self.client.call_tool, tool, arguments)

    def tools(self) -> list[Tool]:
        return self.portal.call(self.client.list_tools).tools


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as portal:
        yield portal


@contextmanager
def stdio_session(portal: BlockingPortal, gateway: Gateway, key: str) -> Iterator[Session]:
    params = StdioServerParameters(command=str(FMU_GATEWAY), args=["mcp"], env=server_env(gateway, key))
    with portal.wrap_async_context_manager(Client(params)) as client:
        yield Session(portal, client)


@pytest.fixture(scope="module")
def mcp(portal: BlockingPortal, gateway: Gateway, user: User) -> Iterator[Session]:
    """The server of ``user``."""
    with stdio_session(portal, gateway, user.key) as session:
        yield session


@pytest.fixture(scope="module")
def broke_mcp(portal: BlockingPortal, gateway: Gateway, broke: User) -> Iterator[Session]:
    """The server of ``broke``."""
    with stdio_session(portal, gateway, broke.key) as session:
        yield session


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def api(gateway: Gateway, key: str) -> httpx.Client:
    return gateway.client(key)


def run_ids(gateway: Gateway, key: str) -> list[str]:
    return [run["id"] for run in api(gateway, key).get("/v1/runs", params={"limit": 100}).json()["data"]]


def credits(gateway: Gateway, key: str) -> int:
    return int(api(gateway, key).get("/v1/billing/balance").json()["credits"])


class TestTools:
    def test_every_tool_is_listed_described_and_closed_to_extra_properties(self, mcp: Session) -> None:
        tools = mcp.tools()
        assert {tool.name for tool in tools} == TOOLS
        for tool in tools:
            schema = tool.input_schema
            assert schema["type"] == "object" and schema["additionalProperties"] is False, tool.name
            assert all(d.get("additionalProperties") is False for d in schema.get("$defs", {}).values()), tool.name
            assert tool.description and len(tool.description) > 80, tool.name
            assert tool.output_schema is not None, tool.name

    def test_an_argument_outside_the_schema_is_a_tool_error(self, mcp: Session, user: User) -> None:
        result = mcp.call("describe_model", {"fmu_id": user.fmu_id, "api_key": "someone-elses"})
        assert result.is_error and result.structured_content
        assert result.structured_content["code"] == "invalid_arguments"
        assert result.structured_content["errors"][0]["loc"] == "api_key"


class TestModels:
    def test_list_models_finds_the_upload_and_describe_model_its_variables(self, mcp: Session, user: User) -> None:
        listed = structured(mcp.call("list_models", {}))
        described = structured(mcp.call("describe_model", {"fmu_id": user.fmu_id}))
        queried = structured(mcp.call("describe_model", {"fmu_id": user.fmu_id, "query": "mu"}))
        first = structured(mcp.call("describe_model", {"fmu_id": user.fmu_id, "limit": 1}))
        [model] = [m for m in listed["models"] if m["id"] == user.fmu_id]
        assert model["name"] == "VanDerPol" and model["fmi_version"] == "2.0" and model["variable_count"] >= 3
        assert "shared_by" not in model
        assert described["name"] == "VanDerPol" and described["default_experiment"]["stop_time"] is not None
        variables = {v["name"]: v for v in described["variables"]}
        assert {"x0", "x1", "mu"} <= set(variables)
        assert variables["mu"]["causality"] == "parameter" and variables["mu"]["type"] == "Real"
        assert "start" in variables["mu"] and "description" in variables["mu"]
        assert [v["name"] for v in queried["variables"]] == ["mu"]
        assert len(first["variables"]) == 1 and first["next_cursor"]

    def test_a_model_shared_with_you_is_listed_with_who_shared_it(self, broke_mcp: Session, gateway: Gateway,
                                                                  user: User, broke: User,
                                                                  model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(user.key, gateway.base_url) as client:
            shared = client.fmus.ensure_uploaded(model_files["Feedthrough"])
            client.fmus.share(shared, email=broke.email, price_credits_per_run=2)
        listed = structured(broke_mcp.call("list_models", {}))
        [model] = [m for m in listed["models"] if m["id"] == shared.id]
        assert model["name"] == "Feedthrough" and model["shared_by"] and model["price_credits_per_run"] == 2
        assert user.email not in str(model)
        described = structured(broke_mcp.call("describe_model", {"fmu_id": shared.id}))
        assert described["shared_by"] == model["shared_by"] and described["variables"]

    def test_a_model_of_someone_else_is_not_found(self, broke_mcp: Session, user: User) -> None:
        result = broke_mcp.call("describe_model", {"fmu_id": user.fmu_id})
        assert result.is_error and result.structured_content
        assert result.structured_content["code"] == "not_found" and result.structured_content["status"] == 404


class TestSimulate:
    def test_summary_equals_the_apis_result_and_the_run_is_listed_and_booked(self, mcp: Session, gateway: Gateway,
                                                                            user: User) -> None:
        summary = structured(mcp.call("simulate", {"fmu_id": user.fmu_id, "start_values": {"mu": 2.5}, **SHORT}))
        run_id = summary["run_id"]
        assert summary["status"] == "succeeded" and summary["credits_charged"] > 0
        assert summary["result_url"] == f"{gateway.base_url}/v1/runs/{run_id}/result?format=csv"
        assert not any(isinstance(value, list) for value in summary.values())  # a summary, never the rows
        table = api(gateway, user.key).get(f"/v1/runs/{run_id}/result", params={"format": "json"}).json()
        assert summary["rows"] == table["rows"] == 21 and summary["final_time"] == table["data"]["time"][-1]
        for name in ("x0", "x1"):
            column = table["data"][name]
            assert summary["outputs"][name] == {"final": column[-1], "min": min(column), "max": max(column)}
        run = api(gateway, user.key).get(f"/v1/runs/{run_id}").json()
        assert run["spec"]["start_values"] == {"mu": 2.5}
        assert run_id in run_ids(gateway, user.key)
        ledger = api(gateway, user.key).get("/v1/billing/ledger", params={"run_id": run_id}).json()["data"]
        assert ledger and all(entry["run_id"] == run_id for entry in ledger)
        assert -sum(entry["amount"] for entry in ledger) == summary["credits_charged"]

    def test_refused_without_credits(self, broke_mcp: Session, gateway: Gateway, broke: User) -> None:
        result = broke_mcp.call("simulate", {"fmu_id": broke.fmu_id, **SHORT})
        assert result.is_error and result.structured_content
        assert result.structured_content["code"] == "insufficient_credits"
        assert result.structured_content["status"] == 402 and result.structured_content["message"]
        assert run_ids(gateway, broke.key) == []

    def test_a_failed_run_comes_back_with_its_code_and_log(self, mcp: Session, gateway: Gateway, user: User,
                                                           model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(user.key, gateway.base_url) as client:
            hostile = client.fmus.ensure_uploaded(model_files["Hostile"])
        result = mcp.call("simulate", {"fmu_id": hostile.id, "start_values": {"mode": 6}, "stop_time": 1})
        assert result.is_error and result.structured_content
        problem = result.structured_content
        assert problem["code"] == "model_error" and problem["run_id"].startswith("run_")
        assert any("Hostile: requested failure" in line for line in problem["log_tail"])

    def test_an_unknown_variable_comes_back_with_its_name(self, mcp: Session, user: User) -> None:
        result = mcp.call("simulate", {"fmu_id": user.fmu_id, "start_values": {"nope": 1}})
        assert result.is_error and result.structured_content
        assert result.structured_content["code"] == "unknown_variable"
        assert result.structured_content["variable"] == "nope"


class TestQuote:
    def test_quotes_a_run_and_a_sweep_placing_and_holding_nothing(self, mcp: Session, gateway: Gateway,
                                                                  user: User) -> None:
        require_server_feature(has_parameter(gateway, "POST", "/v1/fmus/{fmu_id}/runs", "dry_run"),
                               "dry_run on run and sweep creation")
        runs_before, balance_before = run_ids(gateway, user.key), credits(gateway, user.key)
        run_quote = structured(mcp.call("quote", {"fmu_id": user.fmu_id, "start_values": {"mu": 2.0}, **SHORT}))
        sweep_quote = structured(mcp.call("quote", {"fmu_id": user.fmu_id, "parameters": {"mu": [0.5, 1, 2]},
                                                    **SHORT}))
        balance = structured(mcp.call("balance", {}))
        assert run_quote["runs"] == 1 and run_quote["credits_held"] == run_quote["credits_per_run"] > 0
        assert run_quote["balance"] == balance_before and run_quote["sufficient"] is True
        assert run_quote["spec"]["start_values"] == {"mu": 2.0}
        assert sweep_quote["runs"] == 3 and sweep_quote["credits_held"] == 3 * sweep_quote["credits_per_run"]
        assert balance["credits"] == balance_before == credits(gateway, user.key)
        assert run_ids(gateway, user.key) == runs_before


class TestSweep:
    def test_sweep_returns_at_once_and_sweep_summary_follows_it(self, mcp: Session, user: User) -> None:
        async def work(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
            created = structured(await client.call_tool(
                "sweep", {"fmu_id": user.fmu_id, "parameters": {"mu": [0.5, 1.5]}, "output": ["x0"], **SHORT}))
            with anyio.fail_after(30):
                while True:
                    progress = structured(await client.call_tool("sweep_summary", {"sweep_id": created["sweep_id"],
                                                                                   "limit": 1}))
                    if progress["status"] == "finished":
                        return created, progress
                    await anyio.sleep(0.2)

        created, progress = mcp.run(work)
        assert created["total"] == 2 and created["method"] == "grid" and created["credits_held"] > 0
        assert progress["counts"]["succeeded"] == 2
        table = progress["summary"]
        assert table["total_rows"] == 2 and table["truncated"] is True and len(table["rows"]) == 1
        assert {"sweep_index", "run_id", "status", "mu", "final(x0)", "min(x0)", "max(x0)"} <= set(table["columns"])
        assert table["rows"][0]["mu"] == 0.5 and table["rows"][0]["status"] == "succeeded"


@pytest.fixture
def http_server(gateway: Gateway, user: User) -> Iterator[str]:
    """``fmu-gateway mcp --transport http`` on a free port of 127.0.0.1: its URL."""
    port = free_port()
    process = subprocess.Popen([str(FMU_GATEWAY), "mcp", "--transport", "http", "--port", str(port)],
                               env={**os.environ, **server_env(gateway, user.key)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class TestStreamableHttp:
    def test_lists_the_tools_and_tells_the_balance(self, gateway: Gateway, user: User, http_server: str) -> None:
        async def main() -> tuple[set[str], dict[str, Any]]:
            async with Client(http_server) as client:
                tools = {tool.name for tool in (await client.list_tools()).tools}
                return tools, structured(await client.call_tool("balance", {}))

        tools, balance = anyio.run(main)
        assert tools == TOOLS
        assert balance["credits"] == credits(gateway, user.key)


class TestCommand:
    def test_without_an_api_key_it_does_not_start(self, gateway: Gateway) -> None:
        env = {name: value for name, value in os.environ.items() if name != "FMU_GATEWAY_API_KEY"}
        done = subprocess.run([str(FMU_GATEWAY), "mcp"], env={**env, "FMU_GATEWAY_URL": gateway.base_url},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "API key" in done.stderr and done.stdout == ""
