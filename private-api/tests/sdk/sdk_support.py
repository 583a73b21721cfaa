"""Helpers of the SDK tests: var dirs, reading the gateway's access log, probing which server
features exist, and restarting a gateway on the same port."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import httpx
import pytest
from gateway_process import Gateway


def count_requests(gateway: Gateway, method: str, path_pattern: str, status: int | None = None) -> int:
    """Requests in the gateway's access log whose path (query string excluded) matches ``path_pattern``."""
    line = re.compile(rf'"{method} ({path_pattern})(\?\S*)? HTTP/[\d.]+" (\d+)')
    found = (line.search(text) for text in gateway.log_path.read_text(errors="replace").splitlines())
    return sum(1 for m in found if m and (status is None or int(m.group(3)) == status))


@cache
def _openapi(base_url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    return document


def has_operation(gateway: Gateway, method: str, path: str) -> bool:
    return method.lower() in _openapi(gateway.base_url).get("paths", {}).get(path, {})


def has_parameter(gateway: Gateway, method: str, path: str, name: str) -> bool:
    operation = _openapi(gateway.base_url).get("paths", {}).get(path, {}).get(method.lower(), {})
    return any(p.get("name") == name for p in operation.get("parameters", []))


def require_server_feature(present: bool, feature: str) -> None:
    """Skip (saying which server feature is missing) unless ``present``."""
    if not present:
        reason = f"the server does not have {feature} yet"
        print(f"SKIP: {reason}")
        pytest.skip(reason)


def port_of(gateway: Gateway) -> int:
    return int(gateway.base_url.rsplit(":", 1)[1])


def crash_gateway(gateway: Gateway) -> None:
    """SIGKILL the server and everything in its process group: no graceful shutdown, like a crash."""
    os.killpg(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait(timeout=30)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)
