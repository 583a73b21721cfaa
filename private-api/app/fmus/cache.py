"""Extracted FMUs on local disk, one directory per sha256, made by our safe extractor.

Workers mount these read-only into sandboxes; a miss (new worker, cleaned cache) is
refilled from blob storage.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from app.fmi.archive import ArchiveLimits, extract_fmu
from app.storage import Storage


def fmu_blob_key(sha256: str) -> str:
    return f"fmus/{sha256[:2]}/{sha256}.fmu"


class FmuCache:
    def __init__(self, root: Path, storage: Storage, limits: ArchiveLimits) -> None:
        self.root = root
        self.storage = storage
        self.limits = limits
        root.mkdir(parents=True, exist_ok=True)
        # Sandboxes run as other users on some machines: the cache must be traversable.
        root.chmod(0o755)

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def extract(self, sha256: str, archive: Path) -> Path:
        dest = self.path(sha256)
        if not dest.is_dir():
            extract_fmu(archive, dest, self.limits)
        return dest

    def admit(self, sha256: str, archive: Path) -> bool:
        """Extract an upload even when its tree is cached already (then the new copy is discarded),
        so admitting known bytes costs what admitting new ones does; True if this call made the tree."""
        return extract_fmu(archive, self.path(sha256), self.limits)

    def ensure(self, sha256: str) -> Path:
        dest = self.path(sha256)
        if dest.is_dir():
            return dest
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".fetch-") as tmp:
            archive = Path(tmp) / "model.fmu"
            self.storage.download(fmu_blob_key(sha256), archive)
            return self.extract(sha256, archive)

    def evict(self, sha256: str) -> None:
        shutil.rmtree(self.path(sha256), ignore_errors=True)
