"""Request dependencies: the app context, a database session and the authenticated caller."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app import logs
from app.auth import service as auth_service
from app.auth.service import Principal, authenticate, mark_used
from app.billing import limits
from app.context import AppContext
from app.fmus import service as registry_service
from app.runs import service as run_service
from app.sweeps import service as sweep_service

log = logging.getLogger(__name__)


async def get_ctx(request: Request) -> AppContext:
    # async: no I/O here, and a sync dependency costs a hop to the thread pool.
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


def identify_and_spend(ctx: AppContext, authorization: str | None, state: dict[str, Any]) -> Principal:
    """``identify`` and ``spend_request`` once per request: whoever does it first (the idempotency
    middleware, else the route's dependency) leaves the caller in ``state`` for the other."""
    principal = identify(ctx, authorization)
    state["principal"] = principal  # identified even if the budget is spent (429)
    logs.bind(user_id=principal.user_id)
    spend_request(ctx, principal, state)
    return principal


def spend_request(ctx: AppContext, principal: Principal, state: dict[str, Any]) -> None:
    """One request from the caller's tenant budget: every key of a user spends from one bucket, so
    minting keys buys no requests (429 when it is empty)."""
    per_minute = limits.for_caller(principal, ctx.settings).requests_per_minute
    if ctx.rate_limiter is not None and per_minute:
        # Read by RequestIdMiddleware, so every response carries the tenant's state.
        state["rate_limit"] = ctx.rate_limiter.hit(principal.user_id, per_minute)


def get_principal(ctx: Ctx, request: Request,
                  _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    state = request.scope.setdefault("state", {})
    known: Principal | None = state.get("principal")
    if known is not None:
        return known  # identified, and its request spent, by the middleware for this very request
    # The raw header, so a malformed scheme gets our problem+json, not HTTPBearer's error.
    return identify_and_spend(ctx, request.headers.get("authorization"), state)


class RequiresScope:
    """The dependency of a route that needs ``scope``; an idempotent replay finds it on the route
    (``required_scopes``) and checks it again before answering."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(self.scope)
        return principal


def requires(scope: str) -> RequiresScope:
    return RequiresScope(scope)


def required_scopes(dependant: Dependant) -> set[str]:
    """Every scope a route's dependencies require."""
    found: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        if isinstance(current.call, RequiresScope):
            found.add(current.call.scope)
        pending.extend(current.dependencies)
    return found


# The resources a POST route's path names, looked up as its route does (404 if not the caller's).
_OWNED_BY_PATH: dict[str, Callable[[Session, Principal, str], object]] = {
    "fmu_id": registry_service.get_fmu,
    "run_id": run_service.get_run,
    "sweep_id": sweep_service.get_sweep,
    "key_id": auth_service.get_api_key,
}


def authorize_like_route(ctx: AppContext, principal: Principal, dependant: Dependant,
                         path_params: dict[str, str]) -> None:
    """What the route checks before it acts: the caller's scopes, then that every resource in the
    path is still the caller's. Raises the route's 403 or 404 problem."""
    for scope in sorted(required_scopes(dependant)):
        principal.require(scope)
    owned = {name: value for name, value in path_params.items() if name in _OWNED_BY_PATH}
    if owned:
        with ctx.db.session() as session:
            for name, value in owned.items():
                _OWNED_BY_PATH[name](session, principal, value)


FmusRead = Annotated[Principal, Depends(requires("fmus:read"))]
FmusWrite = Annotated[Principal, Depends(requires("fmus:write"))]
RunsRead = Annotated[Principal, Depends(requires("runs:read"))]
RunsWrite = Annotated[Principal, Depends(requires("runs:write"))]
BillingRead = Annotated[Principal, Depends(requires("billing:read"))]
BillingWrite = Annotated[Principal, Depends(requires("billing:write"))]
KeysRead = Annotated[Principal, Depends(requires("keys:read"))]
KeysWrite = Annotated[Principal, Depends(requires("keys:write"))]
