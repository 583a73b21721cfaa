"""Services the suite talks to: a test whose service is missing skips, saying why, unless
``FMU_GATEWAY_TEST_REQUIRE`` names the service (comma-separated: ``chromium,docker,postgresql,redis``);
then it fails. ``.ci/run`` names them all, so CI cannot pass with part of the suite skipped."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required(service: str) -> bool:
    return service in {name.strip() for name in os.environ.get("FMU_GATEWAY_TEST_REQUIRE", "").split(",")}


def unavailable(service: str, reason: str) -> NoReturn:
    """Skip the test for want of ``service``, or fail it where the service is required."""
    if required(service):
        pytest.fail(f"{service} is required here (FMU_GATEWAY_TEST_REQUIRE) but unusable: {reason}")
    pytest.skip(reason)
