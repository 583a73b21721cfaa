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


def presigned_result_url(storage: Storage, settings: Settings, run_id: str, format: str) -> str | None:
    """A short-lived URL of the stored result when the operator turned presigned results on and the
    backend can sign one; None to serve it through the API. Only ``arrow`` is stored as it is sent:
    the other formats are converted on the way out."""
    if not settings.s3_presign_results or format != "arrow":
        return None
    fmt = result_formats.FORMATS[format]
    return storage.presigned_url(result_key(run_id), settings.s3_presign_ttl_s,
                                 filename=f"{run_id}.{fmt.extension}", content_type=fmt.media_type)


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


def open_result(storage: Storage, settings: Settings, run_id: str) -> StoredResult:
    """Open the stored result; ``FileNotFoundError`` if it is not stored. A remote blob is downloaded
    first, and its temporary file unlinked at once (the mapping keeps it readable until closed), so
    nothing is left behind however the download ends."""
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
        return StoredResult(source, pa.ipc.open_file(source))
    except BaseException:
        source.close()
        raise
