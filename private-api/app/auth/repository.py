"""Every query of the users and api_keys tables, but the balance: the users' credits, debt and
Stripe customer are billing's (``app.billing.repository``).

Nothing here commits: the request (route, dependency, middleware), the admin command or the worker
task that calls owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, Select, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from app.auth.models import ApiKey, User
from app.kit.pagination import paginate

# A key's row as authentication reads it: the key's state and its user's current tier.
KeyRow = Row[str, str, list[str], datetime | None, datetime | None, datetime | None, str]
_KeyColumns = Select[str, str, list[str], datetime | None, datetime | None, datetime | None, str]


def _key_columns() -> _KeyColumns:
    return select(ApiKey.id, ApiKey.user_id, ApiKey.scopes, ApiKey.expires_at, ApiKey.revoked_at,
                  ApiKey.last_used_at, User.tier).join(User, User.id == ApiKey.user_id)


# Every request with an API key runs it: built once (building it cost more than running it).
_KEY_BY_HASH = _key_columns().where(ApiKey.key_hash == bindparam("b_hash"))


def find_key_by_hash(session: Session, key_hash: str) -> KeyRow | None:
    return session.execute(_KEY_BY_HASH, {"b_hash": key_hash}).first()


def find_key_of_token(session: Session, key_id: str, user_id: str) -> KeyRow | None:
    """The key an access token was issued for (one primary-key read)."""
    return session.execute(_key_columns().where(ApiKey.id == key_id, ApiKey.user_id == user_id)).first()


def mark_key_used(session: Session, key_id: str, now: datetime, *, unless_used_after: datetime) -> None:
    """Set the key's last_used_at to ``now``, unless a concurrent request set it after ``unless_used_after``."""
    session.execute(update(ApiKey).where(
        ApiKey.id == key_id,
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= unless_used_after),
    ).values(last_used_at=now))


def get_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def add_key(session: Session, key: ApiKey) -> ApiKey:
    session.add(key)
    session.flush()
    return key


def _keys_of_user(user_id: str) -> Select[ApiKey]:
    return select(ApiKey).where(ApiKey.user_id == user_id)


def list_keys_of_user(session: Session, user_id: str, limit: int,
                      cursor: str | None) -> tuple[list[ApiKey], str | None]:
    """A page of the user's keys, newest first."""
    return paginate(session, _keys_of_user(user_id), ApiKey.id, limit, cursor)


def count_live_keys(session: Session, user_id: str, now: datetime) -> int:
    """The user's keys neither revoked nor expired at ``now``."""
    return int(session.scalar(select(func.count()).select_from(ApiKey).where(
        ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None),
        or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))) or 0)


def find_key_of_user(session: Session, user_id: str, key_id: str) -> ApiKey | None:
    return session.scalar(_keys_of_user(user_id).where(ApiKey.id == key_id))


def revoke_key(session: Session, user_id: str, key_id: str, now: datetime) -> ApiKey | None:
    """Set the user's key's revoked_at unless it is revoked already; the key as it is now (``None``:
    the user has no such key)."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id,
                                         ApiKey.revoked_at.is_(None)).values(revoked_at=now))
    key = find_key_of_user(session, user_id, key_id)
    if key is not None:
        session.refresh(key)
    return key


def email_taken(session: Session, email: str) -> bool:
    return session.scalar(select(User.id).where(User.email == email)) is not None


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email))


def add_user(session: Session, user: User) -> User:
    session.add(user)
    session.flush()
    return user


def reload_user(session: Session, user: User) -> None:
    """Read the user's row again (after a Core statement, such as a ledger entry's, changed it)."""
    session.refresh(user)
