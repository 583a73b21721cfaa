"""Typed errors from the server's problem+json: the class by status, the problem's code, detail and
request id on each, the extension members as properties; errors raised before any request."""

from __future__ import annotations

import pytest
from fake_gateway import FMU_ID, RUN_ID, FakeGateway, Twin, problem, run_json
from werkzeug import Response

from fmu_gateway_sdk import (
    APIError,
    AuthenticationError,
    ConflictError,
    FMUGatewayClient,
    FMUGatewayError,
    InsufficientCreditsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunFailedError,
    ValidationError,
)
from fmu_gateway_sdk._retry import RetryPolicy

BALANCE = "/v1/billing/balance"
NO_RETRIES = RetryPolicy(max_retries=0)  # 429 and 5xx are raised at once


class TestClassByStatus:
    @pytest.mark.parametrize(("status", "code", "error"), [
        (401, "unauthenticated", AuthenticationError),
        (402, "insufficient_credits", InsufficientCreditsError),
        (403, "insufficient_scope", PermissionDeniedError),
        (404, "not_found", NotFoundError),
        (409, "run_not_finished", ConflictError),
        (422, "unknown_variable", ValidationError),
        (429, "too_many_active_runs", RateLimitError),
        (413, "payload_too_large", APIError),
        (400, "malformed_upload", APIError),
    ])
    def test_the_class_carries_the_problem(self, fake: FakeGateway, twin: Twin, status: int, code: str,
                                           error: type[APIError]) -> None:
        fake.answers("GET", BALANCE, problem(status, code, "what happened", request_id="req_abc"))
        with pytest.raises(APIError) as caught:
            twin("billing.balance", retry=NO_RETRIES)
        raised = caught.value
        assert type(raised) is error
        assert (raised.status, raised.code, raised.detail, raised.request_id) == (status, code, "what happened",
                                                                                  "req_abc")
        assert raised.title == f"Error {status}" and raised.problem["code"] == code
        assert str(raised) == f"{status} Error {status}: what happened (code={code}, request_id=req_abc)"


class TestExtensionMembers:
    def test_a_validation_error_names_the_variable_and_the_field(self, fake: FakeGateway,
                                                                 client: FMUGatewayClient) -> None:
        fake.answers("POST", f"/v1/fmus/{FMU_ID}/runs",
                     problem(422, "unknown_variable", "no variable 'nope'", variable="nope", field="start_values.nope"))
        with pytest.raises(ValidationError) as caught:
            client.runs.create(FMU_ID, start_values={"nope": 1})
        assert caught.value.variable == "nope" and caught.value.field == "start_values.nope"

    def test_a_request_validation_error_lists_its_fields(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        errors = [{"loc": ["body", "step_size"], "msg": "Input should be greater than 0", "type": "greater_than"}]
        fake.answers("POST", f"/v1/fmus/{FMU_ID}/runs", problem(422, "validation_error", errors=errors))
        with pytest.raises(ValidationError) as caught:
            client.runs.create(FMU_ID, step_size=-1.0)
        assert caught.value.field == "step_size" and caught.value.errors == errors
        assert caught.value.variable is None

    def test_credits_scope_and_rate_limit_details(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.answers("GET", "/v1/billing/balance", problem(402, "insufficient_credits", required=12))
        fake.answers("GET", "/v1/fmus", problem(403, "insufficient_scope", scope="fmus:read"))
        fake.answers("GET", "/v1/runs", problem(429, "rate_limited", retry_after=9, headers={
            "RateLimit-Limit": "60", "RateLimit-Remaining": "0", "RateLimit-Reset": "9", "Retry-After": "3600"}))
        with pytest.raises(InsufficientCreditsError) as credits:
            client.billing.balance()
        with pytest.raises(PermissionDeniedError) as scope:
            list(client.fmus.list())
        with pytest.raises(RateLimitError) as limited:
            list(client.runs.list())
        assert credits.value.required == 12 and scope.value.scope == "fmus:read"
        assert (limited.value.retry_after, limited.value.limit, limited.value.remaining, limited.value.reset) == (
            3600.0, 60, 0, 9)


class TestResponsesThatAreNotProblems:
    def test_a_plain_text_error_keeps_its_text_and_the_request_id_header(self, fake: FakeGateway,
                                                                         client: FMUGatewayClient) -> None:
        fake.answers("GET", BALANCE, Response("upstream proxy error", status=400, headers={"X-Request-ID": "req_p"}))
        with pytest.raises(APIError) as caught:
            client.billing.balance()
        assert caught.value.detail == "upstream proxy error" and caught.value.code is None
        assert caught.value.request_id == "req_p"

    def test_a_problem_without_a_request_id_takes_the_header(self, fake: FakeGateway,
                                                             client: FMUGatewayClient) -> None:
        fake.answers("GET", BALANCE, problem(404, "not_found", request_id=None))
        with pytest.raises(NotFoundError) as caught:
            client.billing.balance()
        assert caught.value.request_id == "req_header"


class TestRunFailedError:
    def test_a_run_that_failed_raises_with_the_run_and_its_log(self, fake: FakeGateway, twin: Twin) -> None:
        failed = run_json("failed", error={"code": "model_error", "message": "fmi2DoStep failed"})
        fake.answers("POST", f"/v1/fmus/{FMU_ID}/runs", run_json())
        fake.answers("GET", f"/v1/runs/{RUN_ID}/result", problem(409, "result_unavailable"))
        fake.answers("GET", f"/v1/runs/{RUN_ID}", failed)
        fake.answers("GET", f"/v1/runs/{RUN_ID}/log", Response("line 1\nModel: division by zero\n"))
        with pytest.raises(RunFailedError) as caught:
            twin("simulate", FMU_ID, stop_time=1)
        error = caught.value
        assert error.code == "model_error" and error.detail == "fmi2DoStep failed"
        assert error.run.id == RUN_ID and error.run.status == "failed"
        assert error.log == "line 1\nModel: division by zero\n" and "division by zero" in str(error)


class TestBeforeAnyRequest:
    def test_a_missing_api_key_is_said_before_anything_is_sent(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FMU_GATEWAY_API_KEY", raising=False)
        with pytest.raises(FMUGatewayError, match="FMU_GATEWAY_API_KEY") as caught:
            FMUGatewayClient()
        assert caught.value.code == "missing_api_key"
