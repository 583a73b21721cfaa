"""The FastAPI application: routes, problem+json errors, request ids, lifecycle."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__, health, logs, metrics
from app.auth import routes as auth
from app.billing import routes as billing
from app.body_limits import BodyLimitMiddleware
from app.config import Settings, get_settings
from app.console import routes as console
from app.context import AppContext
from app.db import DATABASE_DOWN
from app.errors import ProblemError, StorageFull, problem_response, request_id_var
from app.events import routes as events
from app.fmus import routes as fmus
from app.idempotency.middleware import IdempotencyMiddleware
from app.kit.openapi import with_problem_responses
from app.runs import routes as runs
from app.sharing import routes as sharing
from app.storage.space import is_out_of_space
from app.storage_admission import StorageAdmissionMiddleware
from app.sweeps import routes as sweeps

log = logging.getLogger(__name__)
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# A database that does not answer (app.db.DATABASE_DOWN): 503 with Retry-After, never 500.
DATABASE_RETRY_AFTER_S = 5


class RequestIdMiddleware:
    """Every response carries ``X-Request-ID``: the caller's if it is sane, else a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        with logs.bound(request_id=request_id):
            await self._call(scope, receive, send, request_id)

    async def _call(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
                # Set by the auth dependency: the caller's rate-limit state, on every response.
                rate_limit = scope.get("state", {}).get("rate_limit")
                if rate_limit is not None:
                    names = {name.lower() for name, _ in message["headers"]}
                    message["headers"].extend((k.lower().encode(), v.encode()) for k, v in rate_limit.headers().items()
                                              if k.lower().encode() not in names)
            await send(message)

        started = False
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
            await send_with_id(message)

        try:
            await self.app(scope, receive, tracking_send)
        except DATABASE_DOWN as exc:
            # Wherever it was met (a route, the auth dependency, the idempotency middleware): the
            # database did not answer, which a retry a little later may find it doing.
            log.warning("database unavailable: %s: %s", type(exc).__name__, (str(exc).splitlines() or [""])[0])
            if started:
                raise
            status = 503
            response = problem_response(503, "database_unavailable", "Database unavailable",
                                        "The database did not answer; retry in a few seconds.",
                                        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})
            await response(scope, receive, send_with_id)
        except Exception as exc:
            if not started and is_out_of_space(exc):
                # A write that met a full disk between admission and the write: 507, never 500. Whoever
                # wrote has removed what it half-wrote (LocalStorage, the upload's cleanup).
                log.error("storage full: %s", exc)
                status = StorageFull.status
                error = StorageFull()
                await problem_response(error.status, error.code, error.title, error.detail,
                                       error.headers)(scope, receive, send_with_id)
                return
            # Rendered here, inside the request id's scope, rather than by Starlette's outer handler.
            log.exception("unhandled error")
            if started:
                raise
            status = 500
            response = problem_response(500, "internal_error", "Internal server error",
                                        "An unexpected error occurred; quote the request id when reporting it.")
            await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            # The route's template (not the path: ids would make a series per object).
            route = scope.get("route")
            metrics.HTTP_REQUESTS.labels(route=getattr(route, "path", "unmatched"), status=str(status)).inc()


async def _problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.code, exc.title, exc.detail, exc.headers, **exc.extra)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    return problem_response(422, "validation_error", "Request validation failed",
                            f"{where}: {first['msg']}" if where else str(first["msg"]), errors=errors)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = HTTPStatus(exc.status_code).phrase
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    return problem_response(exc.status_code, code, phrase, str(exc.detail))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = AppContext.build(settings)
        app.state.ctx = ctx
        ctx.start()
        try:
            yield
        finally:
            ctx.stop()

    app = FastAPI(
        title="FMU Gateway",
        version=__version__,
        description="Upload FMI 2.0/3.0 models (FMUs) once and run them in per-run sandboxes.",
        lifespan=lifespan,
    )
    # Added last runs first: request ids wrap everything, bodies are capped before anything reads
    # them, a request that stores is refused while storage is full before its body is read,
    # idempotency sees authenticated POSTs.
    routers = [health.router, fmus.router, sharing.router, runs.router, sweeps.router, events.router, billing.router,
               auth.keys_router, auth.router]
    api_routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]
    app.add_middleware(IdempotencyMiddleware, routes=api_routes)
    app.add_middleware(StorageAdmissionMiddleware, routes=api_routes)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for router in routers:
        app.include_router(router)
    app.include_router(console.router)  # static pages: no idempotency or storage admission to apply
    # /openapi.json is the published contract: every error documented as problem+json.
    fastapi_openapi = app.openapi
    app.openapi = lambda: with_problem_responses(fastapi_openapi())  # type: ignore[method-assign]
    return app


def __getattr__(name: str) -> Any:
    # ``uvicorn app.main:app`` builds the app lazily from the environment's settings.
    if name == "app":
        return create_app()
    raise AttributeError(name)
