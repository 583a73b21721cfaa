"""Request dependencies: the app context, a database session and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.context import AppContext
from app.services.auth_service import Principal, authenticate


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.db.session() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer fmu_test_...`.")


def identify(ctx: AppContext, authorization: str | None) -> Principal:
    """Who sent ``Authorization`` (401 problem if nobody valid); also used by middleware."""
    # Its own short session: a long-polling request must not hold a connection while it waits.
    with ctx.db.session() as session:
        return authenticate(session, authorization, ctx.settings.secret_key.get_secret_value())


def get_principal(ctx: Ctx, request: Request,
                  _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    # The raw header, so a malformed scheme gets our problem+json, not HTTPBearer's error.
    principal = identify(ctx, request.headers.get("authorization"))
    if ctx.rate_limiter is not None:
        # Read by RateLimitHeadersMiddleware, so every response of this key carries its state.
        request.state.rate_limit = ctx.rate_limiter.hit(principal.api_key_id)
    return principal


def requires(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(scope)
        return principal

    return check


FmusRead = Annotated[Principal, Depends(requires("fmus:read"))]
FmusWrite = Annotated[Principal, Depends(requires("fmus:write"))]
RunsRead = Annotated[Principal, Depends(requires("runs:read"))]
RunsWrite = Annotated[Principal, Depends(requires("runs:write"))]
BillingRead = Annotated[Principal, Depends(requires("billing:read"))]
