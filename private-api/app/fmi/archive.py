"""Safe inspection and extraction of an uploaded FMU (a zip archive already on disk).

An FMU is untrusted input: every member name, file type, size and compression ratio is
checked before a single byte is extracted, and extraction counts the bytes it actually
writes because the sizes declared in the zip headers can lie.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.errors import ArchiveTooLarge, MissingModelDescription, NotAZip, UnsafeArchive
from app.fmi.model_description import ModelInfo, parse_model_description
from app.fmi.platforms import is_shared_library, require_host_platform, shared_libraries_in_archive

MODEL_DESCRIPTION = "modelDescription.xml"

# Below this size a high compression ratio is normal (XML, zero-filled tables).
_RATIO_FLOOR_BYTES = 1 << 20
# Generous average size of one central-directory entry; bounds what zipfile loads in memory.
_DIRECTORY_BYTES_PER_MEMBER = 1024
_CHUNK_BYTES = 1 << 20
_MAX_NAME_COMPONENT_BYTES = 255
# bzip2/lzma decompress without an output bound in zipfile, so one read can explode; FMI
# itself only allows stored and deflated members.
_ALLOWED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ALLOWED_FILE_TYPES = frozenset({0, stat.S_IFREG, stat.S_IFDIR})
_ENCRYPTED_FLAGS = 0x1 | 0x40  # traditional PKWARE and strong encryption
_LOCAL_HEADER_BYTES = 30
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")

_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


@dataclass(frozen=True)
class ArchiveLimits:
    max_uncompressed_bytes: int = 1 << 30
    max_members: int = 10_000
    max_ratio: float = 200.0
    max_xml_bytes: int = 16 << 20
    max_variables: int = 100_000
    # Bytes of the parsed model information as stored (JSON); checked by the registry.
    max_model_info_bytes: int = 32 << 20


@dataclass(frozen=True)
class ArchiveSummary:
    """The members of an archive that passed every check, in archive order."""

    members: tuple[zipfile.ZipInfo, ...]
    uncompressed_bytes: int
    compressed_bytes: int

    @property
    def names(self) -> list[str]:
        return [info.filename for info in self.members]


@dataclass(frozen=True)
class InspectedFmu:
    info: ModelInfo
    # What extraction will write, from the archive's declared sizes (extract_fmu holds it to them).
    extracted_bytes: int


def inspect_fmu(path: Path, limits: ArchiveLimits) -> InspectedFmu:
    """The upload check: a safe archive, a valid model description, a binary for this host.

    Extraction is separate (``extract_fmu``) because the caller caches it by sha256.
    """
    summary = inspect_archive(path, limits)
    info = parse_model_description(read_model_description_bytes(path, limits), max_variables=limits.max_variables)
    binaries = shared_libraries_in_archive(summary.names)
    info = require_host_platform(info.model_copy(update={"platforms": list(binaries), "binaries": binaries}))
    return InspectedFmu(info, summary.uncompressed_bytes)


def inspect_archive(path: Path, limits: ArchiveLimits) -> ArchiveSummary:
    """Validate the archive at ``path`` without extracting anything."""
    with _open_zip(path, limits) as zf:
        return _checked_members(zf, limits)


def extract_fmu(path: Path, dest: Path, limits: ArchiveLimits) -> bool:
    """Extract a validated archive to ``dest``, atomically; True if this call's tree is the one published.

    Members are written into a staging directory beside ``dest`` that is renamed into place
    at the end, so readers never see a partial tree. If another extraction (of the same
    sha256) got there first, ours is discarded and theirs is kept. The archive may write no
    more than its headers declare (the size quotas were charged), however its data decompresses.
    """
    with _open_zip(path, limits) as zf:
        summary = _checked_members(zf, limits)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
        try:
            budget = min(summary.uncompressed_bytes, limits.max_uncompressed_bytes)
            _extract_members(zf, summary.members, staging, budget)
            return _publish(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def read_model_description_bytes(path: Path, limits: ArchiveLimits) -> bytes:
    """Read ``modelDescription.xml`` from the archive root, at most ``max_xml_bytes``."""
    with _open_zip(path, limits) as zf:
        try:
            info = zf.getinfo(MODEL_DESCRIPTION)
        except KeyError:
            raise MissingModelDescription(f"The FMU has no {MODEL_DESCRIPTION} at its root.") from None
        _check_member_encoding(info)
        if info.file_size > limits.max_xml_bytes:
            raise _xml_too_large(limits)
        with _reading(info), zf.open(info) as src:
            xml = src.read(limits.max_xml_bytes + 1)
        if len(xml) > limits.max_xml_bytes:
            raise _xml_too_large(limits)
        return xml


@contextmanager
def _open_zip(path: Path, limits: ArchiveLimits) -> Iterator[zipfile.ZipFile]:
    with path.open("rb") as fp:
        _check_central_directory(fp, limits)
        try:
            zf = zipfile.ZipFile(fp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error) as exc:
            raise NotAZip(f"The upload is not a readable zip archive: {exc}") from exc
        with zf:
            yield zf


def _check_central_directory(fp: IO[bytes], limits: ArchiveLimits) -> None:
    """Bound the central directory before zipfile loads all of it into memory."""
    entries, directory_bytes = _central_directory_extent(fp)
    if entries > limits.max_members:
        raise ArchiveTooLarge(
            f"The archive has {entries} members; at most {limits.max_members} are allowed.",
            limit=limits.max_members,
        )
    if directory_bytes > limits.max_members * _DIRECTORY_BYTES_PER_MEMBER:
        raise ArchiveTooLarge(
            f"The archive's central directory is {directory_bytes} bytes, which is implausibly large.",
        )


def _central_directory_extent(fp: IO[bytes]) -> tuple[int, int]:
    """Return (entry count, central directory size) from the end records, as zipfile reads them."""
    size = fp.seek(0, os.SEEK_END)
    tail_start = max(0, size - _EOCD.size - 0xFFFF)
    fp.seek(tail_start)
    tail = fp.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise NotAZip("The upload is not a zip archive (no end of central directory record).")
    fields = _EOCD.unpack_from(tail, at)
    entries, directory_bytes = fields[4], fields[5]
    zip64 = _zip64_extent(fp, tail_start + at)
    return zip64 if zip64 is not None else (entries, directory_bytes)


def _zip64_extent(fp: IO[bytes], eocd_offset: int) -> tuple[int, int] | None:
    # zipfile looks for the ZIP64 records immediately before the classic end record.
    record_offset = eocd_offset - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    if record_offset < 0:
        return None
    fp.seek(record_offset)
    record = fp.read(_ZIP64_EOCD.size)
    locator = fp.read(_ZIP64_LOCATOR.size)
    if locator[:4] != b"PK\x06\x07" or record[:4] != b"PK\x06\x06":
        return None
    fields = _ZIP64_EOCD.unpack(record)
    return fields[7], fields[8]


def _checked_members(zf: zipfile.ZipFile, limits: ArchiveLimits) -> ArchiveSummary:
    members = zf.infolist()
    if len(members) > limits.max_members:
        raise ArchiveTooLarge(
            f"The archive has {len(members)} members; at most {limits.max_members} are allowed.",
            limit=limits.max_members,
        )
    for info in members:
        _check_member(info, limits)
    _check_unique_paths(members)
    _check_no_overlap(members)
    summary = ArchiveSummary(
        members=tuple(members),
        uncompressed_bytes=sum(info.file_size for info in members),
        compressed_bytes=sum(info.compress_size for info in members),
    )
    _check_totals(summary, limits)
    return summary


def _check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    reason = _unsafe_name_reason(info.filename)
    if reason is not None:
        raise _unsafe(info.filename, reason)
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type not in _ALLOWED_FILE_TYPES:
        raise _unsafe(info.filename, "is a symbolic link or special file")
    if info.is_dir() and info.file_size:
        raise _unsafe(info.filename, "is a directory entry that carries data")
    _check_member_encoding(info)
    if info.file_size > _RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * info.compress_size:
        raise ArchiveTooLarge(
            f"Member {info.filename!r} expands {info.file_size // max(info.compress_size, 1)}-fold; "
            f"at most {limits.max_ratio:g}-fold is allowed.",
            member=info.filename,
        )


def _check_member_encoding(info: zipfile.ZipInfo) -> None:
    if info.flag_bits & _ENCRYPTED_FLAGS:
        raise _unsafe(info.filename, "is encrypted")
    if info.compress_type not in _ALLOWED_COMPRESSION:
        raise _unsafe(
            info.filename, f"uses compression method {info.compress_type}; only stored and deflate are allowed"
        )


def _unsafe_name_reason(name: str) -> str | None:
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE_LETTER.match(name):
        return "starts with a drive letter"
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        return "contains a '..' component"
    if "" in parts or "." in parts:
        return "contains an empty or '.' component"
    if any(len(part.encode()) > _MAX_NAME_COMPONENT_BYTES for part in parts):
        return "has a path component longer than 255 bytes"
    return None


def _check_unique_paths(members: list[zipfile.ZipInfo]) -> None:
    # "a" and "a/" would land on the same path, and a file cannot also be a parent directory.
    files: set[str] = set()
    seen: set[str] = set()
    for info in members:
        path = info.filename.removesuffix("/")
        if path in seen:
            raise _unsafe(info.filename, "appears more than once")
        seen.add(path)
        if not info.is_dir():
            files.add(path)
    for path in seen:
        parents = path.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            parent = "/".join(parents[:depth])
            if parent in files:
                raise _unsafe(path, f"is inside {parent!r}, which is a file")


def _check_no_overlap(members: list[zipfile.ZipInfo]) -> None:
    # Members sharing compressed bytes are the trick behind non-recursive zip bombs.
    ordered = sorted(members, key=lambda info: info.header_offset)
    for info, following in itertools.pairwise(ordered):
        if info.header_offset + _LOCAL_HEADER_BYTES + info.compress_size > following.header_offset:
            raise _unsafe(following.filename, f"overlaps the data of {info.filename!r}")


def _check_totals(summary: ArchiveSummary, limits: ArchiveLimits) -> None:
    total = summary.uncompressed_bytes
    if total > limits.max_uncompressed_bytes:
        raise ArchiveTooLarge(
            f"The archive expands to {total} bytes; at most {limits.max_uncompressed_bytes} are allowed.",
            limit=limits.max_uncompressed_bytes,
        )
    if total > _RATIO_FLOOR_BYTES and total > limits.max_ratio * summary.compressed_bytes:
        raise ArchiveTooLarge(
            f"The archive expands {total // max(summary.compressed_bytes, 1)}-fold; "
            f"at most {limits.max_ratio:g}-fold is allowed.",
        )


def _extract_members(zf: zipfile.ZipFile, members: tuple[zipfile.ZipInfo, ...], root: Path, budget: int) -> None:
    for info in members:
        target = root.joinpath(*info.filename.removesuffix("/").split("/"))
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        budget -= _write_member(zf, info, target, budget)
    _make_tree_readable(root)


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    # O_EXCL|O_NOFOLLOW: never write through a link or over something already there.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(target, flags, 0o600), "wb") as out, _reading(info), zf.open(info) as src:
        written = copy_capped(src, out, budget, member=info.filename)
        os.fchmod(out.fileno(), 0o755 if is_shared_library(info.filename) else 0o644)
    return written


def copy_capped(src: IO[bytes], dst: IO[bytes], budget: int, *, member: str) -> int:
    """Copy ``src`` to ``dst`` in chunks, failing as soon as more than ``budget`` bytes arrive."""
    written = 0
    while chunk := src.read(_CHUNK_BYTES):
        written += len(chunk)
        if written > budget:
            raise ArchiveTooLarge(f"Extracting {member!r} exceeded the allowed uncompressed size.", member=member)
        dst.write(chunk)
    return written


@contextmanager
def _reading(info: zipfile.ZipInfo) -> Iterator[None]:
    """Turn a member whose data contradicts its headers into a problem naming that member."""
    try:
        yield
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise _unsafe(info.filename, f"is corrupt or does not match its header ({exc})") from exc


def _make_tree_readable(root: Path) -> None:
    # Directories are created under the process umask; the cache must be world-readable.
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o755)


def _publish(staging: Path, dest: Path) -> bool:
    try:
        os.rename(staging, dest)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and dest.is_dir():
            shutil.rmtree(staging)  # an earlier or concurrent extraction of the same FMU is in place
            return False
        raise
    return True


def _unsafe(member: str, reason: str) -> UnsafeArchive:
    return UnsafeArchive(f"Archive member {member!r} {reason}.", member=member)


def _xml_too_large(limits: ArchiveLimits) -> ArchiveTooLarge:
    return ArchiveTooLarge(
        f"{MODEL_DESCRIPTION} is larger than {limits.max_xml_bytes} bytes.",
        member=MODEL_DESCRIPTION,
        limit=limits.max_xml_bytes,
    )
