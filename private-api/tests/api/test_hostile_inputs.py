"""Hostile requests against a real gateway: each is refused with problem+json before it costs more
than a small, fixed amount of memory, disk or CPU (docs/security.md, "Limits").

Body caps, the idempotency spool, replays authorised like the original, sweeps sized before they
are sampled, and request budgets per tenant. The registry's, the event streams' and the
validation's hostile inputs have modules of their own (test_hostile_inputs_*.py).
"""

from __future__ import annotations

import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fmus.variants import with_variables
from gateway_process import Gateway, running_gateway
from problems import assert_problem

MiB = 1 << 20


def rss_bytes(gateway: Gateway) -> int:
    """The gateway process's peak resident memory so far (VmHWM): a spike between two reads
    shows even if the memory was given back."""
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found.group(1)) * 1024


def tmp_bytes(gateway: Gateway) -> int:
    tmp = gateway.var_dir / "tmp"
    return sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) if tmp.exists() else 0


def raw_post(gateway: Gateway, path: str, headers: dict[str, str], body: Iterator[bytes],
             limit_s: float = 20.0) -> tuple[int, bytes, int]:
    """POST over a plain socket, sending ``body`` until the server answers (or stops reading):
    returns the status, the response bytes and how many body bytes were sent. Unlike an HTTP
    client, it keeps sending while the server has already refused, as an attacker would."""
    url = urlsplit(gateway.base_url)
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=limit_s) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        deadline = time.monotonic() + limit_s
        response = b""
        for chunk in body:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server closed its end: it stopped reading
            sent += len(chunk)
            if time.monotonic() > deadline:
                break
        sock.settimeout(limit_s)
        while b"\r\n\r\n" not in response or not _complete(response):
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            response += data
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    return status, response, sent


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    found = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return found is not None and len(body) >= int(found.group(1))


def problem_code(response: bytes) -> str:
    found = re.search(rb'"code":"([a-z_]+)"', response)
    return found.group(1).decode() if found else ""


def chunks(total: int, size: int = 256 << 10) -> Iterator[bytes]:
    block = b"x" * size
    for _ in range(total // size):
        yield block


def chunked(total: int, size: int = 256 << 10) -> Iterator[bytes]:
    """The same bytes in HTTP/1.1 chunked transfer encoding (no Content-Length to refuse early)."""
    for block in chunks(total, size):
        yield f"{len(block):x}\r\n".encode() + block + b"\r\n"
    yield b"0\r\n\r\n"


def new_user(gateway: Gateway, credits: int = 100, tier: str | None = None) -> tuple[httpx.Client, str]:
    key = gateway.create_user(credits, tier=tier)
    return gateway.client(key), key


def upload(client: httpx.Client, data: bytes, name: str = "m.fmu") -> str:
    response = client.post("/v1/fmus", files={"file": (name, data)})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


class TestBodyLimits:
    def test_an_anonymous_512_mib_json_body_is_413_before_it_is_read(self, gateway: Gateway) -> None:
        before = rss_bytes(gateway)
        started = time.monotonic()
        status, response, sent = raw_post(gateway, "/v1/fmus/fmu_x/runs",
                                          {"Content-Type": "application/json", "Content-Length": str(512 * MiB)},
                                          chunks(512 * MiB))
        assert status == 413 and problem_code(response) == "request_too_large", response[:400]
        assert b"application/problem+json" in response
        assert time.monotonic() - started < 5
        assert sent < 64 * MiB  # refused on the declared length, not after the body
        assert rss_bytes(gateway) - before < 64 * MiB

    def test_an_anonymous_chunked_body_is_cut_off_at_the_cap(self, gateway: Gateway) -> None:
        before = rss_bytes(gateway)
        status, response, sent = raw_post(gateway, "/v1/api-keys",
                                          {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                                          chunked(512 * MiB))
        assert status == 413 and problem_code(response) == "request_too_large", response[:400]
        assert sent < 128 * MiB
        assert rss_bytes(gateway) - before < 64 * MiB

    def test_the_webhook_route_has_its_own_small_cap(self, gateway: Gateway) -> None:
        anonymous = gateway.client(None)
        response = anonymous.post("/v1/billing/webhooks/stripe", content=b"{" + b" " * (300 << 10) + b"}",
                                  headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=x"})
        assert_problem(response, 413, "request_too_large")

    def test_a_json_body_under_the_cap_still_reaches_the_route(self, gateway: Gateway,
                                                               fmus: dict[str, Path]) -> None:
        client, _ = new_user(gateway)
        fmu = upload(client, fmus["VanDerPol"].read_bytes())
        # 900 KiB of JSON: under the 1 MiB cap, so the route judges it (an unknown variable).
        response = client.post(f"/v1/fmus/{fmu}/runs", json={"start_values": {"x" * (900 << 10): 1.0}})
        assert response.status_code == 422, response.text
        assert response.json()["code"] != "request_too_large"

    def test_an_oversized_non_file_multipart_part_is_413(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, key = new_user(gateway)
        boundary = uuid.uuid4().hex
        fmu = fmus["Feedthrough"].read_bytes()
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.fmu\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + fmu + (
                f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n").encode()

        def body() -> Iterator[bytes]:
            # A chunked body whose second part never ends: the server must count it too.
            yield f"{len(head):x}\r\n".encode() + head + b"\r\n"
            yield from chunked(300 * MiB)

        status, response, _ = raw_post(gateway, "/v1/fmus", {
            "Authorization": f"Bearer {key}", "Transfer-Encoding": "chunked",
            "Content-Type": f"multipart/form-data; boundary={boundary}"}, body())
        assert status == 413, response[:400]
        assert client.get("/v1/fmus").json()["data"] == []


class TestIdempotencySpool:
    def test_an_over_cap_upload_with_an_idempotency_key_is_refused_without_spooling_it(
            self, gateway: Gateway) -> None:
        client, key = new_user(gateway)  # the free tier: 50 MB FMUs at most
        before_rss, before_tmp = rss_bytes(gateway), tmp_bytes(gateway)
        status, response, sent = raw_post(gateway, "/v1/fmus", {
            "Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex,
            "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"}, chunked(1000 * MiB))
        assert status == 413, response[:400]
        assert problem_code(response) in ("request_too_large", "payload_too_large")
        assert sent < 300 * MiB
        assert tmp_bytes(gateway) - before_tmp < 64 * MiB
        assert rss_bytes(gateway) - before_rss < 64 * MiB
        assert client.get("/v1/fmus").json()["data"] == []

    def test_a_declared_over_cap_upload_with_a_key_is_refused_at_once(self, gateway: Gateway) -> None:
        _, key = new_user(gateway)
        status, response, sent = raw_post(gateway, "/v1/fmus", {
            "Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex,
            "Content-Type": "application/octet-stream", "Content-Length": str(1000 * MiB)}, chunks(1000 * MiB))
        assert status == 413, response[:400]
        assert sent < 64 * MiB


class TestIdempotentReplay:
    def test_a_retry_right_after_the_answer_is_a_replay_never_a_409(self, gateway: Gateway,
                                                                     fmus: dict[str, Path]) -> None:
        client, _ = new_user(gateway, 100, tier="pro")
        fmu = upload(client, fmus["VanDerPol"].read_bytes())
        for attempt in range(20):
            headers = {"Idempotency-Key": f"seq-{attempt}-{uuid.uuid4().hex}"}
            spec = {"stop_time": 0.1, "timeout_s": 1, "cache": False}  # queued, not answered from the run cache
            first = client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers)
            second = client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers)
            assert first.status_code == 202, first.text
            assert second.status_code == 202, second.text
            assert second.headers["idempotent-replayed"] == "true"
            assert second.json()["id"] == first.json()["id"]

    def test_a_narrower_credential_of_the_same_key_cannot_replay_a_new_keys_secret(
            self, gateway: Gateway) -> None:
        owner, _ = new_user(gateway)
        headers = {"Idempotency-Key": f"mint-{uuid.uuid4().hex}"}
        minted = owner.post("/v1/api-keys", json={"name": "full"}, headers=headers)
        assert minted.status_code == 201 and minted.json()["secret"]
        # An access token of the same key narrowed to runs:read: the same subject, fewer scopes.
        token = owner.post("/v1/auth/token", json={"scopes": ["runs:read"]})
        assert token.status_code == 200, token.text
        reader = gateway.client(token.json()["access_token"])
        replay = reader.post("/v1/api-keys", json={"name": "full"}, headers=headers)
        assert_problem(replay, 403, "insufficient_scope")
        assert minted.json()["secret"] not in replay.text
        # The full key itself still gets its replay.
        again = owner.post("/v1/api-keys", json={"name": "full"}, headers=headers)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["secret"] == minted.json()["secret"]

    def test_a_replay_whose_resource_is_gone_gets_the_routes_404(self, gateway: Gateway,
                                                               fmus: dict[str, Path]) -> None:
        client, _ = new_user(gateway, 100)
        fmu = upload(client, fmus["VanDerPol"].read_bytes())
        headers = {"Idempotency-Key": f"gone-{uuid.uuid4().hex}"}
        spec = {"stop_time": 0.1, "timeout_s": 1}
        first = client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers)
        assert first.status_code == 202
        deadline = time.monotonic() + 30
        while client.get(f"/v1/runs/{first.json()['id']}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.delete(f"/v1/fmus/{fmu}").status_code == 204
        assert_problem(client.post(f"/v1/fmus/{fmu}/runs", json=spec, headers=headers), 404, "not_found")

    def test_another_key_of_the_same_user_gets_422_not_the_stored_body(self, gateway: Gateway) -> None:
        owner, _ = new_user(gateway)
        second = owner.post("/v1/api-keys", json={"name": "twin"})
        assert second.status_code == 201
        twin = gateway.client(second.json()["secret"])
        headers = {"Idempotency-Key": f"bound-{uuid.uuid4().hex}"}
        minted = owner.post("/v1/api-keys", json={"name": "x"}, headers=headers)
        assert minted.status_code == 201
        replay = twin.post("/v1/api-keys", json={"name": "x"}, headers=headers)
        assert_problem(replay, 422, "idempotency_key_reused")
        assert minted.json()["secret"] not in replay.text


@pytest.fixture(scope="module")
def wide_fmu(fmus: dict[str, Path]) -> bytes:
    return with_variables(fmus["VanDerPol"], 2000, parameters=True)


class TestSweepCost:
    def test_a_zero_credit_sweep_over_2000_parameters_is_refused_before_it_is_sampled(
            self, gateway: Gateway, wide_fmu: bytes) -> None:
        client, _ = new_user(gateway, 0, tier="enterprise")
        fmu = upload(client, wide_fmu)
        parameters = {f"p{i}": {"min": 0.0, "max": 1.0} for i in range(2000)}
        before = rss_bytes(gateway)
        started = time.monotonic()
        # 10,000 samples x 2,000 parameters: too large a design, refused from the request alone.
        too_large = client.post(f"/v1/fmus/{fmu}/sweeps",
                                json={"method": "random", "samples": 10_000, "parameters": parameters})
        assert_problem(too_large, 422, "sweep_too_large")
        # 100 x 2,000 fits the design cap; with no credits the hold refuses it before any sampling.
        poor = client.post(f"/v1/fmus/{fmu}/sweeps",
                           json={"method": "random", "samples": 100, "parameters": parameters})
        assert_problem(poor, 402, "insufficient_credits")
        assert time.monotonic() - started < 5
        assert rss_bytes(gateway) - before < 64 * MiB
        assert client.get("/v1/sweeps").json()["data"] == []
        assert client.get("/v1/runs").json()["data"] == []

    def test_a_tier_caps_the_children_of_one_sweep(self, gateway: Gateway, fmus: dict[str, Path]) -> None:
        client, _ = new_user(gateway, 100_000)  # free: 1,000 children per sweep
        fmu = upload(client, fmus["VanDerPol"].read_bytes())
        body = assert_problem(client.post(f"/v1/fmus/{fmu}/sweeps", json={
            "method": "sobol", "samples": 1001, "parameters": {"mu": {"min": 0.5, "max": 2.0}}}),
            422, "too_many_samples")
        assert body["max_children"] == 1000


class TestRequestBudgetPerTenant:
    def test_minting_keys_buys_no_requests(self) -> None:
        with running_gateway("tenant-budget", FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="10",
                             FMU_GATEWAY_WARM_SANDBOXES="0", FMU_GATEWAY_REDIS_URL="") as gateway:
            owner, _ = new_user(gateway)
            keys = []
            for i in range(3):
                response = owner.post("/v1/api-keys", json={"name": f"k{i}"})
                assert response.status_code == 201, response.text
                keys.append(gateway.client(response.json()["secret"]))
            statuses = [client.get("/v1/billing/balance").status_code for client in [owner, *keys] * 5]
            # One bucket of 10 for the user, whichever key spends it (3 went on minting keys).
            assert statuses.count(200) <= 10 - 3 + 1, statuses
            limited = [owner, *keys][0].get("/v1/billing/balance")
            assert_problem(limited, 429, "rate_limited")
            # Another tenant has its own budget.
            other, _ = new_user(gateway)
            assert other.get("/v1/billing/balance").status_code == 200

    def test_replays_spend_from_the_same_budget(self) -> None:
        with running_gateway("replay-budget", FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="5",
                             FMU_GATEWAY_WARM_SANDBOXES="0", FMU_GATEWAY_REDIS_URL="") as gateway:
            owner, _ = new_user(gateway)
            headers = {"Idempotency-Key": f"replay-{uuid.uuid4().hex}"}
            statuses = [owner.post("/v1/api-keys", json={"name": "r"}, headers=headers).status_code
                        for _ in range(8)]
            assert statuses[0] == 201
            assert 429 in statuses, statuses
