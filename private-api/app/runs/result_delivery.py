"""How a run's result reaches the client: through the API, or straight from the bucket."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from app.config import Settings
from app.runs import result_formats
from app.runs.service import result_key
from app.storage import LocalStorage, Storage


def presigned_result_url(storage: Storage, settings: Settings, run_id: str, format: str, *,
                         filename: str | None = None) -> str | None:
    """A short-lived URL of the result stored under ``run_id`` when the operator turned presigned
    results on and the backend can sign one; None to serve it through the API. Only ``arrow`` is
    stored as it is sent: the other formats are converted on the way out. ``filename``: the
    download's name (the run asked for, when the result is another run's: the run cache)."""
    if not settings.s3_presign_results or format != "arrow":
        return None
    fmt = result_formats.FORMATS[format]
    return storage.presigned_url(result_key(run_id), settings.s3_presign_ttl_s,
                                 filename=f"{filename or run_id}.{fmt.extension}", content_type=fmt.media_type)


@dataclass
class StoredResult:
    """A run's stored Arrow file, open and memory-mapped: its pages are read as an encoder reaches
    them and belong to the kernel's page cache, not to the process's memory."""

    source: pa.MemoryMappedFile
    reader: pa.ipc.RecordBatchFileReader

    def converted(self, format: str) -> Iterator[bytes]:
        """The result in ``format``, chunk by chunk; closes the file when done or abandoned."""
        try:
            yield from result_formats.iter_encode(self.reader.schema, result_formats.file_batches(self.reader),
                                                  format)
        finally:
            self.source.close()


class NotATable(Exception):
    """A stored result that is not an Arrow table of numbers."""


def _numbers_only(schema: pa.Schema) -> bool:
    return all(pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_boolean(f.type)
               for f in schema)


def text_lines_only(log: bytes) -> bytes:
    """The lines of a log that are printable UTF-8 text: what a grantee of a shared model reads of
    its runs' logs. Whatever the model wrote as raw bytes (its own files, say) stays out."""
    kept = []
    for line in log.split(b"\n"):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if all(c.isprintable() or c in "\t\r" for c in text):
            kept.append(line)
    return b"\n".join(kept)


def open_result(storage: Storage, settings: Settings, run_id: str, *, numbers_only: bool = False) -> StoredResult:
    """Open the stored result; ``FileNotFoundError`` if it is not stored, ``NotATable`` if it is
    not an Arrow file (of numeric columns only, with ``numbers_only``). A remote blob is
    downloaded first, and its temporary file unlinked at once (the mapping keeps it readable until
    closed), so nothing is left behind however the download ends."""
    key = result_key(run_id)
    if isinstance(storage, LocalStorage):
        source = pa.memory_map(str(storage.local_path(key)))
    else:
        fd, name = tempfile.mkstemp(dir=settings.upload_tmp_dir, prefix="result-", suffix=".arrow")
        os.close(fd)
        try:
            storage.download(key, Path(name))
            source = pa.memory_map(name)
        finally:
            Path(name).unlink(missing_ok=True)
    try:
        reader = pa.ipc.open_file(source)
        if numbers_only and not _numbers_only(reader.schema):
            raise NotATable(run_id)
        return StoredResult(source, reader)
    except pa.ArrowInvalid as exc:
        source.close()
        raise NotATable(run_id) from exc
    except BaseException:
        source.close()
        raise
