"""The FMU registry: accept an upload, deduplicate by sha256, list, get and delete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import NotFound, ProblemError
from app.fmi.archive import ArchiveLimits, inspect_fmu
from app.fmi.model_description import ModelInfo
from app.models import Fmu, Run
from app.models.base import utcnow
from app.models.run import ACTIVE_STATUSES
from app.services import limits as tier_limits
from app.services.auth_service import Principal
from app.services.fmu_cache import FmuCache, fmu_blob_key
from app.services.pagination import paginate
from app.storage import Storage


class FmuInUse(ProblemError):
    status = 409
    code = "fmu_in_use"
    title = "FMU has active runs"


def _live(principal: Principal) -> Select[Fmu]:
    return select(Fmu).where(Fmu.user_id == principal.user_id, Fmu.deleted_at.is_(None))


def find_by_sha256(session: Session, principal: Principal, sha256: str) -> Fmu | None:
    return session.scalar(_live(principal).where(Fmu.sha256 == sha256))


def get_fmu(session: Session, principal: Principal, fmu_id: str) -> Fmu:
    fmu = session.scalar(_live(principal).where(Fmu.id == fmu_id))
    if fmu is None:
        raise NotFound(f"No FMU {fmu_id!r}.")
    return fmu


def list_fmus(session: Session, principal: Principal, limit: int, cursor: str | None,
              sha256: str | None = None) -> tuple[list[Fmu], str | None]:
    query = _live(principal)
    if sha256 is not None:
        query = query.where(Fmu.sha256 == sha256.lower())
    return paginate(session, query, Fmu.id, limit, cursor)


def model_info(fmu: Fmu) -> ModelInfo:
    return ModelInfo.model_validate(fmu.model_info)


@dataclass(frozen=True)
class UploadedFile:
    path: Path
    sha256: str
    size: int
    filename: str | None


def upload(session: Session, principal: Principal, received: UploadedFile, *, storage: Storage,
           cache: FmuCache, limits: ArchiveLimits, caller: tier_limits.Limits | None = None) -> tuple[Fmu, bool]:
    """Validate, extract and store an uploaded FMU; returns (fmu, created).

    Every check runs before anything is stored, and the row is flushed before the blob is
    written so a failure leaves the transaction to roll back with nothing half-stored.
    ``caller``'s storage quota applies to new bytes; the same bytes again cost nothing.
    """
    existing = find_by_sha256(session, principal, received.sha256)
    if existing is not None:
        return existing, False
    info = inspect_fmu(received.path, limits)
    if caller is not None:
        tier_limits.check_storage_quota(session, principal, caller, received.size)
    cache.extract(received.sha256, received.path)
    fmu = Fmu(
        user_id=principal.user_id, sha256=received.sha256, size=received.size,
        filename=received.filename, fmi_version=info.fmi_version, model_name=info.model_name,
        description=info.description, generation_tool=info.generation_tool, guid=info.guid,
        supports_model_exchange=info.supports_model_exchange,
        supports_co_simulation=info.supports_co_simulation, model_info=info.model_dump(mode="json"),
    )
    session.add(fmu)
    try:
        session.flush()
    except IntegrityError:
        # A concurrent upload of the same bytes by the same user won the race.
        session.rollback()
        winner = find_by_sha256(session, principal, received.sha256)
        if winner is None:
            raise
        return winner, False
    key = fmu_blob_key(received.sha256)
    if not storage.exists(key):
        storage.put_file(key, received.path)
    return fmu, True


def delete_fmu(session: Session, principal: Principal, fmu_id: str) -> Fmu:
    fmu = get_fmu(session, principal, fmu_id)
    active = session.scalar(select(Run.id).where(Run.fmu_id == fmu.id, Run.status.in_(ACTIVE_STATUSES)).limit(1))
    if active is not None:
        raise FmuInUse(f"FMU {fmu_id!r} has active runs (e.g. {active!r}); wait for them or cancel them first.")
    fmu.deleted_at = utcnow()
    session.flush()
    return fmu


def release_blob_if_unreferenced(session: Session, sha256: str, *, storage: Storage, cache: FmuCache) -> bool:
    """After a delete commits: drop the blob and extracted copy when no live FMU uses them."""
    still_used = session.scalar(select(Fmu.id).where(Fmu.sha256 == sha256, Fmu.deleted_at.is_(None)).limit(1))
    if still_used is not None:
        return False
    storage.delete(fmu_blob_key(sha256))
    cache.evict(sha256)
    return True
