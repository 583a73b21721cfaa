"""Blob storage in a local directory (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from app.storage.base import Storage


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        # Keys are built by the service, never by users; still refuse anything that climbs out. A
        # lexical check: nothing under the root is a link (only this class writes there).
        parts = key.split("/")
        if not key or key.startswith("/") or "\0" in key or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"storage key escapes the root: {key!r}")
        return self.root / key

    def _atomic_write(self, key: str, write: Callable[[Path], object]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, source: Path) -> None:
        self._atomic_write(key, lambda tmp: shutil.copyfile(source, tmp))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(key, lambda tmp: tmp.write_bytes(data))

    def check(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)):
            raise OSError(f"the storage directory {self.root} is missing or not writable")

    def free_bytes(self) -> int | None:
        # What an unprivileged writer may use (f_bavail): the file system's reserve is not ours.
        return shutil.disk_usage(self.root).free

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        with self._path(key).open("rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def download(self, key: str, dest: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.tmp-")
        os.close(fd)
        try:
            shutil.copyfile(self._path(key), tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def keys(self, prefix: str = "") -> Iterator[str]:
        found = (path.relative_to(self.root).as_posix() for path in self.root.rglob("*")
                 if path.is_file() and not path.name.startswith(".tmp-"))
        yield from sorted(key for key in found if key.startswith(prefix))

    def local_path(self, key: str) -> Path:
        """Direct path for zero-copy reads; only the local backend has one."""
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
