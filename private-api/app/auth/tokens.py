"""Short-lived access tokens: HS256 JWTs that an API key is exchanged for at ``POST /v1/auth/token``.

A token names its user (``sub``) and the key it was issued for (``key_id``) and carries at most
that key's scopes. It is checked on every use against the key's row, so revoking or expiring the
key ends its tokens at once; the token's own ``exp`` just bounds how long a leaked one is useful.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from app.config import Settings
from app.errors import Unauthenticated

ALGORITHM = "HS256"
# RFC 9068's media type for JWT access tokens: a JWT of another kind signed with the same secret
# is not accepted as one.
TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "scopes", "key_id"]
_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class InvalidToken(Unauthenticated):
    code = "invalid_token"
    title = "Invalid access token"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers=_CHALLENGE)


class TokenExpired(Unauthenticated):
    code = "token_expired"
    title = "The access token has expired"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers=_CHALLENGE)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime
    expires_in: int  # whole seconds left, rounded down so a client never trusts it too long
    scopes: list[str]


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    key_id: str
    scopes: frozenset[str]


class TokenService:
    def __init__(self, secret: str, *, issuer: str, audience: str, ttl_s: int) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenService:
        return cls(settings.resolved_jwt_secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                   ttl_s=settings.jwt_ttl_s)

    def issue(self, *, user_id: str, key_id: str, scopes: frozenset[str], now: datetime,
              not_after: datetime | None = None) -> AccessToken:
        """A token for ``key_id``; it never outlives ``not_after`` (the key's own expiry)."""
        issued = math.floor(now.timestamp())
        expires = issued + self.ttl_s
        if not_after is not None:
            expires = min(expires, math.floor(not_after.timestamp()))
        claims = {"iss": self.issuer, "aud": self.audience, "sub": user_id, "iat": issued, "nbf": issued,
                  "exp": expires, "jti": uuid.uuid4().hex, "scopes": sorted(scopes), "key_id": key_id}
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"typ": TOKEN_TYPE})
        return AccessToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC),
                           expires_in=max(0, math.floor(expires - now.timestamp())), scopes=sorted(scopes))

    def verify(self, token: str) -> TokenClaims:
        """The claims of a token this server signed and that is valid now; 401 otherwise."""
        try:
            decoded = jwt.decode_complete(
                token, self._secret, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS, "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("The access token has expired; exchange the API key for a new one.") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"The access token is invalid: {exc}.") from exc
        if decoded["header"].get("typ") != TOKEN_TYPE:
            raise InvalidToken(f"The token is not an access token (typ must be {TOKEN_TYPE!r}).")
        payload = decoded["payload"]
        scopes, key_id = payload["scopes"], payload["key_id"]
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise InvalidToken("The access token's scopes claim must be a list of strings.")
        if not isinstance(key_id, str):
            raise InvalidToken("The access token's key_id claim must be a string.")
        return TokenClaims(user_id=payload["sub"], key_id=key_id, scopes=frozenset(scopes))
