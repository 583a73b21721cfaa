"""A run's result as stored: the runner's NumPy array file turned into Arrow IPC, on the host.

The runner writes FMPy's structured array as ``.npy`` (``runner.write_result``): it never imports
pyarrow, whose size every forked run would pay for. The file is the sandbox's output, written by
code that ran the model, so it is read here as untrusted: a regular file (never a link), within
the output limit, a header NumPy parses without pickle, a one-dimensional array of numeric and
boolean fields whose size is exactly what the file holds. It is read and converted one record
batch of at most ``_BATCH_BYTES`` of rows at a time, so the host's memory per result stays
bounded whatever its size (and never mapped: a file truncated under a mapping is a SIGBUS). A
result of up to that size is one batch: the same bytes the runner wrote when it made the Arrow
file itself.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc
from numpy.lib import format as npy

from app.sandbox.base import ErrorCode

ARROW_SUFFIX = ".arrow"
_BATCH_BYTES = 8 << 20
# NumPy's own default is 10,000 bytes; a field takes ~50 (4,000 variables: 207 kB). Parsing costs
# the host ~0.25 s of CPU per MiB, which the sandbox can make it spend with a header alone: 1 MiB
# (~20,000 variables) is the most a run's result may take.
_MAX_HEADER_BYTES = 1 << 20
# bool, signed and unsigned integers, floats: what FMPy records (FMI 3 arrays as sub-arrays of these).
_KINDS = frozenset("biuf")

Problem = tuple[ErrorCode, str]


def arrow_column(values: Any) -> pa.Array:
    """One result field as an Arrow array; FMI 3 array variables become fixed-size lists."""
    if values.ndim == 1:
        return pa.array(values)
    width = math.prod(values.shape[1:])
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)


def result_table(result: Any) -> pa.Table:
    names = list(result.dtype.names)
    return pa.table([arrow_column(result[name]) for name in names], names=names)


def arrow_path(source: Path) -> Path:
    """Where ``convert`` writes the Arrow file of the runner's array file ``source``."""
    return source.with_suffix(ARROW_SUFFIX)


@dataclass(frozen=True)
class Converted:
    rows: int
    columns: list[str]
    # The Arrow file itself when asked for in memory and it is one batch; else it is at arrow_path(source).
    data: bytes | None = None


class _Unusable(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.problem: Problem = (code, message)


def check(source: Path, max_bytes: int) -> Problem | None:
    """Why the runner's array file ``source`` cannot be a result, or None: a regular file within
    the limit (``convert`` reads the rest, once)."""
    try:
        with _regular_file(source, max_bytes):
            return None
    except _Unusable as e:
        return e.problem


def convert(source: Path, max_bytes: int, *, in_memory: bool = False) -> Problem | Converted:
    """The runner's array file ``source`` as Arrow IPC, written to ``arrow_path(source)`` (created
    afresh: whatever the sandbox left under that name is removed, never followed), or with
    ``in_memory`` and a result of one batch, kept as bytes (for a store that takes them: a file
    fewer per run); why it cannot, or what it holds. ``source`` is removed once converted."""
    target = arrow_path(source)
    try:
        with _regular_file(source, max_bytes) as (f, size):
            try:
                dtype, rows = _read_header(f, size)
            except Exception as e:  # a header is untrusted text: any failure to parse it is the run's
                raise _Unusable("runner_error", f"result is not a readable array: {e}") from None
            data: bytes | None = None
            try:
                if in_memory and rows * dtype.itemsize <= _BATCH_BYTES:
                    buffer = pa.BufferOutputStream()
                    _write_arrow(f, dtype, rows, buffer)
                    data = buffer.getvalue().to_pybytes()
                else:
                    with open(_create(target), "wb") as sink:
                        _write_arrow(f, dtype, rows, sink)
            except ValueError as e:  # the file changed under us
                _remove(target)
                raise _Unusable("runner_error", f"result is not a readable array: {e}") from e
            except OSError as e:
                _remove(target)
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _Unusable("sandbox_error", "no disk space left on the host for the result") from e
                raise
    except _Unusable as e:
        return e.problem
    _remove(source)  # the run's disk back before its directory goes
    return Converted(rows, list(dtype.names or ()), data)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextlib.contextmanager
def _regular_file(source: Path, max_bytes: int) -> Iterator[tuple[IO[bytes], int]]:
    """The array file open, and its size; ``_Unusable`` if it is missing, not a regular file (a link
    is not followed, a FIFO does not block) or over ``max_bytes``."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _Unusable("runner_error", "runner reported success but wrote no result") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _Unusable("runner_error", "result is not a regular file") from None
        raise
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Unusable("runner_error", "result is not a regular file")
        if st.st_size > max_bytes:
            raise _Unusable("output_too_large", f"result of {st.st_size} bytes exceeds the limit of {max_bytes} bytes")
        yield f, st.st_size


def _create(target: Path) -> int:
    """A new file at ``target``; whatever the sandbox left there is removed first, never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(target, flags, 0o600)
    except FileExistsError:
        os.unlink(target)
        return os.open(target, flags, 0o600)


def _read_header(f: IO[bytes], size: int) -> tuple[np.dtype[Any], int]:
    """The array's dtype and rows, each checked against what a result can be; ``f`` is left at
    the data."""
    version = npy.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unexpected format version {version}")
    length_bytes = 2 if version == (1, 0) else 4
    prefix = f.read(length_bytes)
    length = int.from_bytes(prefix, "little")
    if length > _MAX_HEADER_BYTES:
        raise ValueError(f"its header of {length} bytes (too many variables) exceeds {_MAX_HEADER_BYTES}")
    header = f.read(length)
    if len(header) != length:
        raise ValueError("the header is cut short")
    shape, fortran_order, dtype = _parse_header(version, prefix + header)
    if len(shape) != 1 or fortran_order:
        raise ValueError(f"shape {shape} is not a table's")
    if not dtype.names or dtype.hasobject:
        raise ValueError("not a table of numeric fields")
    for name in dtype.names:
        if dtype[name].base.kind not in _KINDS:
            raise ValueError(f"field {name!r} is not numeric")
    rows, offset = shape[0], f.tell()
    if dtype.itemsize == 0 or rows * dtype.itemsize != size - offset:
        raise ValueError(f"{size - offset} bytes of data for {rows} rows of {dtype.itemsize} bytes")
    return dtype, rows


def _parse_header(version: tuple[int, int], header: bytes) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """NumPy's own parser (no pickle, no code) on a header's bytes. Not cached: a cache in the
    host would be state shared by every tenant's results, for ~0.05 ms a run."""
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran_order, dtype = read(io.BytesIO(header), max_header_size=_MAX_HEADER_BYTES)
    return shape, fortran_order, dtype


def _batch(source: IO[bytes], dtype: np.dtype[Any], count: int) -> pa.Table:
    data = source.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise ValueError("result changed while it was read")
    return result_table(np.frombuffer(data, dtype=dtype, count=count))


def _write_arrow(source: IO[bytes], dtype: np.dtype[Any], rows: int, sink: Any) -> None:
    per_batch = max(1, _BATCH_BYTES // dtype.itemsize)
    first = _batch(source, dtype, min(rows, per_batch))
    with pyarrow.ipc.new_file(sink, first.schema) as writer:
        writer.write_table(first)
        for start in range(per_batch, rows, per_batch):
            writer.write_table(_batch(source, dtype, min(rows - start, per_batch)))
