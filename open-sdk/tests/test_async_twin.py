"""``AsyncFMUGatewayClient`` is the twin of ``FMUGatewayClient``: the same methods with the same
parameters, as coroutines, and the same run keywords (``RunOptions``) defined once for both. (That
they send the same requests is tested through the ``twin`` fixture in the other files.)"""

from __future__ import annotations

import ast
import asyncio
import inspect
from collections.abc import Callable
from typing import Any, get_args, get_type_hints

import pytest
from fake_gateway import API_KEY
from typing_extensions import Unpack

from fmu_gateway_sdk import AsyncFMUGatewayClient, FMUGatewayClient, RunOptions
from fmu_gateway_sdk.resources import (
    AsyncBilling,
    AsyncFmus,
    AsyncRuns,
    AsyncSweeps,
    Billing,
    Fmus,
    Runs,
    Sweeps,
)

PAIRS = [(FMUGatewayClient, AsyncFMUGatewayClient), (Fmus, AsyncFmus), (Runs, AsyncRuns), (Sweeps, AsyncSweeps),
         (Billing, AsyncBilling)]
SYNC_ONLY = {"close", "__enter__", "__exit__"}
ASYNC_ONLY = {"aclose", "close", "__aenter__", "__aexit__"}
#: Every method that takes the run keywords, sync and async.
TAKE_RUN_OPTIONS = [FMUGatewayClient.simulate, FMUGatewayClient.sweep, AsyncFMUGatewayClient.simulate,
                    AsyncFMUGatewayClient.sweep, Runs.create, AsyncRuns.create, Sweeps.create, AsyncSweeps.create]


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
            assert [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()] == \
                   [(p.name, p.kind, p.default, p.annotation) for p in theirs.parameters.values()], name
            member = getattr(async_cls, name)
            assert inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member), name

    def test_constructors_take_the_same_configuration(self) -> None:
        sync = inspect.signature(FMUGatewayClient.__init__).parameters
        assert list(sync) == list(inspect.signature(AsyncFMUGatewayClient.__init__).parameters)

    def test_both_clients_have_the_same_resources(self) -> None:
        with FMUGatewayClient(API_KEY) as sync:
            async_client = AsyncFMUGatewayClient(API_KEY)
            assert {k for k in vars(sync) if not k.startswith("_")} == \
                   {k for k in vars(async_client) if not k.startswith("_")} == \
                   {"base_url", "max_retries", "fmus", "runs", "sweeps", "billing"}
            asyncio.run(async_client.aclose())


class TestRunOptionsDefinedOnce:
    @pytest.mark.parametrize("method", TAKE_RUN_OPTIONS, ids=lambda m: m.__qualname__)
    def test_the_run_keywords_are_unpacked_run_options(self, method: Callable[..., Any]) -> None:
        options = inspect.signature(method).parameters["options"]
        assert options.kind is inspect.Parameter.VAR_KEYWORD
        hint = get_type_hints(method, include_extras=True)["options"]
        assert hint == Unpack[RunOptions] and get_args(hint) == (RunOptions,)

    @pytest.mark.parametrize("method", TAKE_RUN_OPTIONS, ids=lambda m: m.__qualname__)
    def test_no_run_keyword_is_spelt_out_beside_them(self, method: Callable[..., Any]) -> None:
        spelt_out = set(inspect.signature(method).parameters) & set(get_type_hints(RunOptions))
        assert spelt_out == set()

    def test_each_keyword_is_documented_where_an_ide_shows_it(self) -> None:
        # A field's docstring is the string right after it in the class body (PEP 257 attribute docstrings).
        [cls] = ast.parse(inspect.getsource(RunOptions)).body
        assert isinstance(cls, ast.ClassDef)
        documented = {field.target.id for field, after in zip(cls.body, cls.body[1:], strict=False)
                      if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                      and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                      and isinstance(after.value.value, str) and after.value.value.strip()}
        assert documented == set(get_type_hints(RunOptions))
        assert {"step_size", "output", "validate", "debug_logging", "run_timeout"} <= documented

    def test_run_options_is_a_typed_dict_of_optional_keys(self) -> None:
        assert RunOptions.__required_keys__ == frozenset()
        options: RunOptions = {"stop_time": 1.0, "output": ["x0"]}
        assert options == {"stop_time": 1.0, "output": ["x0"]}

