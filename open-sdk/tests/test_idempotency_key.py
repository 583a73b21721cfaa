"""Every POST carries an ``Idempotency-Key``, made once per call by the requester and the same on each
of its retries, so a retry can never create, charge or cancel twice; a caller's own key goes as given."""

from __future__ import annotations

import re
from pathlib import Path
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
    hanging_up_server,
    page,
    problem,
    run_json,
)

from fmu_gateway_sdk import APIError, FMUGatewayClient
from fmu_gateway_sdk._retry import RetryPolicy

GENERATED = re.compile(r"^sdk-[0-9a-f]{32}$")
RUNS = f"/v1/fmus/{FMU_ID}/runs"


def keys(fake: FakeGateway, method: str | None = None, path: str | None = None) -> list[str | None]:
    return [request.headers.get("Idempotency-Key") for request in fake.requests(method, path)]


@pytest.fixture
def fmu_file(tmp_path: Path) -> Path:
    path = tmp_path / "Model.fmu"
    path.write_bytes(b"PK\x05\x06" + bytes(18))  # the client does not look inside: the server does
    return path


POSTS: dict[str, tuple[str, str, tuple[Any, ...], dict[str, Any]]] = {
    # name: (path, method of the client, args, kwargs)
    "run submission": (RUNS, "runs.create", (FMU_ID,), {"stop_time": 1}),
    "run cancel": (f"/v1/runs/{RUN_ID}/cancel", "runs.cancel", (RUN_ID,), {}),
    "sweep submission": (f"/v1/fmus/{FMU_ID}/sweeps", "sweeps.create", (FMU_ID,), {"parameters": {"k": [1]}}),
    "sweep cancel": (f"/v1/sweeps/{SWEEP_ID}/cancel", "sweeps.cancel", (SWEEP_ID,), {}),
}


class TestEveryPost:
    @pytest.mark.parametrize("operation", list(POSTS))
    def test_carries_a_key_of_its_own(self, fake: FakeGateway, twin: Twin, operation: str) -> None:
        fake.serves_runs()
        fake.serves_sweeps()
        path, method, args, kwargs = POSTS[operation]
        twin(method, *args, **kwargs)
        twin(method, *args, **kwargs)
        first, second = keys(fake, "POST", path)
        assert first is not None and GENERATED.match(first)
        assert second is not None and second != first

    def test_an_upload_carries_one_too(self, fake: FakeGateway, twin: Twin, fmu_file: Path) -> None:
        fake.serves_uploads()
        twin("fmus.upload", fmu_file)
        [key] = keys(fake, "POST", "/v1/fmus")
        assert key is not None and GENERATED.match(key)

    def test_reads_and_deletes_carry_none(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.serves_runs()
        fake.answers("GET", "/v1/fmus", page([fmu_json()]))
        fake.answers("DELETE", f"/v1/fmus/{FMU_ID}", {})
        client.runs.get(RUN_ID)
        list(client.fmus.list())
        client.fmus.delete(FMU_ID)
        assert len(fake.requests()) == 3 and keys(fake) == [None, None, None]

    @pytest.mark.parametrize("method", ["runs.create", "sweeps.create"])
    def test_the_callers_key_is_sent_as_given(self, fake: FakeGateway, twin: Twin, method: str) -> None:
        fake.serves_runs()
        fake.serves_sweeps()
        extra = {"parameters": {"k": [1]}} if method == "sweeps.create" else {}
        twin(method, FMU_ID, idempotency_key="nightly-42", **extra)
        assert keys(fake, "POST") == ["nightly-42"]


class TestRetriesReuseTheKey:
    @pytest.mark.parametrize("first_answers", [
        [problem(503, "unavailable")],
        [problem(502, "bad_gateway"), problem(504, "gateway_timeout")],
        [problem(429, "rate_limited", headers={"Retry-After": "0"})],
        [problem(409, "idempotency_key_in_use", "the first attempt is still being handled")],
    ], ids=["503", "502 then 504", "429", "409 idempotency_key_in_use"])
    def test_after_error_answers(self, fake: FakeGateway, twin: Twin, first_answers: list[Any]) -> None:
        fake.answers("POST", RUNS, *first_answers, run_json())
        run = twin("runs.create", FMU_ID, stop_time=1)
        assert run.id == RUN_ID
        sent = keys(fake, "POST", RUNS)
        assert len(sent) == len(first_answers) + 1
        assert len(set(sent)) == 1 and sent[0] is not None and GENERATED.match(sent[0])

    def test_a_callers_key_is_reused_too(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", RUNS, problem(503, "unavailable"), run_json())
        twin("runs.create", FMU_ID, idempotency_key="nightly-42")
        assert keys(fake, "POST", RUNS) == ["nightly-42", "nightly-42"]

    @pytest.mark.parametrize("kind", ["sync", "async"])
    def test_after_the_server_hung_up_having_read_the_request(self, kind: str) -> None:
        # The case the key is for: the first attempt may have created (and charged) the run.
        with hanging_up_server(drops=1, then=run_json()) as server:
            run = Twin(kind, server.base_url)("runs.create", FMU_ID, stop_time=1)
        assert run.id == RUN_ID
        first, second = server.requests
        assert first[":request-line"] == second[":request-line"] == f"POST {RUNS} HTTP/1.1"
        assert first["authorization"] == f"Bearer {API_KEY}"
        assert GENERATED.match(first["idempotency-key"]) and second["idempotency-key"] == first["idempotency-key"]

    def test_an_upload_is_sent_whole_again_under_the_same_key(self, fake: FakeGateway, twin: Twin,
                                                             fmu_file: Path) -> None:
        fake.answers("GET", "/v1/fmus", page([]))
        fake.answers("POST", "/v1/fmus", problem(503, "unavailable"), fmu_json())
        twin("fmus.upload", fmu_file)
        first, second = fake.requests("POST", "/v1/fmus")
        assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
        assert first.get_data() == second.get_data() and fmu_file.read_bytes() in first.get_data()

    def test_a_new_call_after_the_retries_ran_out_gets_a_new_key(self, fake: FakeGateway) -> None:
        fake.answers("POST", RUNS, problem(503, "unavailable"), problem(503, "unavailable"), run_json())
        with FMUGatewayClient(API_KEY, fake.base_url, max_retries=1) as client:
            client._api.retry = RetryPolicy(max_retries=1, initial_delay=0.01)
            with pytest.raises(APIError, match="503"):
                client.runs.create(FMU_ID)
            client.runs.create(FMU_ID)
        first, retry, new_call = keys(fake, "POST", RUNS)
        assert first == retry and new_call != first
