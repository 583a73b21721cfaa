"""Every error class, raised by its real server condition, carrying the server's code, detail and
request id: the server's problems and the SDK's classes agree. (The mapping from any problem+json is
tested without a gateway in open-sdk/tests/test_errors.py.)"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fmu_gateway_sdk import (
    APIError,
    AuthenticationError,
    ConflictError,
    Fmu,
    FMUGatewayClient,
    InsufficientCreditsError,
    NotFoundError,
    PermissionDeniedError,
    RunFailedError,
    ValidationError,
    WaitTimeoutError,
)
from gateway_process import Gateway
from sdk_support import has_operation, require_server_feature

HOSTILE_SLEEP = 4
HOSTILE_FMI_ERROR = 6


def assert_from_server(error: APIError, status: int, code: str) -> None:
    """The error carries the problem document of the response that caused it."""
    assert error.status == status
    assert error.code == code
    assert error.detail and error.detail == error.problem["detail"]
    assert error.request_id and error.request_id == error.response.headers["x-request-id"]
    assert error.request_id == error.problem["request_id"]
    assert code in str(error) and error.request_id in str(error)


@pytest.fixture(scope="module")
def vanderpol(client: FMUGatewayClient, model_files: dict[str, Path]) -> Fmu:
    return client.fmus.upload(model_files["VanDerPol"])


@pytest.fixture(scope="module")
def hostile(client: FMUGatewayClient, model_files: dict[str, Path]) -> Fmu:
    return client.fmus.upload(model_files["Hostile"])


class TestAuthenticationError:
    def test_unknown_api_key_is_401(self, gateway: Gateway) -> None:
        bogus = "fmu_test_" + "A" * 49
        with FMUGatewayClient(bogus, gateway.base_url) as client, pytest.raises(AuthenticationError) as caught:
            client.billing.balance()
        assert_from_server(caught.value, 401, "unauthenticated")


class TestPermissionDeniedError:
    def test_key_without_the_scope_is_403(self, gateway: Gateway, vanderpol: Fmu) -> None:
        email = f"scoped-{uuid.uuid4().hex[:8]}@example.com"
        assert gateway.admin("create-user", "--email", email, "--credits", "10").returncode == 0
        created = gateway.admin("create-key", "--email", email, "--scope", "fmus:read", "--scope", "fmus:write")
        require_server_feature(created.returncode == 0, f"API key scopes (create-key --scope): {created.stderr[-300:]}")
        read_only = created.stdout.strip().splitlines()[-1]
        with FMUGatewayClient(read_only, gateway.base_url) as client:
            assert list(client.fmus.list()) == []
            with pytest.raises(PermissionDeniedError) as caught:
                client.billing.balance()
        assert_from_server(caught.value, 403, "insufficient_scope")
        assert caught.value.scope == "billing:read"


class TestNotFoundError:
    def test_unknown_fmu_is_404(self, client: FMUGatewayClient) -> None:
        with pytest.raises(NotFoundError) as caught:
            client.fmus.get("fmu_doesnotexist")
        assert_from_server(caught.value, 404, "not_found")

    def test_someone_elses_run_is_404(self, gateway: Gateway, client: FMUGatewayClient, fresh_key: str,
                                      vanderpol: Fmu) -> None:
        run = client.simulate(vanderpol, stop_time=0.1).run
        with FMUGatewayClient(fresh_key, gateway.base_url) as other, pytest.raises(NotFoundError) as caught:
            other.runs.get(run.id)
        assert_from_server(caught.value, 404, "not_found")


class TestValidationError:
    @pytest.mark.parametrize(("settings", "code", "variable"), [
        ({"start_values": {"nope": 1.0}}, "unknown_variable", "nope"),
        ({"start_values": {"x0": "high"}}, "invalid_value", "x0"),
        ({"start_values": {"der(x0)": 1.0}}, "variable_not_settable", "der(x0)"),
        ({"output": ["x0", "ghost"]}, "unknown_variable", "ghost"),
        ({"start_time": 2, "stop_time": 1}, "invalid_time_range", None),
    ])
    def test_run_that_does_not_fit_the_model_is_422(self, client: FMUGatewayClient, vanderpol: Fmu,
                                                    settings: dict[str, object], code: str,
                                                    variable: str | None) -> None:
        with pytest.raises(ValidationError) as caught:
            client.simulate(vanderpol, **settings)  # type: ignore[arg-type]
        assert_from_server(caught.value, 422, code)
        assert caught.value.variable == variable

    def test_invalid_request_field_is_named(self, client: FMUGatewayClient, vanderpol: Fmu) -> None:
        with pytest.raises(ValidationError) as caught:
            client.runs.create(vanderpol, output_interval=-1.0)
        assert_from_server(caught.value, 422, "validation_error")
        assert caught.value.field == "output_interval"
        assert caught.value.errors and caught.value.errors[0]["loc"][-1] == "output_interval"

    def test_file_that_is_not_an_fmu_is_422(self, client: FMUGatewayClient, tmp_path: Path) -> None:
        path = tmp_path / "notes.fmu"
        path.write_text("not a zip")
        with pytest.raises(ValidationError) as caught:
            client.fmus.upload(path)
        assert_from_server(caught.value, 422, "not_a_zip")


class TestInsufficientCreditsError:
    def test_run_without_credits_is_402(self, gateway: Gateway, model_files: dict[str, Path]) -> None:
        with FMUGatewayClient(gateway.create_user(credits=0), gateway.base_url) as broke:
            with pytest.raises(InsufficientCreditsError) as caught:
                broke.simulate(model_files["VanDerPol"], stop_time=1)
            assert_from_server(caught.value, 402, "insufficient_credits")
            assert caught.value.required is not None and caught.value.required > 0
            assert list(broke.runs.list()) == []


class TestConflictError:
    def test_result_of_an_unfinished_run_is_409_then_unavailable_after_timeout(
            self, client: FMUGatewayClient, hostile: Fmu) -> None:
        run = client.runs.create(hostile, start_values={"mode": HOSTILE_SLEEP}, stop_time=1, run_timeout=2)
        with pytest.raises(ConflictError) as caught:
            client.runs.result(run)
        assert_from_server(caught.value, 409, "run_not_finished")
        finished = client.runs.wait(run, timeout=60)
        assert finished.status == "timed_out"
        with pytest.raises(ConflictError) as caught:
            client.runs.download_result(finished, format="csv")
        assert_from_server(caught.value, 409, "result_unavailable")

    def test_cancelling_a_finished_run_is_409(self, gateway: Gateway, client: FMUGatewayClient,
                                              vanderpol: Fmu) -> None:
        require_server_feature(has_operation(gateway, "post", "/v1/runs/{run_id}/cancel"),
                               "POST /v1/runs/{id}/cancel")
        run = client.simulate(vanderpol, stop_time=0.1).run
        with pytest.raises(ConflictError) as caught:
            client.runs.cancel(run)
        assert_from_server(caught.value, 409, "run_finished")


class TestCancel:
    def test_cancelled_run_fails_the_one_liner_and_the_waiter(self, gateway: Gateway, client: FMUGatewayClient,
                                                              hostile: Fmu) -> None:
        require_server_feature(has_operation(gateway, "post", "/v1/runs/{run_id}/cancel"),
                               "POST /v1/runs/{id}/cancel")
        run = client.runs.create(hostile, start_values={"mode": HOSTILE_SLEEP}, stop_time=1, run_timeout=30)
        cancelled = client.runs.cancel(run)
        assert cancelled.id == run.id and cancelled.status == "cancelled"
        assert client.runs.wait(run, timeout=30).status == "cancelled"


class TestRunFailedError:
    def test_model_error_carries_the_run_and_its_log(self, client: FMUGatewayClient, hostile: Fmu) -> None:
        with pytest.raises(RunFailedError) as caught:
            client.simulate(hostile, start_values={"mode": HOSTILE_FMI_ERROR}, stop_time=1, run_timeout=10)
        error = caught.value
        assert error.code == "model_error"
        assert error.run.status == "failed" and error.run.error is not None
        assert error.detail == error.run.error.message
        assert error.log is not None and "Hostile: requested failure" in error.log
        assert error.request_id and error.request_id.startswith("req_")
        assert "Hostile: requested failure" in str(error)

    def test_run_past_its_timeout_is_timed_out(self, client: FMUGatewayClient, hostile: Fmu) -> None:
        with pytest.raises(RunFailedError) as caught:
            client.simulate(hostile, start_values={"mode": HOSTILE_SLEEP}, stop_time=1, run_timeout=1)
        assert caught.value.run.status == "timed_out"


class TestWaitTimeoutError:
    def test_waiting_less_than_the_run_takes(self, client: FMUGatewayClient, hostile: Fmu) -> None:
        run = client.runs.create(hostile, start_values={"mode": HOSTILE_SLEEP}, stop_time=1, run_timeout=3)
        with pytest.raises(WaitTimeoutError) as caught:
            client.runs.wait(run, timeout=0.5)
        assert caught.value.run.id == run.id and not caught.value.run.finished
        assert isinstance(caught.value, TimeoutError)
        client.runs.wait(run, timeout=60)


class TestAPIError:
    def test_upload_over_the_size_limit_is_413(self, client: FMUGatewayClient, tmp_path: Path) -> None:
        path = tmp_path / "huge.fmu"
        path.write_bytes(b"\0" * (9 << 20))  # the test gateway accepts 8 MiB
        with pytest.raises(APIError) as caught:
            client.fmus.upload(path)
        assert type(caught.value) is APIError
        assert_from_server(caught.value, 413, "payload_too_large")
