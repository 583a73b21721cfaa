"""``/v1/auth/token`` (an API key exchanged for a short-lived access token, a JWT) and ``/v1/api-keys``
(a user's API keys, managed with a key of the user's: scopes keys:read/keys:write)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.auth import service as auth_service
from app.auth.dependencies import Ctx, DbSession, KeysRead, KeysWrite, get_principal
from app.auth.schemas import AccessTokenOut, ApiKeyCreated, ApiKeyOut, CreateApiKey, TokenRequest
from app.auth.service import Principal
from app.kit.params import Cursor, Limit, ResourceId
from app.kit.schemas import Page

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/token", response_model=AccessTokenOut)
def issue_token(session: DbSession, ctx: Ctx, response: Response,
                principal: Annotated[Principal, Depends(get_principal)],
                body: TokenRequest | None = None) -> AccessTokenOut:
    """Authenticate with an API key (not an access token); the token carries the key's scopes, or
    the requested subset, and works as ``Authorization: Bearer`` wherever the key does until it
    expires or the key is revoked."""
    token = auth_service.issue_access_token(session, principal, ctx.tokens, body.scopes if body else None)
    response.headers["Cache-Control"] = "no-store"
    return AccessTokenOut(access_token=token.token, expires_in=token.expires_in, expires_at=token.expires_at,
                          scopes=token.scopes)


keys_router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


@keys_router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, responses={409: {
    "description": "`too_many_api_keys`: the user holds the most live keys a user may; revoke one first."}})
def create_api_key(body: CreateApiKey, ctx: Ctx, principal: KeysWrite) -> ApiKeyCreated:
    """Create a key with at most the caller's scopes. Its ``secret`` is in this response only."""
    with ctx.db.session(write=True) as session:
        key, secret = auth_service.create_api_key(
            session, principal, ctx.settings.secret_key.get_secret_value(), name=body.name, scopes=body.scopes,
            live=body.live, expires_at=body.expires_at, expires_in_s=body.expires_in_s,
            max_live_keys=ctx.settings.max_api_keys_per_user)
        session.commit()
        return ApiKeyCreated(**ApiKeyOut.of(key).model_dump(), secret=secret)


@keys_router.get("", response_model=Page[ApiKeyOut])
def list_api_keys(session: DbSession, principal: KeysRead,
                  limit: Limit = 20, cursor: Cursor = None) -> Page[ApiKeyOut]:
    """The user's keys, newest first, revoked and expired ones included."""
    keys, next_cursor = auth_service.list_api_keys(session, principal, limit, cursor)
    return Page(data=[ApiKeyOut.of(k) for k in keys], has_more=next_cursor is not None, next_cursor=next_cursor)


@keys_router.get("/{key_id}", response_model=ApiKeyOut)
def get_api_key(key_id: ResourceId, session: DbSession, principal: KeysRead) -> ApiKeyOut:
    return ApiKeyOut.of(auth_service.get_api_key(session, principal, key_id))


@keys_router.post("/{key_id}/revoke", response_model=ApiKeyOut)
def revoke_api_key(key_id: ResourceId, ctx: Ctx, principal: KeysWrite) -> ApiKeyOut:
    """Revoke a key (the calling one too): it and its access tokens stop working at once.
    Revoking a revoked key changes nothing."""
    with ctx.db.session(write=True) as session:
        key = auth_service.revoke_api_key(session, principal, key_id)
        session.commit()
        return ApiKeyOut.of(key)
