"""API keys: generation, keyed hashing and lookup of the authenticated user.

A key is ``fmu_live_``/``fmu_test_`` + 43 base62 chars (32 random bytes) + a 6-char
checksum, so typos are rejected without a database hit. Only HMAC-SHA256(secret, key)
is stored; lookup is by that hash. ``Authorization: Bearer`` carries either such a key or an access
token from ``POST /v1/auth/token`` (``app.auth.tokens``); both end at the key's row, so a
revoked or expired key stops working at once, with its tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from app.auth import repository as auth_repository
from app.auth.models import SCOPES, ApiKey, User
from app.auth.tokens import AccessToken, InvalidToken, TokenService
from app.billing.credits import credit
from app.errors import NotFound, ProblemError, Unauthenticated
from app.kit.models import utcnow

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43
_CHECK_LEN = 6
PREFIXES = ("fmu_live_", "fmu_test_")
# Every API key starts so; any other bearer credential is taken for an access token.
KEY_MARK = "fmu_"
# last_used_at is exact to this: a key in steady use costs one write a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class InsufficientScope(ProblemError):
    status = 403
    code = "insufficient_scope"
    title = "The API key lacks a scope"


class UnknownScope(ProblemError):
    status = 422
    code = "unknown_scope"
    title = "Unknown scope"


class ScopeEscalation(ProblemError):
    status = 403
    code = "scope_escalation"
    title = "More scopes than the caller has"


class ExpiryEscalation(ProblemError):
    status = 403
    code = "expiry_escalation"
    title = "Outlives the calling key"


class InvalidExpiry(ProblemError):
    status = 422
    code = "invalid_expiry"
    title = "Invalid expiry"


class TooManyApiKeys(ProblemError):
    status = 409
    code = "too_many_api_keys"
    title = "Too many live API keys"


class ApiKeyExpired(Unauthenticated):
    code = "api_key_expired"
    title = "The API key has expired"


class ApiKeyRevoked(Unauthenticated):
    code = "api_key_revoked"
    title = "The API key was revoked"


class ApiKeyRequired(Unauthenticated):
    code = "api_key_required"
    title = "An API key is required"


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
    # How the caller proved it: an API key itself, or an access token issued for one.
    credential: Literal["api_key", "token"] = "api_key"
    # The key's last_used_at as read while authenticating: whether it is due an update.
    key_last_used_at: datetime | None = field(default=None, compare=False, repr=False)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise InsufficientScope(f"This API key lacks the {scope!r} scope.", scope=scope)


def _check_usable(row: Any, now: datetime) -> None:
    if row.revoked_at is not None:
        raise ApiKeyRevoked(f"The API key {row.id} was revoked at {row.revoked_at.isoformat()}.")
    if row.expires_at is not None and row.expires_at <= now:
        raise ApiKeyExpired(f"The API key {row.id} expired at {row.expires_at.isoformat()}.")


def authenticate(session: Session, authorization: str | None, secret: str,
                 tokens: TokenService | None = None, *, now: datetime | None = None) -> Principal:
    """The caller behind ``Authorization: Bearer <api key or access token>``; 401 problem if none.

    Access tokens are accepted only when ``tokens`` (the verifier) is given.
    """
    if not authorization:
        raise Unauthenticated("Send 'Authorization: Bearer <api key or access token>'.")
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("Send 'Authorization: Bearer <api key or access token>'.")
    now = now or utcnow()
    if credential.startswith(KEY_MARK):
        return _authenticate_key(session, credential, secret, now)
    if tokens is None:
        raise Unauthenticated("Send an API key: 'Authorization: Bearer fmu_...'.")
    return _authenticate_token(session, credential, tokens, now)


def _authenticate_key(session: Session, key: str, secret: str, now: datetime) -> Principal:
    if not is_well_formed(key):
        raise Unauthenticated("The API key is malformed.")
    row = auth_repository.find_key_by_hash(session, hash_api_key(key, secret))
    if row is None:
        raise Unauthenticated("The API key is unknown.")
    _check_usable(row, now)
    return Principal(user_id=row.user_id, api_key_id=row.id, scopes=frozenset(row.scopes), tier=row.tier,
                     key_last_used_at=row.last_used_at)


def _authenticate_token(session: Session, token: str, tokens: TokenService, now: datetime) -> Principal:
    claims = tokens.verify(token)
    # One primary-key read: the key's current state decides, and the user's current tier applies.
    row = auth_repository.find_key_of_token(session, claims.key_id, claims.user_id)
    if row is None:
        raise InvalidToken("The access token's API key does not exist.")
    _check_usable(row, now)
    return Principal(user_id=row.user_id, api_key_id=row.id, scopes=claims.scopes & frozenset(row.scopes),
                     tier=row.tier, credential="token", key_last_used_at=row.last_used_at)


def is_due_usage_mark(principal: Principal, now: datetime | None = None) -> bool:
    last = principal.key_last_used_at
    return last is None or (now or utcnow()) - last >= LAST_USED_RESOLUTION


class UsageMarks:
    """Keys this process marked used lately, so the concurrent first requests of a key write once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marked: dict[str, datetime] = {}

    def claim(self, principal: Principal, now: datetime | None = None) -> bool:
        """Whether this request should mark the key used (then call :func:`mark_used`)."""
        now = now or utcnow()
        if not is_due_usage_mark(principal, now):
            return False
        with self._lock:
            last = self._marked.get(principal.api_key_id)
            if last is not None and now - last < LAST_USED_RESOLUTION:
                return False
            if len(self._marked) >= 10_000:
                self._marked = {k: t for k, t in self._marked.items() if now - t < LAST_USED_RESOLUTION}
            self._marked[principal.api_key_id] = now
            return True


def mark_used(session: Session, api_key_id: str, now: datetime | None = None) -> None:
    """Set the key's last_used_at, unless a concurrent request did within the resolution."""
    now = now or utcnow()
    auth_repository.mark_key_used(session, api_key_id, now, unless_used_after=now - LAST_USED_RESOLUTION)


def _checked_scopes(requested: Iterable[str], allowed: frozenset[str]) -> list[str]:
    """``requested`` (no duplicates, in SCOPES order) if the caller may hand them out."""
    wanted = set(requested)
    unknown = sorted(wanted - set(SCOPES))
    if unknown:
        raise UnknownScope(f"Unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}.",
                           scopes=unknown)
    beyond = [scope for scope in SCOPES if scope in wanted and scope not in allowed]
    if beyond:
        raise ScopeEscalation(f"The calling credential lacks {', '.join(beyond)}; it can only hand out its "
                              "own scopes.", scopes=beyond)
    return [scope for scope in SCOPES if scope in wanted]


def issue_access_token(session: Session, principal: Principal, tokens: TokenService,
                       scopes: list[str] | None = None, *, now: datetime | None = None) -> AccessToken:
    """Exchange the calling API key for an access token with its scopes, or the subset ``scopes``."""
    if principal.credential != "api_key":
        raise ApiKeyRequired("Exchange an API key for an access token, not another access token.")
    granted = _checked_scopes(scopes, principal.scopes) if scopes is not None else sorted(principal.scopes)
    key = auth_repository.get_key(session, principal.api_key_id)
    if key is None:
        raise Unauthenticated("The API key is unknown.")
    return tokens.issue(user_id=principal.user_id, key_id=key.id, scopes=frozenset(granted),
                        now=now or utcnow(), not_after=key.expires_at)


def issue_api_key(session: Session, user: User, secret: str, *, name: str | None = None,
                  live: bool = False, scopes: list[str] | None = None, expires_at: datetime | None = None,
                  created_by_key_id: str | None = None) -> str:
    """Create a key for ``user`` and return its secret; it is shown only this once."""
    return _new_key(session, user.id, secret, name=name, live=live,
                    scopes=_checked_scopes(scopes, frozenset(SCOPES)) if scopes else list(SCOPES),
                    expires_at=expires_at, created_by_key_id=created_by_key_id)[1]


def _new_key(session: Session, user_id: str, secret: str, *, name: str | None, live: bool, scopes: list[str],
             expires_at: datetime | None, created_by_key_id: str | None) -> tuple[ApiKey, str]:
    key = generate_api_key(live=live)
    row = ApiKey(user_id=user_id, key_hash=hash_api_key(key, secret), prefix=key[:13], name=name,
                 scopes=scopes, expires_at=expires_at, created_by_key_id=created_by_key_id)
    return auth_repository.add_key(session, row), key


def create_api_key(session: Session, principal: Principal, secret: str, *, name: str | None = None,
                   scopes: list[str] | None = None, live: bool | None = None, expires_at: datetime | None = None,
                   expires_in_s: int | None = None, now: datetime | None = None,
                   max_live_keys: int | None = None) -> tuple[ApiKey, str]:
    """A new key of the caller's user, created by the calling key; returns (row, secret).

    It gets at most the caller's scopes (default: all of them), the caller's kind (live/test) unless
    ``live`` says otherwise, and never outlives the calling key. A user holding ``max_live_keys``
    unrevoked, unexpired keys gets 409 ``too_many_api_keys`` until one is revoked.
    """
    now = now or utcnow()
    creator = auth_repository.get_key(session, principal.api_key_id)
    if creator is None:
        raise Unauthenticated("The API key is unknown.")
    if max_live_keys is not None and auth_repository.count_live_keys(session, principal.user_id, now) >= max_live_keys:
        raise TooManyApiKeys(f"You hold {max_live_keys} live API keys, the most a user may; revoke one first.",
                             limit=max_live_keys)
    granted = _checked_scopes(scopes, principal.scopes) if scopes is not None else \
        [scope for scope in SCOPES if scope in principal.scopes]
    if expires_in_s is not None:
        expires_at = now + timedelta(seconds=expires_in_s)
    if expires_at is not None and expires_at <= now:
        raise InvalidExpiry(f"expires_at {expires_at.isoformat()} is not in the future.")
    if creator.expires_at is not None:
        if expires_at is not None and expires_at > creator.expires_at:
            raise ExpiryEscalation(f"The calling key expires at {creator.expires_at.isoformat()}; a key it "
                                   "creates cannot live longer.", creator_expires_at=creator.expires_at.isoformat())
        expires_at = expires_at or creator.expires_at
    if live is None:
        live = creator.prefix.startswith(PREFIXES[0])
    return _new_key(session, principal.user_id, secret, name=name, live=live, scopes=granted,
                    expires_at=expires_at, created_by_key_id=creator.id)


def list_api_keys(session: Session, principal: Principal, limit: int,
                  cursor: str | None) -> tuple[list[ApiKey], str | None]:
    return auth_repository.list_keys_of_user(session, principal.user_id, limit, cursor)


def get_api_key(session: Session, principal: Principal, key_id: str) -> ApiKey:
    key = auth_repository.find_key_of_user(session, principal.user_id, key_id)
    if key is None:
        raise NotFound(f"No API key {key_id!r}.")
    return key


def revoke_api_key(session: Session, principal: Principal, key_id: str, *,
                   now: datetime | None = None) -> ApiKey:
    """Revoke one of the caller's keys (the calling one included); revoking again changes nothing."""
    key = auth_repository.revoke_key(session, principal.user_id, key_id, now or utcnow())
    if key is None:
        raise NotFound(f"No API key {key_id!r}.")
    return key


def create_user(session: Session, email: str, credits: int = 0, *, display_name: str | None = None) -> User:
    if auth_repository.email_taken(session, email):
        raise EmailTaken(f"A user with email {email!r} already exists.")
    user = auth_repository.add_user(session, User(email=email, credits=0, display_name=display_name))
    if credits:
        # Through the ledger, so the user's entries always sum to the balance.
        credit(session, user.id, "grant", credits, f"grant:signup:{user.id}", description="starting credits")
        auth_repository.reload_user(session, user)
    return user


def get_user_by_email(session: Session, email: str) -> User | None:
    return auth_repository.find_user_by_email(session, email)
