"""API keys: generation, keyed hashing and lookup of the authenticated user.

A key is ``fmu_live_``/``fmu_test_`` + 43 base62 chars (32 random bytes) + a 6-char
checksum, so typos are rejected without a database hit. Only HMAC-SHA256(secret, key)
is stored; lookup is by that hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ProblemError, Unauthenticated
from app.models import ApiKey, User
from app.models.user import SCOPES
from app.services.credits import credit

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43
_CHECK_LEN = 6
PREFIXES = ("fmu_live_", "fmu_test_")


class InsufficientScope(ProblemError):
    status = 403
    code = "insufficient_scope"
    title = "The API key lacks a scope"


class UnknownScope(ProblemError):
    status = 422
    code = "unknown_scope"
    title = "Unknown scope"


class EmailTaken(ProblemError):
    status = 409
    code = "email_taken"
    title = "A user with this email exists"


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(_BASE62[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK_LEN)


def generate_api_key(live: bool = False) -> str:
    body = _base62(int.from_bytes(secrets.token_bytes(32), "big"), _BODY_LEN)
    prefix = PREFIXES[0] if live else PREFIXES[1]
    return f"{prefix}{body}{_checksum(prefix + body)}"


def is_well_formed(key: str) -> bool:
    prefix = next((p for p in PREFIXES if key.startswith(p)), None)
    if prefix is None or len(key) != len(prefix) + _BODY_LEN + _CHECK_LEN:
        return False
    body = key[len(prefix) : -_CHECK_LEN]
    return hmac.compare_digest(key[-_CHECK_LEN:], _checksum(prefix + body))


def hash_api_key(key: str, secret: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: every tenant-data query filters by ``user_id``."""

    user_id: str
    api_key_id: str
    scopes: frozenset[str]
    tier: str = "free"  # the user's pricing tier: its limits apply to this caller

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise InsufficientScope(f"This API key lacks the {scope!r} scope.", scope=scope)


def authenticate(session: Session, authorization: str | None, secret: str) -> Principal:
    if not authorization:
        raise Unauthenticated("Send 'Authorization: Bearer <api key>'.")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Send 'Authorization: Bearer <api key>'.")
    if not is_well_formed(token):
        raise Unauthenticated("The API key is malformed.")
    row = session.execute(
        select(ApiKey.id, ApiKey.user_id, ApiKey.scopes, User.tier).join(User, User.id == ApiKey.user_id).where(
            ApiKey.key_hash == hash_api_key(token, secret), ApiKey.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        raise Unauthenticated("The API key is unknown or revoked.")
    return Principal(user_id=row.user_id, api_key_id=row.id, scopes=frozenset(row.scopes), tier=row.tier)


def issue_api_key(session: Session, user: User, secret: str, *, name: str | None = None,
                  live: bool = False, scopes: list[str] | None = None) -> str:
    """Create a key for ``user`` and return its secret; it is shown only this once."""
    unknown = sorted(set(scopes or ()) - set(SCOPES))
    if unknown:
        raise UnknownScope(f"Unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}.")
    key = generate_api_key(live=live)
    session.add(ApiKey(user_id=user.id, key_hash=hash_api_key(key, secret), prefix=key[:13],
                       name=name, scopes=list(scopes) if scopes else list(SCOPES)))
    session.flush()
    return key


def create_user(session: Session, email: str, credits: int = 0) -> User:
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken(f"A user with email {email!r} already exists.")
    user = User(email=email, credits=0)
    session.add(user)
    session.flush()
    if credits:
        # Through the ledger, so the user's entries always sum to the balance.
        credit(session, user.id, "grant", credits, f"grant:signup:{user.id}", description="starting credits")
        session.refresh(user)
    return user


def get_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email))
