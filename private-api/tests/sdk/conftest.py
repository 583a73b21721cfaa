"""The SDK end to end: the SDK against a real gateway, ``fmu-gateway-admin serve`` in a subprocess on
a free port (tests/api/gateway_process.py), with a var dir under the repository's var/ that is
removed afterwards. Nothing is mocked. (How the client behaves, request by request, is tested
without a gateway in open-sdk/tests.)

The fixtures here are this directory's own: tests/api's ``gateway`` (one per database backend) is
not visible here, and this ``gateway`` is not visible there."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SDK_TESTS = Path(__file__).resolve().parent
PRIVATE_TESTS = SDK_TESTS.parent
REPO_ROOT = PRIVATE_TESTS.parents[1]
# gateway_process lives in tests/api; tests/ itself is on the path through tests/conftest.py.
for _path in (SDK_TESTS, PRIVATE_TESTS / "api", PRIVATE_TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from fmu_gateway_sdk import FMUGatewayClient  # noqa: E402
from gateway_process import Gateway, running_gateway  # noqa: E402
from thirdparty.fetch import fetch_thirdparty_fmus  # noqa: E402


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    """One gateway for the SDK's tests, without a rate limit (the retry tests start their own)."""
    with running_gateway("sdk", FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0") as gateway:
        yield gateway


@pytest.fixture(scope="session")
def api_key(gateway: Gateway) -> str:
    return gateway.create_user(credits=100_000)


@pytest.fixture
def fresh_key(gateway: Gateway) -> str:
    """A new user's key, for tests that count that user's FMUs, runs or credits."""
    return gateway.create_user(credits=1000)


@pytest.fixture(scope="session")
def client(gateway: Gateway, api_key: str) -> Iterator[FMUGatewayClient]:
    with FMUGatewayClient(api_key, gateway.base_url) as client:
        yield client


@pytest.fixture(scope="session")
def model_files(fmus: dict[str, Path]) -> dict[str, Path]:
    """The project's test FMUs by name (tests/conftest.py's ``fmus``, built once per session)."""
    return fmus


@pytest.fixture(scope="session")
def thirdparty() -> dict[str, Path]:
    """Real FMUs from other tools: om_fmi2 (OpenModelica MassSpringSystem), fmi3 (Reference-FMUs VanDerPol)."""
    found = fetch_thirdparty_fmus(REPO_ROOT / "var" / "thirdparty-fmus")
    if not found:
        pytest.skip("third-party FMUs could not be downloaded from the package index")
    return found
