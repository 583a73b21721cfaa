"""``runs.create(..., dry_run=True)`` and ``sweeps.create(..., dry_run=True)``: the normal body with
``?dry_run=true``, answered by a :class:`Quote`; nothing is waited for."""

from __future__ import annotations

from typing import Any

import pytest
from fake_gateway import FMU_ID, FakeGateway, Twin, problem

from fmu_gateway_sdk import NotFoundError, Quote, ValidationError

RUNS = f"/v1/fmus/{FMU_ID}/runs"
SWEEPS = f"/v1/fmus/{FMU_ID}/sweeps"


def quote_json(**fields: Any) -> dict[str, Any]:
    return {"object": "quote", "fmu_id": FMU_ID, "runs": 1, "credits_per_run": 3, "owner_credits_per_run": 0,
            "credits_held": 3, "balance": 100, "sufficient": True, "spec": {"stop_time": 2.0}, **fields}


class TestRunQuote:
    def test_sends_the_run_body_with_dry_run_and_returns_the_quote(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", RUNS, quote_json())
        quote = twin("runs.create", FMU_ID, start_values={"mu": 2.5}, stop_time=2, dry_run=True)
        assert isinstance(quote, Quote)
        assert (quote.runs, quote.credits_held, quote.balance, quote.sufficient) == (1, 3, 100, True)
        assert quote.spec == {"stop_time": 2.0} and quote.request_id == "req_ok"
        [request] = fake.requests("POST", RUNS)
        assert request.args.get("dry_run") == "true"
        assert fake.body("POST", RUNS) == {"start_values": {"mu": 2.5}, "stop_time": 2}

    def test_does_not_wait_for_a_run(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", RUNS, quote_json())
        assert isinstance(twin("runs.create", FMU_ID, wait=30, dry_run=True), Quote)
        assert len(fake.requests()) == 1

    def test_without_dry_run_places_the_run_as_before(self, fake: FakeGateway, twin: Twin) -> None:
        fake.serves_runs()
        twin("runs.create", FMU_ID, stop_time=1)
        [request] = fake.requests("POST", RUNS)
        assert "dry_run" not in request.args

    def test_an_insufficient_balance_is_a_quote_not_an_error(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", RUNS, quote_json(balance=0, sufficient=False))
        quote = twin("runs.create", FMU_ID, dry_run=True)
        assert quote.sufficient is False and quote.balance == 0

    def test_a_run_the_model_refuses_raises_as_its_submission_would(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", RUNS, problem(422, "unknown_variable", "no variable 'nope'", variable="nope"))
        with pytest.raises(ValidationError) as caught:
            twin("runs.create", FMU_ID, start_values={"nope": 1}, dry_run=True)
        assert caught.value.code == "unknown_variable" and caught.value.variable == "nope"


class TestSweepQuote:
    def test_sends_the_sweep_body_with_dry_run_and_returns_the_quote(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", SWEEPS, quote_json(runs=3, credits_held=9))
        quote = twin("sweeps.create", FMU_ID, parameters={"mu": [0.5, 1, 2]}, stop_time=1, dry_run=True)
        assert isinstance(quote, Quote) and (quote.runs, quote.credits_held) == (3, 9)
        [request] = fake.requests("POST", SWEEPS)
        assert request.args.get("dry_run") == "true"
        assert fake.body("POST", SWEEPS) == {"stop_time": 1, "method": "grid", "parameters": {"mu": [0.5, 1, 2]}}

    def test_without_dry_run_places_the_sweep_as_before(self, fake: FakeGateway, twin: Twin) -> None:
        fake.serves_sweeps()
        twin("sweeps.create", FMU_ID, parameters={"mu": [1]})
        [request] = fake.requests("POST", SWEEPS)
        assert "dry_run" not in request.args

    def test_a_quote_of_a_model_you_cannot_see_raises_not_found(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", SWEEPS, problem(404, "not_found", "no such FMU"))
        with pytest.raises(NotFoundError) as caught:
            twin("sweeps.create", FMU_ID, parameters={"mu": [1]}, dry_run=True)
        assert caught.value.code == "not_found"
