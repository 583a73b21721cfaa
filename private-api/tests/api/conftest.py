"""A real gateway: ``fmu-gateway-admin serve`` in a subprocess on a free port, spoken to over
HTTP. Its var dir sits inside the repository (not /tmp) so sandbox isolation is tested against
files a model could really reach if the sandbox leaked."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from databases import BACKENDS, temporary_database
from gateway_process import REPO_ROOT, Gateway, start_gateway, stop_gateway


@pytest.fixture(scope="session", params=BACKENDS)
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """The whole end-to-end suite runs once per database backend.

    Without request limits, so no test is throttled by how fast the suite runs (they are tested on
    gateways of their own: test_limits, test_access). Every other tier limit applies: a test that
    needs more than the free tier allows asks for a tier (``create_user(tier=...)``)."""
    var_dir = REPO_ROOT / "var" / f"test-{uuid.uuid4().hex[:8]}"
    var_dir.mkdir(parents=True)
    try:
        with temporary_database(request.param, var_dir) as database_url:
            gateway = start_gateway(var_dir, FMU_GATEWAY_DATABASE_URL=database_url,
                                    FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0", FMU_GATEWAY_MAX_GRANTS_PER_FMU="3")
            try:
                yield gateway
            finally:
                stop_gateway(gateway)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def alice(gateway: Gateway) -> httpx.Client:
    return gateway.client(gateway.create_user())


@pytest.fixture(scope="session")
def bob(gateway: Gateway) -> httpx.Client:
    return gateway.client(gateway.create_user())


@pytest.fixture(scope="session")
def uploaded(alice: httpx.Client, fmus: dict[str, Path]) -> dict[str, dict[str, object]]:
    """Alice's uploads of every test FMU, by name."""
    out = {}
    for name, path in fmus.items():
        with path.open("rb") as handle:
            response = alice.post("/v1/fmus", files={"file": (path.name, handle)})
        assert response.status_code in (200, 201), response.text
        out[name] = response.json()
    return out
