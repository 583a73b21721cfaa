"""``StorageAdmissionMiddleware``: while storage is short, the routes that store are answered 507
without a byte of their body read; every other request goes through."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.types import Message, Receive, Scope, Send

from app.fmus import routes as fmus
from app.runs import routes as runs
from app.storage import LocalStorage
from app.storage.space import FreeSpace
from app.storage_admission import StorageAdmissionMiddleware
from app.sweeps import routes as sweeps

MIB = 1 << 20
ROUTES = [route for router in (fmus.router, runs.router, sweeps.router) for route in router.routes
          if isinstance(route, APIRoute)]


class FixedFreeStorage(LocalStorage):
    def __init__(self, root: Path, free: int) -> None:
        super().__init__(root)
        self.free = free

    def free_bytes(self) -> int | None:
        return self.free


def call(method: str, path: str, free: int, tmp_path: Path) -> tuple[list[Message], bool]:
    """The messages sent, and whether the inner app was called."""
    reached = False

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal reached
        reached = True

    async def receive() -> Message:
        raise AssertionError("the body was read")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    ctx = SimpleNamespace(free_space=FreeSpace(FixedFreeStorage(tmp_path, free), MIB))
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [],
                             "query_string": b"", "app": SimpleNamespace(state=SimpleNamespace(ctx=ctx))}
    asyncio.run(StorageAdmissionMiddleware(inner, ROUTES)(scope, receive, send))
    return sent, reached


@pytest.mark.parametrize("path", ["/v1/fmus", "/v1/fmus/fmu_1/runs", "/v1/fmus/fmu_1/sweeps"])
def test_a_request_that_stores_is_507_before_its_body_is_read(path: str, tmp_path: Path) -> None:
    sent, reached = call("POST", path, MIB - 1, tmp_path)
    assert not reached
    start, body = sent
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    assert start["status"] == 507 and headers["retry-after"] == "60" and headers["connection"] == "close"
    assert json.loads(body["body"])["code"] == "storage_full"


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/fmus"), ("DELETE", "/v1/fmus/fmu_1"),
                                              ("POST", "/v1/runs/run_1/cancel"), ("GET", "/v1/fmus/fmu_1/runs")])
def test_a_request_that_stores_nothing_goes_through(method: str, path: str, tmp_path: Path) -> None:
    assert call(method, path, 0, tmp_path) == ([], True)


def test_with_room_a_request_that_stores_goes_through(tmp_path: Path) -> None:
    assert call("POST", "/v1/fmus", MIB, tmp_path) == ([], True)
