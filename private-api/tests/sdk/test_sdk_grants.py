"""Sharing a model through the SDK and the CLI against a real gateway: the owner shares an FMU at a
price per run, the grantee sees and runs it, the owner sees the grants and the usage, and after a
revoke the grantee's next run is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fmu_gateway_sdk import ConflictError, Fmu, FMUGatewayClient, NotFoundError, ValidationError
from fmu_gateway_sdk.cli import app
from gateway_process import Gateway
from sdk_support import has_operation, require_server_feature
from typer.testing import CliRunner

PRICE = 5


@dataclass
class User:
    email: str
    key: str


def new_email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


def new_user(gateway: Gateway) -> User:
    email = new_email()
    return User(email, gateway.create_user(credits=1000, email=email))


@pytest.fixture(scope="module", autouse=True)
def _server_shares(gateway: Gateway) -> None:
    require_server_feature(has_operation(gateway, "post", "/v1/fmus/{fmu_id}/grants"), "model grants")


@pytest.fixture(scope="module")
def owner(gateway: Gateway) -> User:
    return new_user(gateway)


@pytest.fixture(scope="module")
def owner_client(gateway: Gateway, owner: User) -> Iterator[FMUGatewayClient]:
    with FMUGatewayClient(owner.key, gateway.base_url) as client:
        yield client


@pytest.fixture(scope="module")
def model(owner_client: FMUGatewayClient, model_files: dict[str, Path]) -> Fmu:
    return owner_client.fmus.upload(model_files["VanDerPol"])


@pytest.fixture
def grantee(gateway: Gateway) -> User:
    return new_user(gateway)


@pytest.fixture
def grantee_client(gateway: Gateway, grantee: User) -> Iterator[FMUGatewayClient]:
    with FMUGatewayClient(grantee.key, gateway.base_url) as client:
        yield client


class TestShare:
    def test_the_grantee_sees_and_runs_the_model_and_the_owner_sees_the_usage(
            self, owner_client: FMUGatewayClient, grantee_client: FMUGatewayClient, grantee: User, owner: User,
            model: Fmu) -> None:
        grant = owner_client.fmus.share(model, email=grantee.email, price_credits_per_run=PRICE)
        assert grant.id.startswith("grt_") and grant.active
        assert (grant.fmu_id, grant.email, grant.price_credits_per_run, grant.runs) == \
               (model.id, grantee.email, PRICE, 0)

        [shared] = [f for f in grantee_client.fmus.list() if f.id == model.id]
        assert shared.shared_by and owner.email not in shared.shared_by
        assert shared.price_credits_per_run == PRICE
        assert grantee_client.fmus.get(model.id).variable("mu").causality == "parameter"

        result = grantee_client.simulate(model.id, start_values={"mu": 1.5}, stop_time=2)
        assert result.to_numpy().dtype.names == ("time", "x0", "x1")
        assert (result.run.grant_id, result.run.owner_credits) == (grant.id, PRICE)

        [listed] = owner_client.fmus.grants(model)
        assert listed.id == grant.id and listed.runs == 1 and 0 < listed.earned_credits <= PRICE
        usage = owner_client.fmus.usage(model)
        assert usage.fmu_id == model.id
        assert [(g.grant_id, g.email, g.runs, g.succeeded) for g in usage.by_grantee] == \
               [(grant.id, grantee.email, 1, 1)]
        assert usage.by_day[0].day == datetime.now(UTC).date()
        assert usage.by_day[0].runs == 1 and usage.by_day[0].earned_credits == listed.earned_credits

    def test_after_a_revoke_the_grantees_next_run_is_refused(
            self, owner_client: FMUGatewayClient, grantee_client: FMUGatewayClient, grantee: User,
            model: Fmu) -> None:
        grant = owner_client.fmus.share(model, email=grantee.email)
        grantee_client.simulate(model.id, stop_time=1)
        revoked = owner_client.fmus.revoke_grant(model, grant)
        assert revoked.id == grant.id and revoked.revoked_at is not None and not revoked.active
        with pytest.raises(NotFoundError) as raised:
            grantee_client.simulate(model.id, stop_time=1)
        assert raised.value.code == "not_found"

    def test_sharing_again_with_the_same_email_is_a_conflict(self, owner_client: FMUGatewayClient,
                                                             model: Fmu) -> None:
        email = new_email()
        owner_client.fmus.share(model, email=email)
        with pytest.raises(ConflictError) as raised:
            owner_client.fmus.share(model, email=email, price_credits_per_run=1)
        assert raised.value.code == "grant_exists"

    def test_sharing_with_yourself_is_refused(self, owner_client: FMUGatewayClient, owner: User,
                                              model: Fmu) -> None:
        with pytest.raises(ValidationError) as raised:
            owner_client.fmus.share(model, email=owner.email)
        assert raised.value.code == "grant_to_self"

    def test_only_the_owner_reaches_the_grants(self, owner_client: FMUGatewayClient,
                                               grantee_client: FMUGatewayClient, grantee: User, model: Fmu) -> None:
        owner_client.fmus.share(model, email=grantee.email)
        with pytest.raises(NotFoundError):
            grantee_client.fmus.grants(model.id)
        with pytest.raises(NotFoundError):
            grantee_client.fmus.share(model.id, email=new_email())

    def test_the_grantees_own_upload_of_the_same_bytes_is_theirs(
            self, owner_client: FMUGatewayClient, grantee_client: FMUGatewayClient, grantee: User, model: Fmu,
            model_files: dict[str, Path]) -> None:
        owner_client.fmus.share(model, email=grantee.email, price_credits_per_run=PRICE)
        own = grantee_client.fmus.upload(model_files["VanDerPol"])
        assert own.id != model.id and own.shared_by is None and own.price_credits_per_run is None
        assert grantee_client.simulate(model_files["VanDerPol"], stop_time=1).run.grant_id is None


class TestUpdate:
    def test_the_owner_marks_the_model_not_deterministic(self, owner_client: FMUGatewayClient, model: Fmu) -> None:
        assert model.deterministic
        updated = owner_client.fmus.update(model, deterministic=False)
        try:
            assert updated.id == model.id and updated.deterministic is False
            assert owner_client.fmus.get(model).deterministic is False
        finally:
            owner_client.fmus.update(model, deterministic=True)


class TestShareCommand:
    def test_share_list_and_revoke(self, gateway: Gateway, owner: User, owner_client: FMUGatewayClient,
                                   model: Fmu) -> None:
        cli = CliRunner(env={"FMU_GATEWAY_API_KEY": owner.key, "FMU_GATEWAY_URL": gateway.base_url,
                             "COLUMNS": "200"})
        email = new_email()
        shared = cli.invoke(app, ["share", model.id, email, "--price", "3"])
        assert shared.exit_code == 0, shared.output
        assert email in shared.stdout and "grt_" in shared.stdout

        listed = cli.invoke(app, ["share", model.id, "--list", "-q"])
        assert listed.exit_code == 0, listed.output
        [grant] = [g for g in owner_client.fmus.grants(model) if g.email == email]
        assert grant.id in listed.stdout.split() and grant.price_credits_per_run == 3

        revoked = cli.invoke(app, ["share", model.id, "--revoke", grant.id])
        assert revoked.exit_code == 0, revoked.output
        assert grant.id in revoked.stdout and datetime.now(UTC).strftime("%Y-%m-%d") in revoked.stdout

        again = cli.invoke(app, ["share", model.id, email])
        assert again.exit_code == 0, again.output  # a revoked grant does not block a new one

        conflict = cli.invoke(app, ["share", model.id, email])
        assert conflict.exit_code == 1 and "grant_exists" in conflict.stderr
