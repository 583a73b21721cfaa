"""The web console in a real browser: headless Chromium (Selenium 4, Debian's chromedriver) against
``/console`` of a real gateway process (tests/api/gateway_process.py), one gateway for the module and
one browser per test. A test fails on any SEVERE entry of the browser's log it did not expect.

Without Chromium, chromedriver or selenium the tests skip, saying why, unless
``FMU_GATEWAY_TEST_REQUIRE`` names ``chromium`` (as .ci/run does): then they fail."""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

BROWSER_TESTS = Path(__file__).resolve().parent
PRIVATE_TESTS = BROWSER_TESTS.parent
# gateway_process lives in tests/api; tests/ itself is on the path through tests/conftest.py.
for _path in (BROWSER_TESTS, PRIVATE_TESTS / "api", PRIVATE_TESTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from console_page import Console, chromium_missing, start_chrome  # noqa: E402
from gateway_process import REPO_ROOT, Gateway, running_gateway  # noqa: E402
from required import unavailable  # noqa: E402
from thirdparty.fetch import fetch_thirdparty_fmus  # noqa: E402


@pytest.fixture(scope="module")
def chromium() -> None:
    reason = chromium_missing()
    if reason:
        unavailable("chromium", reason)


@pytest.fixture(scope="module")
def gateway(chromium: None) -> Iterator[Gateway]:
    with running_gateway("browser", FMU_GATEWAY_RATE_LIMIT_PER_MINUTE="0") as gateway:
        yield gateway


@pytest.fixture
def api_key(gateway: Gateway) -> str:
    """A new user's key: each test sees only what it made."""
    return gateway.create_user(credits=1000)


@pytest.fixture
def console(gateway: Gateway, tmp_path: Path) -> Iterator[Console]:
    """A desktop browser (1280x800) of its own on the gateway's console."""
    driver = start_chrome(tmp_path / "downloads")
    try:
        yield Console(driver, gateway.base_url, tmp_path / "downloads")
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def thirdparty_fmu() -> Path:
    """OpenModelica's MassSpringSystem (FMI 2.0; inputs k1, k2, k3, m1, m2): not built by this project."""
    found = fetch_thirdparty_fmus(REPO_ROOT / "var" / "thirdparty-fmus")
    if "om_fmi2" not in found:
        pytest.skip("third-party FMUs could not be downloaded from the package index")
    return found["om_fmi2"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """The console must log no error: a test that passed fails on a SEVERE entry it did not expect."""
    result = yield
    console = getattr(item, "funcargs", {}).get("console")
    if isinstance(console, Console):
        errors = console.console_errors()
        assert not errors, "the browser logged errors:\n" + "\n".join(errors)
    return result
