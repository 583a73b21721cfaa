"""A local ``.fmu`` file on its way to the server: its SHA-256 (so known bytes are never sent twice)
and its bytes as a stream of chunks, with an optional rich progress bar."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

CHUNK_BYTES = 1 << 20
# The CLI shows a bar on its own only for files that take a moment; smaller ones would just flicker.
PROGRESS_MIN_BYTES = 4 << 20

FmuPath = str | os.PathLike[str]


class TransferProgress(AbstractContextManager["TransferProgress"]):
    """A rich progress bar for hashing and sending one file, or nothing when not asked for."""

    def __init__(self, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), transient=True, console=Console(stderr=True),
        ) if enabled else None
        self._context: AbstractContextManager[object] = self._progress or nullcontext()

    def __enter__(self) -> TransferProgress:
        self._context.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._context.__exit__(exc_type, exc, tb)

    def task(self, description: str, total: int) -> TaskID | None:
        return self._progress.add_task(description, total=total) if self._progress is not None else None

    def advance(self, task: TaskID | None, amount: int) -> None:
        if self._progress is not None and task is not None:
            self._progress.advance(task, amount)


#: A file as it is on disk: its resolved path, device, inode, size and modification time. A file
#: written since has another (a write changes its mtime), so its bytes are hashed again.
FileIdentity = tuple[str, int, int, int, int]


@dataclass(frozen=True)
class FmuFile:
    path: Path
    size: int
    identity: FileIdentity

    @classmethod
    def open(cls, path: FmuPath) -> FmuFile:
        resolved = Path(path).expanduser()
        if not resolved.is_file():
            raise FileNotFoundError(f"No FMU file at {resolved}")
        stat = resolved.stat()
        return cls(resolved, stat.st_size,
                   (str(resolved.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))

    def sha256(self, progress: TransferProgress) -> str:
        digest = hashlib.sha256()
        task = progress.task(f"hashing {self.path.name}", self.size)
        with self.path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                progress.advance(task, len(chunk))
        return digest.hexdigest()

    def chunks(self, progress: TransferProgress) -> Iterator[bytes]:
        """The file's bytes for a request body; a fresh iterator per (re)try."""
        task = progress.task(f"uploading {self.path.name}", self.size)
        with self.path.open("rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                progress.advance(task, len(chunk))
                yield chunk

    async def achunks(self, progress: TransferProgress) -> AsyncIterator[bytes]:
        # Local-disk reads of 1 MiB do not block the loop long enough to be worth a thread.
        for chunk in self.chunks(progress):
            yield chunk

    def upload_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/octet-stream", "Content-Length": str(self.size)}
