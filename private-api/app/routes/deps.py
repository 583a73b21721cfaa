"""Request dependencies: the app context, a database session and the authenticated caller."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.context import AppContext
from app.services import limits
from app.services.auth_service import Principal, authenticate, mark_used

log = logging.getLogger(__name__)


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    with ctx.db.session() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


_bearer = HTTPBearer(auto_error=False, description="An API key (`Authorization: Bearer fmu_test_...`) or an "
                                                   "access token from `POST /v1/auth/token`.")


def identify(ctx: AppContext, authorization: str | None) -> Principal:
    """Who sent ``Authorization`` (401 problem if nobody valid); also used by middleware."""
    # Its own short session: a long-polling request must not hold a connection while it waits.
    with ctx.db.session() as session:
        principal = authenticate(session, authorization, ctx.settings.secret_key.get_secret_value(), ctx.tokens)
    if ctx.usage_marks.claim(principal):
        # A write only about once a minute per key, so most requests stay read-only.
        try:
            with ctx.db.session(write=True) as session:
                mark_used(session, principal.api_key_id)
                session.commit()
        except SQLAlchemyError:
            log.warning("could not record the use of API key %s", principal.api_key_id, exc_info=True)
    return principal


def get_principal(ctx: Ctx, request: Request,
                  _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    # The raw header, so a malformed scheme gets our problem+json, not HTTPBearer's error.
    principal = identify(ctx, request.headers.get("authorization"))
    per_minute = limits.for_caller(principal, ctx.settings).requests_per_minute
    if ctx.rate_limiter is not None and per_minute:
        # Read by RequestIdMiddleware, so every response of this key carries its state.
        request.state.rate_limit = ctx.rate_limiter.hit(principal.api_key_id, per_minute)
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
BillingWrite = Annotated[Principal, Depends(requires("billing:write"))]
KeysRead = Annotated[Principal, Depends(requires("keys:read"))]
KeysWrite = Annotated[Principal, Depends(requires("keys:write"))]
