"""While blob storage is short of space, requests that store (an upload, a run, a sweep) are
refused with 507 ``storage_full`` and ``Retry-After`` before their body is read.

ASGI middleware just inside the body caps (``app.body_limits``), before the idempotency layer
spools a body and before authentication: a refused upload has not had a byte spooled or stored.
The routes refused are those that declare ``STORAGE_FULL_RESPONSE``, so the contract names
exactly them. The free space is the process's ``FreeSpace`` (``app.storage.space``), read at most
once a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app.body_limits import refuse
from app.errors import StorageFull

STORAGE_FULL_STATUS = 507
# A route that stores declares it: ``responses={**STORAGE_FULL_RESPONSE}``.
STORAGE_FULL_RESPONSE: dict[int | str, dict[str, Any]] = {STORAGE_FULL_STATUS: {
    "description": "Storage is full (`storage_full`): nothing was stored; retry after `Retry-After` seconds."}}


class StorageAdmissionMiddleware:
    """``routes``: the app's API routes; those declaring a 507 response are guarded."""

    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute]) -> None:
        self.app = app
        self.guarded = [route for route in routes
                        if STORAGE_FULL_STATUS in route.responses or str(STORAGE_FULL_STATUS) in route.responses]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self._guarded(scope):
            try:
                scope["app"].state.ctx.free_space.check()
            except StorageFull as error:
                await refuse(error, scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _guarded(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.guarded)
