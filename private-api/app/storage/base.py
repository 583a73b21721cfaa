"""Blob storage interface: FMU archives and run results live behind it.

Every backend raises ``FileNotFoundError`` for a missing key (``size``, ``iter_chunks``, ``download``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path


class Storage(ABC):
    @abstractmethod
    def put_file(self, key: str, source: Path) -> None:
        """Store ``source`` under ``key`` atomically (readers never see a partial blob)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    @abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """Copy ``key`` to ``dest`` atomically: on failure ``dest`` is left as it was."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abstractmethod
    def check(self) -> None:
        """Raise unless the store can be reached and written to (the readiness probe)."""

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys that start with ``prefix``, in lexicographic order."""

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_chunks(key))

    def free_bytes(self) -> int | None:
        """Bytes a write may still use; None when the backend has no such limit (S3)."""
        return None

    def presigned_url(self, key: str, expires_s: int, *, filename: str | None = None,
                      content_type: str | None = None) -> str | None:
        """A URL anyone holding it may GET ``key`` from for ``expires_s`` seconds, without our
        credentials; None when the backend has no such thing (the local directory)."""
        return None
