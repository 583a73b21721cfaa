"""``/v1/auth/token``: exchange an API key for a short-lived access token (a JWT)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.routes.deps import Ctx, DbSession, get_principal
from app.schemas.api_key import AccessTokenOut, TokenRequest
from app.services import auth_service
from app.services.auth_service import Principal

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
