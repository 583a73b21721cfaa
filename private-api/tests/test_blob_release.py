"""An FMU's blob is shared by every FMU of the same bytes: a delete drops it only when no live
FMU uses it, and never while an upload of the same bytes that it cannot see yet is storing it
(SQLite and PostgreSQL, real storage and FMU cache)."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

from accounts import new_user
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.db import Database
from app.fmi.archive import ArchiveLimits
from app.fmus import service as registry_service
from app.fmus.cache import FmuCache, fmu_blob_key
from app.fmus.models import Fmu
from app.storage.local import LocalStorage


def principal(db: Database) -> Principal:
    return Principal(user_id=new_user(db), api_key_id="key", scopes=frozenset())


def received(fmu: Path, work: Path, name: str) -> registry_service.UploadedFile:
    """The upload's spooled file, as the route hands it over (each upload has its own)."""
    copy = work / name
    shutil.copyfile(fmu, copy)
    return registry_service.UploadedFile(copy, hashlib.sha256(copy.read_bytes()).hexdigest(), copy.stat().st_size,
                                         fmu.name)


def test_a_delete_keeps_the_blob_an_upload_in_flight_has_stored(db: Database, tmp_path: Path,
                                                                fmus: dict[str, Path]) -> None:
    storage = LocalStorage(tmp_path / "storage")
    cache = FmuCache(tmp_path / "cache", storage, ArchiveLimits())
    alice, bob = principal(db), principal(db)
    stored = {"storage": storage, "cache": cache}

    def upload(session: Session, owner: Principal, name: str) -> tuple[Fmu, bool]:
        file = received(fmus["VanDerPol"], tmp_path, name)
        fmu, created = registry_service.upload(session, owner, file, limits=ArchiveLimits())
        if created:
            registry_service.store_files(file, **stored)
        return fmu, created

    with db.session(write=True) as session:
        hers, _ = upload(session, alice, "a.fmu")
        session.commit()
    blob = fmu_blob_key(hers.sha256)

    def delete_hers() -> None:
        with db.session(write=True) as session:
            registry_service.delete_fmu(session, alice, hers.id)
            session.commit()
            registry_service.release_blob_if_unreferenced(session, hers.sha256, storage=storage, cache=cache)

    with db.session(write=True) as upload_session:
        his, created = upload(upload_session, bob, "b.fmu")
        assert created and storage.exists(blob)  # stored, not committed: the delete cannot see his row
        deleting = threading.Thread(target=delete_hers)
        deleting.start()
        time.sleep(1.0)  # the delete is committed (PostgreSQL) and its release waits, or it all waits (SQLite)
        upload_session.commit()
    deleting.join(30)
    assert not deleting.is_alive()
    assert storage.exists(blob), "the delete dropped the blob of an FMU being uploaded"
    with db.session() as session:
        assert registry_service.get_fmu(session, bob, his.id).sha256 == hers.sha256
    # With no live FMU left, the next release drops it.
    with db.session(write=True) as session:
        registry_service.delete_fmu(session, bob, his.id)
        session.commit()
        assert registry_service.release_blob_if_unreferenced(session, his.sha256, storage=storage, cache=cache)
    assert not storage.exists(blob)
