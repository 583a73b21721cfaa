"""Blob storage interface: FMU archives and run results live behind it."""

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
    def download(self, key: str, dest: Path) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_chunks(key))
