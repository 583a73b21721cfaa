"""The FMU registry: accept an upload, deduplicate by sha256, list, get and delete."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_core import to_json
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.billing import limits as tier_limits
from app.errors import ModelInfoTooLarge, NotFound, ProblemError
from app.fmi.archive import ArchiveLimits, inspect_fmu
from app.fmi.model_description import ModelInfo, Variable
from app.fmus import repository as fmu_repository
from app.fmus.cache import FmuCache, fmu_blob_key
from app.fmus.models import Fmu
from app.kit.models import utcnow
from app.kit.pagination import paginate
from app.runs import repository as run_repository
from app.sharing.models import FmuGrant
from app.storage import Storage

log = logging.getLogger(__name__)


class UploadConflict(ProblemError):
    status = 409
    code = "upload_conflict"
    title = "A concurrent upload of the same FMU did not finish"


class FmuInUse(ProblemError):
    status = 409
    code = "fmu_in_use"
    title = "FMU has active runs"


def find_by_sha256(session: Session, principal: Principal, sha256: str) -> Fmu | None:
    return fmu_repository.find_live_by_sha256(session, principal.user_id, sha256)


def get_fmu(session: Session, principal: Principal, fmu_id: str) -> Fmu:
    fmu = fmu_repository.get_live(session, principal.user_id, fmu_id)
    if fmu is None:
        raise NotFound(f"No FMU {fmu_id!r}.")
    return fmu


@dataclass(frozen=True)
class Usable:
    """An FMU the caller may read and run: their own (``grant`` None), or one shared with them."""

    fmu: Fmu
    grant: FmuGrant | None = None

    @property
    def owner_credits(self) -> int:
        """What each of the caller's runs that succeeds pays the model's owner."""
        return self.grant.price_credits_per_run if self.grant is not None else 0


def get_usable(session: Session, principal: Principal, fmu_id: str) -> Usable:
    """The caller's FMU, or one shared with them under a live grant; 404 otherwise (a revoked
    grant's model is as unknown as anyone else's)."""
    fmu = fmu_repository.get_live(session, principal.user_id, fmu_id)
    if fmu is not None:
        return Usable(fmu)
    shared = fmu_repository.get_shared(session, principal.user_id, fmu_id)
    if shared is None:
        raise NotFound(f"No FMU {fmu_id!r}.")
    return Usable(shared[0], shared[1])


@dataclass(frozen=True)
class SharedWithCaller:
    price_credits_per_run: int
    shared_by: str  # the owner's display name, or their user id: never their email


def list_fmus(session: Session, principal: Principal, limit: int, cursor: str | None,
              sha256: str | None = None) -> tuple[list[Fmu], str | None, dict[str, SharedWithCaller]]:
    """A page of the caller's FMUs and those shared with them (``sha256``: only the caller's own
    FMU of these bytes), and how each shared one is shared."""
    if sha256 is not None:
        query = fmu_repository.live(principal.user_id, sha256=sha256.lower())
    else:
        query = fmu_repository.visible(principal.user_id)
    fmus, next_cursor = paginate(session, query, Fmu.id, limit, cursor)
    return fmus, next_cursor, shared_with(session, principal, [f.id for f in fmus if f.user_id != principal.user_id])


def shared_with(session: Session, principal: Principal, fmu_ids: list[str]) -> dict[str, SharedWithCaller]:
    return {row[0]: SharedWithCaller(row[1], row[3] or row[2])
            for row in fmu_repository.shares(session, principal.user_id, fmu_ids)}


def set_deterministic(session: Session, principal: Principal, fmu_id: str, deterministic: bool) -> Fmu:
    """Whether the model computes the same result from the same inputs (its runs may then be
    served from the run cache); the owner's to say."""
    fmu = get_fmu(session, principal, fmu_id)
    fmu_repository.set_deterministic(session, fmu.id, deterministic)
    session.refresh(fmu)
    return fmu


class ModelInfoCache:
    """Parsed model information by FMU id, least recently used first out.

    An FMU row never changes, so an entry never goes stale; parsing a 100k-variable model takes
    seconds, which every run or sweep submission would otherwise pay. Bounded by the variables it
    holds (the memory it takes), not by entries."""

    def __init__(self, max_variables: int) -> None:
        self.max_variables = max_variables
        self._entries: OrderedDict[str, ModelInfo] = OrderedDict()
        self._variables = 0
        self._lock = threading.Lock()

    def get(self, fmu_id: str, load: Callable[[], ModelInfo]) -> ModelInfo:
        with self._lock:
            if (info := self._entries.get(fmu_id)) is not None:
                self._entries.move_to_end(fmu_id)
                return info
        info = load()  # outside the lock: two threads may both parse, neither waits for the other
        self.put(fmu_id, info)
        return info

    def put(self, fmu_id: str, info: ModelInfo) -> None:
        weight = _weight(info)
        with self._lock:
            if fmu_id in self._entries or weight > self.max_variables:
                return
            self._entries[fmu_id] = info
            self._variables += weight
            while self._variables > self.max_variables:
                _, evicted = self._entries.popitem(last=False)
                self._variables -= _weight(evicted)


def _weight(info: ModelInfo) -> int:
    return len(info.variables) + 1


# Process-local; a few of the largest models (max_model_variables), many small ones.
_model_infos = ModelInfoCache(max_variables=250_000)


def model_info(fmu: Fmu) -> ModelInfo:
    """The FMU's parsed model information (its model_info column is read only on a cache miss)."""
    return _model_infos.get(fmu.id, lambda: ModelInfo.model_validate(fmu.model_info))


def variables_page(fmu: Fmu, limit: int, cursor: str | None, q: str | None) -> tuple[list[Variable], str | None]:
    """Variables in model order, those whose name or description contains ``q`` (any case).

    The cursor is the position after the last variable returned (validated digits, by the route)."""
    variables = model_info(fmu).variables
    needle = q.casefold() if q else None
    page: list[Variable] = []
    position = int(cursor) if cursor else 0
    while position < len(variables) and len(page) <= limit:
        variable = variables[position]
        if needle is None or needle in variable.name.casefold() or (
                variable.description is not None and needle in variable.description.casefold()):
            page.append(variable)
        position += 1
    if len(page) > limit:
        # position is one past the extra match that proved there is more.
        return page[:limit], str(position - 1)
    return page, None


def _stored_model_info(info: ModelInfo, limits: ArchiveLimits) -> dict[str, Any]:
    # Fields left at None are left out: they come back as defaults, and they were ~30% of a big row.
    stored = info.model_dump(mode="json", exclude_none=True)
    size = len(to_json(stored))
    if size > limits.max_model_info_bytes:
        raise ModelInfoTooLarge(
            f"The model information of this FMU takes {size} bytes; at most {limits.max_model_info_bytes} "
            "are stored per FMU.", limit=limits.max_model_info_bytes)
    return stored


@dataclass(frozen=True)
class UploadedFile:
    path: Path
    sha256: str
    size: int
    filename: str | None


def upload(session: Session, principal: Principal, received: UploadedFile, *, limits: ArchiveLimits,
           caller: tier_limits.Limits | None = None) -> tuple[Fmu, bool]:
    """Validate an uploaded FMU and insert its row; returns (fmu, created). A new one's files
    are stored next (``store_files``), then the caller commits; if either fails, the caller rolls
    back and calls ``discard_upload``. Every check runs before anything is stored.
    ``caller``'s storage quota applies to the archive plus its extracted size (as declared, checked
    before extraction, which is held to it); the same bytes again by the same user cost nothing.
    """
    lock_blob(session, received.sha256)  # to the commit: no delete drops the blob this upload stores
    existing = find_by_sha256(session, principal, received.sha256)
    if existing is not None:
        return existing, False
    inspected = inspect_fmu(received.path, limits)
    info = inspected.info
    stored_info = _stored_model_info(info, limits)
    if caller is not None:
        tier_limits.check_storage_quota(session, principal, caller, received.size + inspected.extracted_bytes)
    fmu = Fmu(
        user_id=principal.user_id, sha256=received.sha256, size=received.size,
        extracted_bytes=inspected.extracted_bytes,
        filename=received.filename, fmi_version=info.fmi_version, model_name=info.model_name,
        description=info.description, generation_tool=info.generation_tool, guid=info.guid,
        supports_model_exchange=info.supports_model_exchange,
        supports_co_simulation=info.supports_co_simulation, variable_count=len(info.variables),
        default_experiment=(info.default_experiment.model_dump(mode="json")
                            if info.default_experiment is not None else None),
        platforms=info.platforms, model_info=stored_info,
    )
    if not fmu_repository.insert(session, fmu):
        # A concurrent upload of the same bytes by the same user won the race.
        winner = find_by_sha256(session, principal, received.sha256)
        if winner is None:
            raise UploadConflict("A concurrent upload of the same FMU did not finish; upload it again.")
        return winner, False
    _model_infos.put(fmu.id, info)
    return fmu, True


def store_files(received: UploadedFile, *, storage: Storage, cache: FmuCache) -> None:
    """A new FMU's extracted tree and blob. Both even when another user stored these bytes already:
    the upload then takes the time a new one takes, so timing does not tell who has which model
    (docs/security.md)."""
    cache.admit(received.sha256, received.path)
    storage.put_file(fmu_blob_key(received.sha256), received.path)


def discard_upload(session: Session, sha256: str, *, storage: Storage, cache: FmuCache) -> None:
    """After an upload failed and its caller rolled back: drop the blob and the extracted tree
    unless a live FMU (another user's) uses them."""
    try:
        release_blob_if_unreferenced(session, sha256, storage=storage, cache=cache)
    except Exception:  # the upload's own error is the one to report
        log.exception("could not remove what a failed upload of %s stored", sha256)


def lock_blob(session: Session, sha256: str) -> None:
    """Until this transaction ends, no other one stores or releases the blob of these bytes. An
    upload takes it before it looks for its row and keeps it to its commit; a release takes it
    before it looks for live FMUs, so it never drops a blob that an upload it cannot see yet (not
    committed) has just stored. PostgreSQL: a transaction's advisory lock on the hash; SQLite:
    nothing more, the write lock each write transaction holds serialises them already."""
    fmu_repository.lock_blob(session, sha256)


def delete_fmu(session: Session, principal: Principal, fmu_id: str) -> Fmu:
    fmu = get_fmu(session, principal, fmu_id)
    active = run_repository.an_active_run_of_fmu(session, fmu.id)
    if active is not None:
        raise FmuInUse(f"FMU {fmu_id!r} has active runs (e.g. {active!r}); wait for them or cancel them first.")
    fmu.deleted_at = utcnow()
    session.flush()
    return fmu


def release_blob_if_unreferenced(session: Session, sha256: str, *, storage: Storage, cache: FmuCache) -> bool:
    """After a delete commits: drop the blob and extracted copy when no live FMU uses them (an
    upload of the same bytes still in flight counts: ``lock_blob``). The caller's transaction
    holds the lock until it ends."""
    lock_blob(session, sha256)
    if fmu_repository.any_live_with_sha256(session, sha256):
        return False
    cache.evict(sha256)  # first: the tree is only a copy of the blob, never the other way round
    storage.delete(fmu_blob_key(sha256))
    return True
