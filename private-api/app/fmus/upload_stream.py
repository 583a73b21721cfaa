"""Receive an FMU upload by streaming the request body to a temp file.

The file is hashed and counted while it arrives, so it is never held whole in memory and
an oversize upload is cut off at the cap. Accepts ``multipart/form-data`` (field ``file``)
or a raw ``application/octet-stream`` body.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.body_limits import MULTIPART_ALLOWANCE
from app.errors import InvalidFilename, PayloadTooLarge, ProblemError
from app.fmus.service import UploadedFile
from app.kit.schemas import reject_unstorable
from app.storage.space import is_out_of_space


class MalformedUpload(ProblemError):
    status = 400
    code = "malformed_upload"
    title = "Malformed upload"


# A part's header line; real ones are a few hundred bytes.
MAX_PART_HEADER_BYTES = 8 << 10


def _bounded_header(data: bytes) -> None:
    if len(data) > MAX_PART_HEADER_BYTES:
        raise MalformedUpload(f"A multipart header exceeds {MAX_PART_HEADER_BYTES} bytes.")


# The fmus.filename column's width.
MAX_FILENAME_CHARS = 255


def _filename(raw: str | None) -> str | None:
    """The client's name for the file, refused (not silently cut) if it cannot be stored as given."""
    if raw is None:
        return None
    name = os.path.basename(raw)
    if len(name) > MAX_FILENAME_CHARS:
        raise InvalidFilename(f"The filename exceeds {MAX_FILENAME_CHARS} characters.", limit=MAX_FILENAME_CHARS)
    try:
        reject_unstorable(name)
    except ValueError as exc:
        raise InvalidFilename(f"The filename {exc}.") from None
    return name or None


class _Sink:
    """Writes the file part to disk while hashing and enforcing the size cap."""

    def __init__(self, handle: BinaryIO, max_bytes: int) -> None:
        self.handle = handle
        self.max_bytes = max_bytes
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(f"The FMU exceeds the upload limit of {self.max_bytes} bytes.",
                                  limit=self.max_bytes)
        self.digest.update(data)
        self.handle.write(data)


class _MultipartFile:
    """Routes the ``file`` part of a multipart body into a sink; other parts are ignored."""

    def __init__(self, sink: _Sink, boundary: bytes) -> None:
        self.sink = sink
        self.filename: str | None = None
        self.found = False
        self._in_file = False
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self.parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        })

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]
        _bounded_header(self._header_field)

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        _bounded_header(self._header_value)

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and not self.found:
            self._in_file = True
            self.found = True
            raw = options.get(b"filename")
            self.filename = _filename(raw.decode("utf-8", "replace")) if raw else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.sink.write(data[start:end])

    def _part_end(self) -> None:
        self._in_file = False


async def receive_upload(request: Request, tmp_dir: Path, max_bytes: int) -> UploadedFile:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + MULTIPART_ALLOWANCE:
        raise PayloadTooLarge(f"The FMU exceeds the upload limit of {max_bytes} bytes.", limit=max_bytes)
    content_type, options = parse_options_header(request.headers.get("content-type"))
    query_filename = _filename(request.query_params.get("filename"))
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-", suffix=".fmu")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            sink = _Sink(handle, max_bytes)
            filename: str | None = None
            if content_type == b"multipart/form-data":
                boundary = options.get(b"boundary")
                if not boundary:
                    raise MalformedUpload("multipart/form-data without a boundary.")
                multipart = _MultipartFile(sink, boundary)
                # Every part counts, not only the file: the envelope gets a small allowance.
                envelope_cap = max_bytes + MULTIPART_ALLOWANCE
                total = 0
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > envelope_cap:
                        raise PayloadTooLarge(f"The FMU exceeds the upload limit of {max_bytes} bytes.",
                                              limit=max_bytes)
                    multipart.parser.write(chunk)
                multipart.parser.finalize()
                if not multipart.found:
                    raise MalformedUpload("The multipart body has no 'file' field.")
                filename = multipart.filename
            elif content_type in (b"application/octet-stream", b"application/zip"):
                async for chunk in request.stream():
                    sink.write(chunk)
                filename = query_filename
            else:
                raise MalformedUpload("Send the FMU as multipart/form-data (field 'file') or "
                                      "application/octet-stream.")
        return UploadedFile(path=path, sha256=sink.digest.hexdigest(), size=sink.size, filename=filename)
    except ProblemError:
        path.unlink(missing_ok=True)
        raise
    except Exception as exc:
        path.unlink(missing_ok=True)
        if is_out_of_space(exc):
            raise  # the server's disk, not the upload: 507 storage_full (app.main)
        raise MalformedUpload(f"The upload could not be read: {exc}") from exc
