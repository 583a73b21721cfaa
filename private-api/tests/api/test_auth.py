"""API keys managed over the API, their lifecycle, and access tokens (JWTs) exchanged for them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from gateway_process import JWT_SECRET, Gateway
from problems import assert_problem

from app.auth.service import generate_api_key

ALL_SCOPES = ["fmus:read", "fmus:write", "runs:read", "runs:write", "billing:read", "billing:write",
              "keys:read", "keys:write"]


def new_user(gateway: Gateway) -> httpx.Client:
    """A fresh user's client (its signup key, all scopes), on a tier whose rate limit tests never reach."""
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    result = gateway.admin("create-user", "--email", email, "--credits", "10")
    assert result.returncode == 0, result.stderr
    assert gateway.admin("set-tier", "--email", email, "--tier", "enterprise").returncode == 0
    return gateway.client(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def owner(gateway: Gateway) -> httpx.Client:
    """One user per backend whose keys most tests create (making users through the CLI is slow)."""
    return new_user(gateway)


@pytest.fixture(scope="module")
def stranger(gateway: Gateway) -> httpx.Client:
    return new_user(gateway)


def own_key_id(client: httpx.Client) -> str:
    """The id of the key ``client`` authenticates with (the only key of a fresh user)."""
    response = client.get("/v1/api-keys", params={"limit": 1})
    assert response.status_code == 200, response.text
    key_id: str = response.json()["data"][0]["id"]
    return key_id


def create_key(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/api-keys", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def exchange(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/auth/token", json=body or None)
    assert response.status_code == 200, response.text
    token: dict[str, Any] = response.json()
    return token


def with_bearer(gateway: Gateway, credential: str) -> httpx.Client:
    return gateway.client(credential)


def key_client(gateway: Gateway, owner: httpx.Client, **body: Any) -> tuple[httpx.Client, dict[str, Any]]:
    """A new key of ``owner``'s user and a client that authenticates with it."""
    created = create_key(owner, **body)
    return with_bearer(gateway, created["secret"]), created


class TestCreateKey:
    def test_secret_is_shown_once_and_the_key_works_with_its_scopes(self, gateway: Gateway,
                                                                     owner: httpx.Client) -> None:
        alice, creator = key_client(gateway, owner)
        created = create_key(alice, name="ci", scopes=["fmus:read", "keys:read"])
        secret = created["secret"]
        assert secret.startswith("fmu_test_") and created["prefix"] == secret[:13]
        assert created["name"] == "ci" and created["scopes"] == ["fmus:read", "keys:read"]
        assert created["created_by_key_id"] == creator["id"] and created["revoked_at"] is None
        assert created["expires_at"] is None and created["last_used_at"] is None and created["live"] is False

        fetched = alice.get(f"/v1/api-keys/{created['id']}")
        listed = alice.get("/v1/api-keys")
        for response in (fetched, listed):
            assert response.status_code == 200
            assert secret not in response.text and secret[13:] not in response.text
            assert "secret" not in response.text and "hash" not in response.text
        assert fetched.json() == {k: v for k, v in created.items() if k != "secret"}

        ci = with_bearer(gateway, secret)
        assert ci.get("/v1/fmus").status_code == 200
        body = assert_problem(ci.post("/v1/fmus", files={"file": ("v.fmu", b"PK")}),
                              403, "insufficient_scope")
        assert body["scope"] == "fmus:write"
        assert_problem(ci.post("/v1/api-keys", json={}), 403, "insufficient_scope")

    def test_defaults_are_the_callers_scopes_kind_and_no_expiry(self, gateway: Gateway,
                                                                owner: httpx.Client) -> None:
        limited, _ = key_client(gateway, owner, scopes=["keys:write", "keys:read", "runs:read"])
        created = create_key(limited)
        assert created["scopes"] == ["runs:read", "keys:read", "keys:write"]
        assert created["live"] is False and created["expires_at"] is None and created["name"] is None

    def test_a_live_key_on_request(self, gateway: Gateway, owner: httpx.Client) -> None:
        created = create_key(owner, live=True)
        assert created["secret"].startswith("fmu_live_") and created["live"] is True
        assert with_bearer(gateway, created["secret"]).get("/v1/fmus").status_code == 200

    def test_more_scopes_than_the_caller_has_is_scope_escalation(self, gateway: Gateway,
                                                                 owner: httpx.Client) -> None:
        limited, created = key_client(gateway, owner, scopes=["keys:write", "keys:read", "fmus:read"])
        body = assert_problem(limited.post("/v1/api-keys", json={"scopes": ["fmus:read", "runs:write", "fmus:write"]}),
                              403, "scope_escalation")
        assert body["scopes"] == ["fmus:write", "runs:write"]
        assert limited.get("/v1/api-keys", params={"limit": 1}).json()["data"][0]["id"] == created["id"]

    def test_unknown_scope_is_422(self, owner: httpx.Client) -> None:
        body = assert_problem(owner.post("/v1/api-keys", json={"scopes": ["fmus:read", "root"]}),
                              422, "unknown_scope")
        assert body["scopes"] == ["root"]

    def test_expiry_given_twice_or_in_the_past_is_422(self, owner: httpx.Client) -> None:
        alice = owner
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert_problem(alice.post("/v1/api-keys", json={"expires_at": later, "expires_in_s": 60}),
                       422, "validation_error")
        earlier = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        assert_problem(alice.post("/v1/api-keys", json={"expires_at": earlier}), 422, "invalid_expiry")
        assert_problem(alice.post("/v1/api-keys", json={"expires_in_s": 0}), 422, "validation_error")

    def test_expires_at_is_kept(self, owner: httpx.Client) -> None:
        at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
        created = create_key(owner, expires_at=at.isoformat())
        assert datetime.fromisoformat(created["expires_at"]) == at

    def test_a_key_never_outlives_the_key_that_created_it(self, gateway: Gateway, owner: httpx.Client) -> None:
        alice = owner
        short = with_bearer(gateway, create_key(alice, expires_in_s=3600)["secret"])
        body = assert_problem(short.post("/v1/api-keys", json={"expires_in_s": 7200}), 403, "expiry_escalation")
        assert body["creator_expires_at"]
        child = create_key(short)
        parent = alice.get(f"/v1/api-keys/{child['created_by_key_id']}").json()
        assert child["expires_at"] == parent["expires_at"] is not None
        assert create_key(short, expires_in_s=60)["expires_at"] < parent["expires_at"]

    def test_a_user_holds_at_most_max_api_keys_per_user_live_keys(self, gateway: Gateway) -> None:
        """The default, 100, counts the signup key; a revoked key frees its place."""
        alice = new_user(gateway)
        created = [create_key(alice)["id"] for _ in range(99)]
        refused = assert_problem(alice.post("/v1/api-keys", json={}), 409, "too_many_api_keys")
        assert refused["limit"] == 100
        assert alice.post(f"/v1/api-keys/{created[0]}/revoke").status_code == 200
        create_key(alice)

    def test_managing_keys_needs_the_keys_scopes(self, gateway: Gateway, owner: httpx.Client) -> None:
        reader, _ = key_client(gateway, owner, scopes=["fmus:read"])
        assert assert_problem(reader.post("/v1/api-keys", json={}), 403, "insufficient_scope")["scope"] == "keys:write"
        assert assert_problem(reader.get("/v1/api-keys"), 403, "insufficient_scope")["scope"] == "keys:read"


class TestListAndGet:
    def test_pages_through_the_users_keys_newest_first(self, gateway: Gateway) -> None:
        alice = new_user(gateway)
        first = own_key_id(alice)
        created = [create_key(alice, name=f"k{i}")["id"] for i in range(3)]
        page = alice.get("/v1/api-keys", params={"limit": 2}).json()
        assert [k["id"] for k in page["data"]] == created[::-1][:2] and page["has_more"] is True
        rest = alice.get("/v1/api-keys", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert [k["id"] for k in rest["data"]] == [created[0], first] and rest["has_more"] is False
        assert rest["next_cursor"] is None

    def test_other_users_keys_are_404(self, owner: httpx.Client, stranger: httpx.Client) -> None:
        alice, bob = owner, stranger
        alices = create_key(alice)["id"]
        assert_problem(bob.get(f"/v1/api-keys/{alices}"), 404, "not_found")
        assert_problem(bob.post(f"/v1/api-keys/{alices}/revoke"), 404, "not_found")
        assert alices not in bob.get("/v1/api-keys").text
        assert alice.get(f"/v1/api-keys/{alices}").json()["revoked_at"] is None


class TestRevoke:
    def test_a_revoked_key_is_401_and_revoking_again_changes_nothing(self, gateway: Gateway,
                                                                     owner: httpx.Client) -> None:
        alice = owner
        other, created = key_client(gateway, alice)
        assert other.get("/v1/fmus").status_code == 200
        revoked = alice.post(f"/v1/api-keys/{created['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert_problem(other.get("/v1/fmus"), 401, "api_key_revoked")
        again = alice.post(f"/v1/api-keys/{created['id']}/revoke")
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
        listed = {k["id"]: k for k in alice.get("/v1/api-keys", params={"limit": 100}).json()["data"]}
        assert listed[created["id"]]["revoked_at"] == revoked.json()["revoked_at"]

    def test_a_key_can_revoke_itself(self, gateway: Gateway, owner: httpx.Client) -> None:
        alice, created = key_client(gateway, owner)
        response = alice.post(f"/v1/api-keys/{created['id']}/revoke")
        assert response.status_code == 200 and response.json()["revoked_at"] is not None
        assert_problem(alice.get("/v1/fmus"), 401, "api_key_revoked")

    def test_a_well_formed_key_never_issued_is_401_unauthenticated(self, gateway: Gateway) -> None:
        assert_problem(with_bearer(gateway, generate_api_key()).get("/v1/fmus"), 401, "unauthenticated")


class TestExpiry:
    def test_an_expired_key_is_401(self, gateway: Gateway, owner: httpx.Client) -> None:
        client, created = key_client(gateway, owner, expires_in_s=1)
        assert client.get("/v1/fmus").status_code == 200
        time.sleep(max(0.0, (datetime.fromisoformat(created["expires_at"]) - datetime.now(UTC)).total_seconds())
                   + 0.2)
        assert_problem(client.get("/v1/fmus"), 401, "api_key_expired")


class TestLastUsed:
    def test_set_on_first_use_and_then_at_most_once_a_minute(self, gateway: Gateway, owner: httpx.Client) -> None:
        alice = owner
        other, created = key_client(gateway, alice)
        assert created["last_used_at"] is None
        before = datetime.now(UTC)
        assert other.get("/v1/fmus").status_code == 200
        first = alice.get(f"/v1/api-keys/{created['id']}").json()["last_used_at"]
        assert first is not None and datetime.fromisoformat(first) >= before - timedelta(seconds=1)
        assert other.get("/v1/fmus").status_code == 200
        assert alice.get(f"/v1/api-keys/{created['id']}").json()["last_used_at"] == first

    def test_use_through_an_access_token_counts(self, gateway: Gateway, owner: httpx.Client) -> None:
        alice = owner
        key, created = key_client(gateway, alice, scopes=["fmus:read"])
        token = exchange(key)["access_token"]
        # The exchange itself was a use of the key.
        assert alice.get(f"/v1/api-keys/{created['id']}").json()["last_used_at"] is not None
        assert with_bearer(gateway, token).get("/v1/fmus").status_code == 200


def decode(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="fmu-gateway-api",
                                        issuer="fmu-gateway")
    return claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], claims: dict[str, Any], signature: bytes | None = None,
              digest: str = "sha256") -> str:
    """A JWT built byte by byte; ``signature=None`` signs it with HMAC-``digest`` under the test secret."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if signature is None:
        signature = hmac.new(JWT_SECRET.encode(), signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{b64url(signature)}"


def signed(claims: dict[str, Any], **headers: Any) -> str:
    """Signed as the gateway signs, with other claims."""
    return jwt.encode(claims, JWT_SECRET, "HS256", headers={"typ": "at+jwt", **headers})


def with_payload_of(token: str, claims: dict[str, Any]) -> str:
    """``token`` with its payload swapped for ``claims``, its header and signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


class TestAccessTokens:
    def test_an_access_token_works_as_bearer(self, gateway: Gateway, owner: httpx.Client) -> None:
        alice, created = key_client(gateway, owner)
        key_id = created["id"]
        response = alice.post("/v1/auth/token")
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer" and body["scopes"] == sorted(ALL_SCOPES)
        assert 595 <= body["expires_in"] <= 600
        claims = decode(body["access_token"])
        assert claims["key_id"] == key_id and claims["scopes"] == sorted(ALL_SCOPES)
        assert claims["exp"] - claims["iat"] == 600 and claims["jti"] and claims["sub"].startswith("usr_")
        assert datetime.fromisoformat(body["expires_at"]) == datetime.fromtimestamp(claims["exp"], UTC)
        assert jwt.get_unverified_header(body["access_token"]) == {"alg": "HS256", "typ": "at+jwt"}

        with_token = with_bearer(gateway, body["access_token"])
        assert with_token.get("/v1/fmus").status_code == 200
        assert with_token.get("/v1/billing/balance").json()["credits"] == 10
        # Keys can be managed with a token too; they are recorded as created by the token's key.
        assert create_key(with_token, scopes=["runs:read"])["created_by_key_id"] == key_id

    def test_a_token_narrowed_to_some_scopes_has_only_those(self, gateway: Gateway, owner: httpx.Client) -> None:
        alice = owner
        body = exchange(alice, scopes=["fmus:read", "keys:write"])
        assert body["scopes"] == ["fmus:read", "keys:write"]
        narrow = with_bearer(gateway, body["access_token"])
        assert narrow.get("/v1/fmus").status_code == 200
        assert assert_problem(narrow.get("/v1/runs"), 403, "insufficient_scope")["scope"] == "runs:read"
        # What a token lacks it cannot hand to a new key either.
        assert_problem(narrow.post("/v1/api-keys", json={"scopes": ["runs:read"]}), 403, "scope_escalation")
        assert create_key(narrow)["scopes"] == ["fmus:read", "keys:write"]

    def test_a_token_with_more_scopes_than_its_key_is_refused(self, gateway: Gateway, owner: httpx.Client) -> None:
        reader, _ = key_client(gateway, owner, scopes=["fmus:read"])
        assert_problem(reader.post("/v1/auth/token", json={"scopes": ["fmus:write"]}), 403, "scope_escalation")
        assert_problem(reader.post("/v1/auth/token", json={"scopes": ["admin"]}), 422, "unknown_scope")
        assert exchange(reader)["scopes"] == ["fmus:read"]

    def test_a_token_cannot_be_exchanged_for_another(self, gateway: Gateway, owner: httpx.Client) -> None:
        token = exchange(owner)["access_token"]
        assert_problem(with_bearer(gateway, token).post("/v1/auth/token"), 401, "api_key_required")

    def test_tokens_of_a_revoked_key_stop_working_at_once(self, gateway: Gateway, owner: httpx.Client) -> None:
        alice = owner
        key, created = key_client(gateway, alice)
        token = exchange(key)["access_token"]
        with_token = with_bearer(gateway, token)
        assert with_token.get("/v1/fmus").status_code == 200
        alice.post(f"/v1/api-keys/{created['id']}/revoke")
        assert_problem(with_token.get("/v1/fmus"), 401, "api_key_revoked")

    def test_a_token_never_outlives_its_key(self, gateway: Gateway, owner: httpx.Client) -> None:
        key, created = key_client(gateway, owner, expires_in_s=2)
        body = exchange(key)
        assert body["expires_in"] <= 2
        assert datetime.fromisoformat(body["expires_at"]) <= datetime.fromisoformat(created["expires_at"])
        with_token = with_bearer(gateway, body["access_token"])
        time.sleep(max(0.0, (datetime.fromisoformat(created["expires_at"]) - datetime.now(UTC)).total_seconds())
                   + 0.2)
        response = with_token.get("/v1/fmus")
        assert response.status_code == 401 and response.json()["code"] in ("token_expired", "api_key_expired")

    def test_a_malformed_bearer_is_401_invalid_token(self, gateway: Gateway) -> None:
        response = with_bearer(gateway, "not-a-jwt").get("/v1/fmus")
        assert_problem(response, 401, "invalid_token")
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.fixture(scope="module")
def genuine(owner: httpx.Client) -> dict[str, Any]:
    """The claims of a real token, to forge variants of."""
    return decode(exchange(owner)["access_token"])


def _forge(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    forged = {**claims, **changes}
    return {k: v for k, v in forged.items() if v is not None}


FORGERIES = {
    "another audience": lambda c: signed(_forge(c, aud="someone-else")),
    "another issuer": lambda c: signed(_forge(c, iss="https://evil.example")),
    "another secret": lambda c: jwt.encode(c, "another-secret-of-at-least-32-bytes!!", "HS256",
                                           headers={"typ": "at+jwt"}),
    "tampered payload": lambda c: with_payload_of(signed(c), _forge(c, scopes=ALL_SCOPES, exp=c["exp"] + 3600)),
    "tampered signature": lambda c: (lambda t: t[:-6] + ("AAAAAA" if not t.endswith("AAAAAA") else "BBBBBB"))(
        signed(c)),
    "alg none": lambda c: hand_made({"alg": "none", "typ": "at+jwt"}, c, signature=b""),
    "alg None capitalised": lambda c: hand_made({"alg": "None", "typ": "at+jwt"}, c, signature=b""),
    "HS512 under the right secret": lambda c: hand_made({"alg": "HS512", "typ": "at+jwt"}, c, digest="sha512"),
    "RS256 header over an HMAC signature": lambda c: hand_made({"alg": "RS256", "typ": "at+jwt"}, c),
    "missing scopes claim": lambda c: signed(_forge(c, scopes=None)),
    "missing key_id claim": lambda c: signed(_forge(c, key_id=None)),
    "missing exp": lambda c: signed(_forge(c, exp=None)),
    "missing aud": lambda c: signed(_forge(c, aud=None)),
    "audience list": lambda c: signed(_forge(c, aud=["fmu-gateway-api", "other"])),
    "scopes not a list": lambda c: signed(_forge(c, scopes="fmus:read")),
    "not yet valid": lambda c: signed(_forge(c, nbf=int(time.time()) + 300)),
    "not an access token (typ)": lambda c: jwt.encode(c, JWT_SECRET, "HS256"),
    "key of another user": lambda c: signed(_forge(c, sub="usr_00000000000000000000000000")),
    "unknown key": lambda c: signed(_forge(c, key_id="key_00000000000000000000000000")),
}


class TestForgedTokens:
    def test_a_correctly_signed_token_is_accepted(self, gateway: Gateway, genuine: dict[str, Any]) -> None:
        # The forgeries below differ from this one in one way each.
        token = signed(genuine)
        assert with_bearer(gateway, token).get("/v1/fmus").status_code == 200

    @pytest.mark.parametrize("forgery", list(FORGERIES))
    def test_a_forged_token_is_401_invalid_token(self, gateway: Gateway, genuine: dict[str, Any],
                                                 forgery: str) -> None:
        response = with_bearer(gateway, FORGERIES[forgery](genuine)).get("/v1/fmus")
        assert_problem(response, 401, "invalid_token")

    def test_an_expired_token_is_401_token_expired(self, gateway: Gateway, genuine: dict[str, Any]) -> None:
        past = int(time.time()) - 120
        token = signed(_forge(genuine, iat=past - 600, nbf=past - 600, exp=past))
        response = with_bearer(gateway, token).get("/v1/fmus")
        assert_problem(response, 401, "token_expired")
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
