"""Every query of the fmus table. Nothing here commits: the request or worker task owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, Select, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.auth.models import User
from app.fmus.models import Fmu
from app.sharing.models import FmuGrant

# Every submission runs it: built once (building it cost more than running it).
_LIVE_BY_ID = select(Fmu).where(Fmu.id == bindparam("b_id"), Fmu.user_id == bindparam("b_user"),
                                Fmu.deleted_at.is_(None))
_Query = TypeVar("_Query", bound="Select[*tuple[Any, ...]]")  # any select: the helper adds a join and filters
_LOCK_BLOB = select(func.pg_advisory_xact_lock(bindparam("key")))


def live(user_id: str, *, sha256: str | None = None) -> Select[Fmu]:
    """The user's FMUs that are not deleted (the query every read of them starts from), of these bytes if given."""
    query = select(Fmu).where(Fmu.user_id == user_id, Fmu.deleted_at.is_(None))
    return query if sha256 is None else query.where(Fmu.sha256 == sha256)


def get_live(session: Session, user_id: str, fmu_id: str) -> Fmu | None:
    return session.scalar(_LIVE_BY_ID, {"b_id": fmu_id, "b_user": user_id})


def _live_grants_to(query: _Query, user_id: str) -> _Query:
    """``query`` (from fmu_grants) narrowed to the live grants to the user, matched by the email the
    user has now: the one definition of "shared with" every read below uses."""
    return (query.join(User, func.lower(User.email) == FmuGrant.email)
            .where(User.id == user_id, FmuGrant.revoked_at.is_(None)))


def _granted_to(user_id: str) -> Select[tuple[str]]:
    """The ids of the FMUs with a live grant to the user."""
    return _live_grants_to(select(FmuGrant.fmu_id), user_id)


def visible(user_id: str) -> Select[Fmu]:
    """The user's live FMUs and those shared with them."""
    return select(Fmu).where(Fmu.deleted_at.is_(None),
                             or_(Fmu.user_id == user_id, Fmu.id.in_(_granted_to(user_id))))


def get_shared(session: Session, user_id: str, fmu_id: str) -> Row[Fmu, FmuGrant] | None:
    """A live FMU shared with the user, with the live grant that shares it."""
    query = select(Fmu, FmuGrant).join(FmuGrant, FmuGrant.fmu_id == Fmu.id).where(Fmu.id == fmu_id,
                                                                                 Fmu.deleted_at.is_(None))
    return session.execute(_live_grants_to(query, user_id)).first()


def shares(session: Session, user_id: str, fmu_ids: Sequence[str]) -> Sequence[Row[str, int, str, str | None]]:
    """(fmu id, grant price, owner's id, owner's display name) of those of ``fmu_ids`` shared with the user."""
    if not fmu_ids:
        return []
    owner = aliased(User)
    query = (select(FmuGrant.fmu_id, FmuGrant.price_credits_per_run, owner.id, owner.display_name)
             .join(owner, owner.id == FmuGrant.owner_id).where(FmuGrant.fmu_id.in_(list(fmu_ids))))
    return session.execute(_live_grants_to(query, user_id)).all()


def owners(session: Session, fmu_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """fmu id → (owner's user id, owner's tier)."""
    return {row[0]: (row[1], row[2]) for row in session.execute(
        select(Fmu.id, User.id, User.tier).join(User, User.id == Fmu.user_id).where(Fmu.id.in_(list(fmu_ids))))}


def set_deterministic(session: Session, fmu_id: str, deterministic: bool) -> None:
    session.execute(update(Fmu).where(Fmu.id == fmu_id).values(deterministic=deterministic)
                    .execution_options(synchronize_session=False))


def find_live_by_sha256(session: Session, user_id: str, sha256: str) -> Fmu | None:
    return session.scalar(live(user_id).where(Fmu.sha256 == sha256))


def insert(session: Session, fmu: Fmu) -> bool:
    """Store a new FMU row; False (and nothing stored) if the user has a live FMU of these bytes."""
    try:
        with session.begin_nested():  # a savepoint: the caller's transaction and its locks go on
            session.add(fmu)
    except IntegrityError:
        return False
    return True


def any_live_with_sha256(session: Session, sha256: str) -> bool:
    """Whether any user's live FMU has these bytes."""
    return session.scalar(select(Fmu.id).where(Fmu.sha256 == sha256, Fmu.deleted_at.is_(None)).limit(1)) is not None


def lock_blob(session: Session, sha256: str) -> None:
    """PostgreSQL: the transaction's advisory lock on the bytes' hash (SQLite serialises its writers already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_BLOB, {"key": int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)})


def stored_bytes(session: Session, user_id: str) -> int:
    """What the user's live FMUs take: archives plus extracted trees."""
    # int(): PostgreSQL sums a bigint column as numeric (a Decimal here).
    return int(session.scalar(select(func.coalesce(func.sum(Fmu.size + func.coalesce(Fmu.extracted_bytes, 0)), 0))
                              .where(Fmu.user_id == user_id, Fmu.deleted_at.is_(None))) or 0)


def record_reset_check(session: Session, fmu_id: str, *, exact: bool, checked_by: str) -> None:
    session.execute(update(Fmu).where(Fmu.id == fmu_id).values(reset_exact=exact, reset_checked_by=checked_by)
                    .execution_options(synchronize_session=False))
