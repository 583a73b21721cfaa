"""One meaning of ``timeout`` in the SDK: how long the client waits (for an HTTP response, for a run
or a sweep to finish). A run's own wall-clock limit on the server is ``run_timeout``; the ``timeout=``
that used to mean it (``simulate``, ``runs.create``, ``sweeps.create``, the CLI's ``run``/``sweep``)
still does, with a deprecation warning, so no caller's behaviour changes silently."""

from __future__ import annotations

import asyncio
import time
import warnings
from typing import Any

import pytest
from fake_gateway import (
    API_KEY,
    FMU_ID,
    RUN_ID,
    SWEEP_ID,
    FakeGateway,
    Twin,
    fmu_json,
    problem,
    run_json,
    sweep_json,
)
from typer.testing import CliRunner
from werkzeug import Request, Response

from fmu_gateway_sdk import APITimeoutError, AsyncFMUGatewayClient, FMUGatewayClient, WaitTimeoutError
from fmu_gateway_sdk.cli import app

RUNS = f"/v1/fmus/{FMU_ID}/runs"
SWEEPS = f"/v1/fmus/{FMU_ID}/sweeps"
SWEEP = {"parameters": {"k": [1, 2]}}


def slowly(seconds: float, response: Response) -> Any:
    def handler(_: Request) -> Response:
        time.sleep(seconds)
        return response
    return handler


def run_body(fake: FakeGateway, method: str) -> dict[str, Any]:
    """The run part of the one run or sweep submitted through ``method``."""
    body: dict[str, Any] = fake.body("POST", SWEEPS if "sweep" in method else RUNS)
    return {key: value for key, value in body.items() if key not in ("method", "parameters")}


def call(twin: Twin, method: str, **kwargs: Any) -> Any:
    extra: dict[str, Any] = {**SWEEP, "progress": False} if method == "sweep" else (
        SWEEP if method == "sweeps.create" else {})
    return twin(method, FMU_ID, **extra, **kwargs)


class TestTimeoutIsHowLongTheClientWaits:
    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_the_clients_timeout_bounds_each_http_response(self, own_fake: FakeGateway, kind: str) -> None:
        fake = own_fake
        fake.answers_with("GET", "/v1/billing/balance", slowly(1.0, Response('{"credits": 1}')))
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as caught:
            if kind == "sync":
                with FMUGatewayClient(API_KEY, fake.base_url, timeout=0.2, max_retries=0) as client:
                    client.billing.balance()
            else:
                async def main() -> None:
                    async with AsyncFMUGatewayClient(API_KEY, fake.base_url, timeout=0.2, max_retries=0) as client:
                        await client.billing.balance()
                asyncio.run(main())
        assert time.monotonic() - started < 0.9
        assert caught.value.code == "timeout"

    def test_runs_wait_gives_up_after_its_timeout(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("GET", f"/v1/runs/{RUN_ID}", run_json("running"))
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            twin("runs.wait", RUN_ID, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 2.0
        assert caught.value.run.status == "running" and isinstance(caught.value, TimeoutError)
        # The server is never asked to hold a long-poll longer than the client still waits.
        waits = [float(r.args["wait"]) for r in fake.requests("GET", f"/v1/runs/{RUN_ID}") if "wait" in r.args]
        assert waits and all(0 < wait <= 0.3 for wait in waits)

    def test_a_sweeps_timeout_bounds_the_wait_and_run_timeout_limits_each_child(self, fake: FakeGateway,
                                                                                twin: Twin) -> None:
        fake.answers("POST", SWEEPS, sweep_json("running"))
        fake.answers("GET", f"/v1/sweeps/{SWEEP_ID}", sweep_json("running"))
        fake.answers("GET", f"/v1/sweeps/{SWEEP_ID}/events", problem(404, "not_found"))  # polls instead
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(WaitTimeoutError) as caught:
                call(twin, "sweep", timeout=0.5, run_timeout=7)
        assert 0.5 <= time.monotonic() - started < 3.0
        assert caught.value.run.id == SWEEP_ID
        assert run_body(fake, "sweep") == {"timeout_s": 7}


class TestRunTimeoutIsTheRunsLimit:
    @pytest.mark.parametrize("method", ["simulate", "runs.create", "sweep", "sweeps.create"])
    def test_run_timeout_is_sent_as_the_runs_limit(self, fake: FakeGateway, twin: Twin, method: str) -> None:
        fake.serves_runs()
        fake.serves_sweeps()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            call(twin, method, run_timeout=5)
        assert run_body(fake, method) == {"timeout_s": 5}

    @pytest.mark.parametrize("method", ["simulate", "runs.create", "sweeps.create"])
    def test_the_old_timeout_still_sets_the_runs_limit_with_a_warning(self, fake: FakeGateway, twin: Twin,
                                                                      method: str) -> None:
        fake.serves_runs()
        fake.serves_sweeps()
        with pytest.warns(DeprecationWarning, match=rf"^{method}\(timeout=\) is deprecated: .*run_timeout="):
            call(twin, method, timeout=5)
        assert run_body(fake, method) == {"timeout_s": 5}

    def test_simulates_old_timeout_does_not_bound_the_wait(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", RUNS, run_json())
        fake.answers_with("GET", f"/v1/runs/{RUN_ID}/result", slowly(0.6, Response(b"arrow")))
        fake.answers("GET", f"/v1/runs/{RUN_ID}", run_json("succeeded"))
        with pytest.warns(DeprecationWarning):
            result = twin("simulate", FMU_ID, timeout=0.2)  # waits past 0.2 s, as before
        assert result.arrow_ipc == b"arrow"
        assert run_body(fake, "simulate") == {"timeout_s": 0.2}

    @pytest.mark.parametrize("method", ["simulate", "runs.create", "sweeps.create"])
    def test_timeout_and_run_timeout_together_are_refused(self, fake: FakeGateway, twin: Twin, method: str) -> None:
        with pytest.raises(TypeError, match="run_timeout= and timeout="):
            call(twin, method, timeout=5, run_timeout=5)
        assert fake.requests() == []

    def test_sweep_has_no_old_meaning_to_keep(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        # sweep(timeout=) has always bounded the wait: no warning, and nothing sent as the runs' limit.
        fake.serves_sweeps()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            client.sweep(FMU_ID, **SWEEP, progress=False, timeout=60)
        assert run_body(fake, "sweep") == {}


#: Each command that submits a run (a sweep: its base run), and the id it prints with -q.
COMMANDS = {"run": (["run", "-q", FMU_ID], RUN_ID), "sweep": (["sweep", "-q", FMU_ID, "--value", "k=1,2"], SWEEP_ID)}


class TestCommandLine:
    def cli(self, fake: FakeGateway, command: str, *args: str) -> Any:
        fake.answers("GET", f"/v1/fmus/{FMU_ID}", fmu_json())
        fake.answers("POST", RUNS, run_json("succeeded"))
        fake.serves_sweeps()
        runner = CliRunner(env={"FMU_GATEWAY_API_KEY": API_KEY, "FMU_GATEWAY_URL": fake.base_url})
        done = runner.invoke(app, [*COMMANDS[command][0], *args])
        assert done.exit_code == 0, done.stderr
        assert done.stdout.strip() == COMMANDS[command][1]
        return done

    @pytest.mark.parametrize("command", list(COMMANDS))
    def test_run_timeout_and_step_size_reach_the_run(self, fake: FakeGateway, command: str) -> None:
        self.cli(fake, command, "--run-timeout", "5", "--step-size", "0.01", "--output-variable", "x0")
        assert run_body(fake, command) == {"timeout_s": 5.0, "step_size": 0.01, "output": ["x0"]}

    @pytest.mark.parametrize("command", list(COMMANDS))
    def test_the_commands_old_timeout_still_sets_the_runs_limit_with_a_warning(self, fake: FakeGateway,
                                                                              command: str) -> None:
        done = self.cli(fake, command, "--timeout", "5")
        assert "--timeout is deprecated" in done.stderr and "--run-timeout" in done.stderr
        assert run_body(fake, command) == {"timeout_s": 5.0}

    def test_the_global_timeout_is_the_clients_wait_for_each_response(self, own_fake: FakeGateway) -> None:
        fake = own_fake
        fake.answers_with("GET", f"/v1/fmus/{FMU_ID}", slowly(1.0, Response("{}")))
        runner = CliRunner(env={"FMU_GATEWAY_API_KEY": API_KEY, "FMU_GATEWAY_URL": fake.base_url})
        done = runner.invoke(app, ["--timeout", "0.2", "--max-retries", "0", "run", FMU_ID])
        assert done.exit_code == 1 and "code: timeout" in done.stderr
        assert fake.requests("POST") == []
