"""Sharing an FMU: ``client.fmus.share``, ``grants``, ``revoke_grant``, ``usage`` and ``update``, in both
clients, and ``fmu-gateway share``: the requests they send and the models they parse; the fields
servers without sharing do not send have defaults."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fake_gateway import (
    API_KEY,
    CREATED_AT,
    FMU_ID,
    FakeGateway,
    Twin,
    fmu_json,
    json_response,
    page,
    problem,
    run_json,
)
from typer.testing import CliRunner
from werkzeug import Request, Response

from fmu_gateway_sdk import ConflictError, Fmu, FMUGatewayClient, FmuUsage, Grant, Run
from fmu_gateway_sdk.cli import app

GRANT_ID = "grt_fake1"
GRANTS = f"/v1/fmus/{FMU_ID}/grants"
REVOKED_AT = "2026-01-02T00:00:00Z"


def grant_json(grant_id: str = GRANT_ID, **fields: Any) -> dict[str, Any]:
    return {"id": grant_id, "object": "grant", "fmu_id": FMU_ID, "email": "ada@example.com",
            "price_credits_per_run": 5, "created_at": CREATED_AT, "revoked_at": None, "runs": 3,
            "earned_credits": 12, **fields}


USAGE = {"object": "fmu_usage", "fmu_id": FMU_ID,
         "by_grantee": [{"grant_id": GRANT_ID, "email": "ada@example.com", "runs": 3, "succeeded": 2,
                         "earned_credits": 8}],
         "by_day": [{"day": "2026-01-02", "runs": 3, "earned_credits": 8}]}


def two_pages(request: Request) -> Response:
    if request.args.get("cursor") is None:
        return json_response({"object": "list", "data": [grant_json("grt_a")], "has_more": True,
                              "next_cursor": "c2"})
    return json_response(page([grant_json("grt_b", revoked_at=REVOKED_AT)]))


class TestShare:
    def test_share_posts_the_email_and_price_and_returns_the_grant(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", GRANTS, json_response(grant_json(), status=201))
        grant = twin("fmus.share", FMU_ID, email="ada@example.com", price_credits_per_run=5)
        assert fake.body("POST", GRANTS) == {"email": "ada@example.com", "price_credits_per_run": 5}
        assert isinstance(grant, Grant) and grant.id == GRANT_ID and grant.active
        assert (grant.price_credits_per_run, grant.runs, grant.earned_credits) == (5, 3, 12)

    def test_the_price_defaults_to_nothing(self, fake: FakeGateway, client: FMUGatewayClient) -> None:
        fake.answers("POST", GRANTS, json_response(grant_json(price_credits_per_run=0), status=201))
        client.fmus.share(FMU_ID, email="ada@example.com")
        assert fake.body("POST", GRANTS)["price_credits_per_run"] == 0

    def test_an_existing_grant_is_a_conflict(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("POST", GRANTS, problem(409, "grant_exists", "ada@example.com has an active grant"))
        with pytest.raises(ConflictError) as raised:
            twin("fmus.share", FMU_ID, email="ada@example.com")
        assert raised.value.code == "grant_exists"


class TestGrants:
    def test_grants_reads_every_page(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers_with("GET", GRANTS, two_pages)
        grants = twin("fmus.grants", FMU_ID)
        assert [g.id for g in grants] == ["grt_a", "grt_b"]
        assert [g.active for g in grants] == [True, False]
        assert [r.args.get("cursor") for r in fake.requests("GET", GRANTS)] == [None, "c2"]

    def test_revoke_deletes_the_grant_by_id_or_object(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("DELETE", f"{GRANTS}/{GRANT_ID}", grant_json(revoked_at=REVOKED_AT))
        by_id = twin("fmus.revoke_grant", FMU_ID, GRANT_ID)
        by_object = twin("fmus.revoke_grant", FMU_ID, Grant.model_validate(grant_json()))
        assert by_id == by_object and not by_id.active
        assert len(fake.requests("DELETE", f"{GRANTS}/{GRANT_ID}")) == 2

    def test_usage_parses_grantees_and_days(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("GET", f"/v1/fmus/{FMU_ID}/usage", USAGE)
        usage = twin("fmus.usage", FMU_ID)
        assert isinstance(usage, FmuUsage)
        assert [(g.email, g.runs, g.succeeded, g.earned_credits) for g in usage.by_grantee] == \
               [("ada@example.com", 3, 2, 8)]
        assert usage.by_day[0].day == date(2026, 1, 2) and usage.by_day[0].earned_credits == 8


class TestUpdate:
    def test_update_patches_deterministic(self, fake: FakeGateway, twin: Twin) -> None:
        fake.answers("PATCH", f"/v1/fmus/{FMU_ID}", fmu_json(deterministic=False))
        fmu = twin("fmus.update", FMU_ID, deterministic=False)
        assert fake.body("PATCH", f"/v1/fmus/{FMU_ID}") == {"deterministic": False}
        assert isinstance(fmu, Fmu) and fmu.deterministic is False


class TestNewFields:
    def test_a_server_without_sharing_still_parses(self) -> None:
        fmu = Fmu.model_validate(fmu_json())
        run = Run.model_validate(run_json())
        assert (fmu.deterministic, fmu.shared_by, fmu.price_credits_per_run) == (True, None, None)
        assert (run.cached_from, run.owner_credits, run.grant_id) == (None, 0, None)

    def test_shared_fmus_and_their_runs_say_so(self) -> None:
        fmu = Fmu.model_validate(fmu_json(shared_by="Ada", price_credits_per_run=5, deterministic=True))
        run = Run.model_validate(run_json(cached_from="run_earlier", owner_credits=5, grant_id=GRANT_ID))
        assert (fmu.shared_by, fmu.price_credits_per_run) == ("Ada", 5)
        assert (run.cached_from, run.owner_credits, run.grant_id) == ("run_earlier", 5, GRANT_ID)

    def test_an_upload_is_not_skipped_for_a_model_shared_with_you(self, fake: FakeGateway,
                                                                  client: FMUGatewayClient, tmp_path: Path) -> None:
        path = tmp_path / "Model.fmu"
        path.write_bytes(b"PK fake fmu")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        fake.answers("GET", "/v1/fmus", page([fmu_json(id="fmu_theirs", sha256=digest, shared_by="Ada")]))
        fake.answers("POST", "/v1/fmus", fmu_json(sha256=digest))
        assert client.fmus.ensure_uploaded(path).id == FMU_ID
        assert len(fake.requests("POST", "/v1/fmus")) == 1


@pytest.fixture
def cli(fake: FakeGateway) -> CliRunner:
    return CliRunner(env={"FMU_GATEWAY_API_KEY": API_KEY, "FMU_GATEWAY_URL": fake.base_url, "COLUMNS": "200"})


class TestShareCommand:
    def test_share_prints_the_grant(self, fake: FakeGateway, cli: CliRunner) -> None:
        fake.answers("POST", GRANTS, json_response(grant_json(), status=201))
        result = cli.invoke(app, ["share", FMU_ID, "ada@example.com", "--price", "5"])
        assert result.exit_code == 0, result.output
        assert fake.body("POST", GRANTS) == {"email": "ada@example.com", "price_credits_per_run": 5}
        assert GRANT_ID in result.stdout and "ada@example.com" in result.stdout

    def test_list_prints_every_grant(self, fake: FakeGateway, cli: CliRunner) -> None:
        fake.answers_with("GET", GRANTS, two_pages)
        result = cli.invoke(app, ["share", FMU_ID, "--list"])
        assert result.exit_code == 0, result.output
        assert "grt_a" in result.stdout and "grt_b" in result.stdout and "2026-01-02" in result.stdout
        assert cli.invoke(app, ["share", FMU_ID, "--list", "-q"]).stdout.split() == ["grt_a", "grt_b"]

    def test_revoke_deletes_the_grant(self, fake: FakeGateway, cli: CliRunner) -> None:
        fake.answers("DELETE", f"{GRANTS}/{GRANT_ID}", grant_json(revoked_at=REVOKED_AT))
        result = cli.invoke(app, ["share", FMU_ID, "--revoke", GRANT_ID, "-q"])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == GRANT_ID

    @pytest.mark.parametrize("args", [[], ["ada@example.com", "--list"], ["--list", "--revoke", GRANT_ID],
                                      ["--list", "--price", "3"]])
    def test_one_of_email_list_or_revoke_else_a_usage_error(self, fake: FakeGateway, cli: CliRunner,
                                                            args: list[str]) -> None:
        result = cli.invoke(app, ["share", FMU_ID, *args])
        assert result.exit_code == 2
        assert fake.requests() == []

    def test_an_api_error_is_exit_1_with_the_code(self, fake: FakeGateway, cli: CliRunner) -> None:
        fake.answers("POST", GRANTS, problem(422, "grant_to_self", "that is you"))
        result = cli.invoke(app, ["share", FMU_ID, "me@example.com"])
        assert result.exit_code == 1 and "grant_to_self" in result.stderr
        assert json.loads(fake.requests("POST", GRANTS)[0].get_data())["email"] == "me@example.com"
