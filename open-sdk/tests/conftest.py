"""The SDK's own tests: the client against a fake gateway over real HTTP on 127.0.0.1
(pytest-httpserver), so they need only the SDK and its ``[test]`` extra. What the client sends, how it
retries, which error it raises, how long it waits. The SDK against the real server is
private-api/tests/sdk."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:  # as pytest's default import mode does; --import-mode=importlib does not
    sys.path.insert(0, TESTS_DIR)

from fake_gateway import API_KEY, FAST_RETRIES, FakeGateway, Twin  # noqa: E402

from fmu_gateway_sdk import FMUGatewayClient  # noqa: E402


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver's server on the loopback address, on a free port."""
    return "127.0.0.1", 0


@pytest.fixture
def fake(httpserver: HTTPServer) -> Iterator[FakeGateway]:
    # An unexpected request gets a status the client does not retry, and fails the test afterwards.
    httpserver.no_handler_status_code = 418
    yield FakeGateway(httpserver)
    httpserver.check_assertions()


@pytest.fixture
def own_fake() -> Iterator[FakeGateway]:
    """A fake gateway of the test's own, threaded, for handlers that outlast the client's patience:
    their late answers must not land in the next test's log."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.no_handler_status_code = 418
    server.start()
    try:
        yield FakeGateway(server)
        server.check_assertions()
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def client(fake: FakeGateway) -> Iterator[FMUGatewayClient]:
    with FMUGatewayClient(API_KEY, fake.base_url) as client:
        client._api.retry = FAST_RETRIES
        yield client


@pytest.fixture(params=["sync", "async"])
def twin(request: pytest.FixtureRequest, fake: FakeGateway) -> Twin:
    """``twin("simulate", ...)``: the call through FMUGatewayClient, then through AsyncFMUGatewayClient."""
    return Twin(request.param, fake.base_url)
