"""``Idempotency-Key`` on every POST: the first response is stored and replayed to retries.

ASGI middleware, so each creating route (upload, API key, checkout, cancel) gets the same
semantics without code of its own; the store and its rules live in ``app.idempotency.store``.
A route that keeps the key with what it creates, in the same transaction (run submission: the run
row), is marked ``@owns_idempotency_key`` and passed through: it replays from its own rows, and
the hottest request of the service spends no write on a stored response.

The middleware owns the store's transactions: each step (``claim_key``, ``renew_lock``,
``store_response``, ``release_key``) is a short transaction of its own, committed here. The claim
is committed before the route runs, so a concurrent duplicate meets its lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import tempfile
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.dependencies import authorize_like_route, identify_and_spend
from app.billing import limits
from app.body_limits import body_cap, refuse
from app.errors import IdempotencyKeyReused, ProblemError, problem_response
from app.idempotency.store import LOCK_S, Claim, IdempotencyStore, request_hash

log = logging.getLogger(__name__)

HEADER = b"idempotency-key"
# Webhooks are deduplicated by event id; a token exchange creates nothing worth replaying.
EXEMPT_PATHS = ("/v1/billing/webhooks/", "/v1/auth/token")
# Responses that must not be replayed: a retry should run again.
NOT_STORED = frozenset({401, 403, 408, 409, 425, 429})
_MAX_STORED_BODY = 1 << 20
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_OWNS_KEY = "owns_idempotency_key"
Endpoint = TypeVar("Endpoint")


def owns_idempotency_key(endpoint: Endpoint) -> Endpoint:
    """Marks a route that makes retries under one key safe itself, by the key stored with what it
    creates: the same request under the key answers with that (``Idempotent-Replayed: true``),
    another request or credential with 422 ``idempotency_key_reused``, a key another route took
    with 422 too (``app.idempotency.store``)."""
    setattr(endpoint, _OWNS_KEY, True)
    return endpoint


class IdempotencyKeyInUse(ProblemError):
    status = 409
    code = "idempotency_key_in_use"
    title = "A request with this Idempotency-Key is in progress"


class InvalidIdempotencyKey(ProblemError):
    status = 422
    code = "invalid_idempotency_key"
    title = "Invalid Idempotency-Key"


class IdempotencyMiddleware:
    """``routes``: the app's API routes, to find the one a replayed request names."""

    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key_bytes = dict(scope.get("headers", ())).get(HEADER) if scope["type"] == "http" else None
        if key_bytes is None or scope["method"] != "POST" or scope["path"].startswith(EXEMPT_PATHS):
            await self.app(scope, receive, send)
            return

        key = key_bytes.decode("latin-1")
        if not _KEY.match(key):
            await _answer(InvalidIdempotencyKey("Idempotency-Key must be 1-255 visible ASCII characters."),
                          scope, receive, send)
            return
        ctx = scope["app"].state.ctx
        route = _route_of(self.routes, scope)
        if route is None:
            await self.app(scope, receive, send)  # the router answers 404 or 405 itself
            return
        dependant, path_params = route
        if getattr(dependant.call, _OWNS_KEY, False):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        state = scope.setdefault("state", {})
        try:
            # Spent here, so replays count against the tenant's budget like any request.
            principal = await run_in_threadpool(identify_and_spend, ctx, authorization, state)
        except ProblemError as error:
            if "principal" not in state:
                await self.app(scope, receive, send)  # not identified: the route answers 401 itself
                return
            await _answer(error, scope, receive, send)
            return

        # Never more than this caller may send: the upload cap of its own tier, else the route's.
        cap = body_cap(ctx.settings, "POST", scope["path"], limits.for_caller(principal, ctx.settings).max_fmu_bytes)
        with tempfile.SpooledTemporaryFile(max_size=1 << 20, dir=ctx.settings.upload_tmp_dir) as spool:
            try:
                body_digest = await _spool_body(receive, spool, headers.get(b"content-type", b""), cap.bytes)
            except ClientDisconnect:
                return  # nobody is left to answer
            if body_digest is None:
                await refuse(cap.error(), scope, receive, send)
                return
            store: IdempotencyStore = ctx.idempotency
            # Bound to the credential that sent it: another key of the same user cannot replay it.
            digest = request_hash("POST", scope["path"], body_digest, principal.api_key_id)
            claim = await run_in_threadpool(claim_key, store, principal.user_id, key, digest)
            if claim.state == "mismatch":
                await _answer(IdempotencyKeyReused(f"Idempotency-Key {key!r} was used for a different request."),
                              scope, receive, send)
                return
            if claim.state == "in_use":
                await _answer(IdempotencyKeyInUse(f"A request with Idempotency-Key {key!r} is still being handled; "
                                                  "retry shortly.", headers={"Retry-After": str(claim.retry_after_s)}),
                              scope, receive, send)
                return
            if claim.state == "replay":
                # A replay is authorised like the original: the route's scopes, its resources still the caller's.
                try:
                    await run_in_threadpool(authorize_like_route, ctx, principal, dependant, path_params)
                except ProblemError as error:
                    await _answer(error, scope, receive, send)
                    return
                await _replay(send, claim.status_code, claim.headers, claim.body)
                return
            assert claim.record_id is not None
            await self._run_first(scope, spool, send, store, claim.record_id)

    async def _run_first(self, scope: Scope, spool: Any, send: Send, store: IdempotencyStore,
                         record_id: int) -> None:
        spool.seek(0)
        status = 0
        stored_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        settled = False

        async def replay_body() -> Message:
            chunk = spool.read(64 << 10)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunk)}

        async def settle() -> None:
            nonlocal settled
            settled = True
            if status and status < 500 and status not in NOT_STORED and size <= _MAX_STORED_BODY:
                await run_in_threadpool(store_response, store, record_id, status, stored_headers, b"".join(chunks))
            else:
                await run_in_threadpool(release_key, store, record_id)

        async def capture(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() in (b"content-type", b"location"):
                        stored_headers[name.decode("latin-1")] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
                if size <= _MAX_STORED_BODY:
                    chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Stored before the client has its last byte: a retry right after the answer
                    # is a replay, never a 409 for a request that has finished.
                    await settle()
            await send(message)

        async def keep_locked() -> None:
            while True:
                await asyncio.sleep(LOCK_S / 3)
                await run_in_threadpool(renew_lock, store, record_id)

        renewer = asyncio.create_task(keep_locked())
        try:
            await self.app(scope, replay_body, capture)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if not settled:
                await run_in_threadpool(release_key, store, record_id)


def claim_key(store: IdempotencyStore, user_id: str, key: str, digest: str, lock_s: float = LOCK_S) -> Claim:
    """What a request with ``key`` does: run, replay, or be refused (``IdempotencyStore.claim``).
    Each attempt is a transaction of its own; a claim to run is committed at once."""
    if store.purge_due():
        with store.db.session(write=True) as session:
            store.purge(session)
            session.commit()
    for _ in range(3):
        try:
            with store.db.session(write=True) as session:
                claim = store.claim(session, user_id, key, digest, lock_s)
                if claim.state == "run":
                    session.commit()  # only its lock is kept: any other answer ends without a commit
                return claim
        except IntegrityError:
            continue  # a concurrent first request inserted the key: look again
    return Claim("in_use", retry_after_s=1)


def renew_lock(store: IdempotencyStore, record_id: int, lock_s: float = LOCK_S) -> None:
    with store.db.session(write=True) as session:
        store.renew(session, record_id, lock_s)
        session.commit()


def store_response(store: IdempotencyStore, record_id: int, status_code: int, headers: dict[str, str],
                   body: bytes) -> None:
    with store.db.session(write=True) as session:
        store.complete(session, record_id, status_code, headers, body)
        session.commit()


def release_key(store: IdempotencyStore, record_id: int) -> None:
    with store.db.session(write=True) as session:
        store.release(session, record_id)
        session.commit()


def _route_of(routes: Sequence[APIRoute], scope: Scope) -> tuple[Dependant, dict[str, str]] | None:
    """The API route that will handle ``scope`` and its path parameters."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route.dependant, child.get("path_params", {})
    return None


async def _answer(error: ProblemError, scope: Scope, receive: Receive, send: Send) -> None:
    await problem_response(error.status, error.code, error.title, error.detail, error.headers,
                           **error.extra)(scope, receive, send)


async def _spool_body(receive: Receive, spool: Any, content_type: bytes, cap: int) -> str | None:
    """Read the whole body into ``spool``; returns its sha256, or None once it passes ``cap`` bytes
    (nothing more is read). Many clients draw a new multipart boundary for each attempt, so the
    boundary is left out of the hash."""
    found = re.search(rb"boundary=\"?([^\";]+)", content_type)
    boundary = found.group(1) if found else b""
    digest = hashlib.sha256()
    pending = b""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = bool(message.get("more_body"))
        size += len(chunk)
        if size > cap:
            return None
        spool.write(chunk)
        if not boundary:
            digest.update(chunk)
        else:
            pending = (pending + chunk).replace(boundary, b"")
            # The last len(boundary) - 1 bytes may start a boundary that the next chunk completes.
            cut = len(pending) - (len(boundary) - 1)
            if more and cut > 0:
                digest.update(pending[:cut])
                pending = pending[cut:]
        if not more:
            break
    digest.update(pending)
    return digest.hexdigest()


async def _replay(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += [(b"idempotent-replayed", b"true"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
