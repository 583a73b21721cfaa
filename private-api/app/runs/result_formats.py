"""Result tables are stored as Arrow IPC; other formats are converted through pyarrow.

The converters stream: they encode ``ROWS_PER_CHUNK`` rows at a time and yield the bytes, so a
download's memory is one chunk's, however long the result. The JSON document is column-major
(``{"columns": [...], "rows": n, "data": {"<column>": [...], ...}}``), written column by column.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

# Rows encoded at once: a few hundred KB of CSV or JSON per chunk for a handful of float columns.
ROWS_PER_CHUNK = 16_384


@dataclass(frozen=True)
class ResultFormat:
    media_type: str
    extension: str


FORMATS = {
    "arrow": ResultFormat("application/vnd.apache.arrow.file", "arrow"),
    "parquet": ResultFormat("application/vnd.apache.parquet", "parquet"),
    "csv": ResultFormat("text/csv; charset=utf-8", "csv"),
    "json": ResultFormat("application/json", "json"),
}

# Re-iterable record batches: JSON, being column-major, reads them once per column.
Batches = Callable[[], Iterable[pa.RecordBatch]]


def read_table(arrow_ipc: bytes) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(arrow_ipc)).read_all()


def file_batches(reader: pa.ipc.RecordBatchFileReader) -> Batches:
    """The batches of an Arrow IPC file, read one at a time (zero-copy from a memory map)."""
    return lambda: (reader.get_batch(i) for i in range(reader.num_record_batches))


def _chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        for offset in range(0, batch.num_rows, ROWS_PER_CHUNK):
            yield batch.slice(offset, ROWS_PER_CHUNK)


def _finite(value: object) -> object:
    # JSON has no NaN/Infinity; null keeps the document valid.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json_items(array: pa.Array) -> str:
    """The values of ``array`` as JSON array items, without the brackets."""
    if pa.types.is_floating(array.type):
        array = pc.if_else(pc.is_finite(array), array, pa.scalar(None, array.type))
    values = array.to_pylist()
    try:
        text = json.dumps(values, allow_nan=False)
    except ValueError:  # a non-finite float inside a list value (an FMI 3 array variable)
        text = json.dumps(_finite(values), allow_nan=False)
    return text[1:-1]


def iter_json(schema: pa.Schema, batches: Batches) -> Iterator[bytes]:
    names = schema.names
    rows = sum(batch.num_rows for batch in batches())
    # The same bytes json.dumps gives the whole document, one column chunk at a time.
    yield f'{{"columns": {json.dumps(names)}, "rows": {rows}, "data": {{'.encode()
    for index, name in enumerate(names):
        yield f'{", " if index else ""}{json.dumps(name)}: ['.encode()
        first = True
        for chunk in _chunks(batches()):
            items = _json_items(chunk.column(index))
            if items:
                yield (items if first else ", " + items).encode()
                first = False
        yield b"]"
    yield b"}}"


def _csv_writable(chunk: pa.RecordBatch) -> pa.RecordBatch:
    """pyarrow's CSV writer takes no list columns (an FMI 3 array variable's): each such value
    becomes its JSON array text in one cell."""
    if not any(pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)
               for t in chunk.schema.types):
        return chunk
    columns = [pa.array([None if v is None else json.dumps(_finite(v), allow_nan=False) for v in column.to_pylist()],
                        pa.string())
               if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)
               or pa.types.is_large_list(column.type) else column
               for column in chunk.columns]
    return pa.RecordBatch.from_arrays(columns, names=chunk.schema.names)


def iter_csv(schema: pa.Schema, batches: Batches) -> Iterator[bytes]:
    header = True
    for chunk in _chunks(batches()):
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(_csv_writable(chunk), sink, pa_csv.WriteOptions(include_header=header))
        header = False
        yield sink.getvalue().to_pybytes()
    if header:  # no rows: the header alone
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(_csv_writable(pa.RecordBatch.from_pylist([], schema=schema)), sink)
        yield sink.getvalue().to_pybytes()


class _Drain:
    """A write-only file whose bytes are taken out as they are written."""

    def __init__(self) -> None:
        self.closed = False
        self._position = 0
        self._pending: list[bytes] = []

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._pending.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out, self._pending = b"".join(self._pending), []
        return out


def iter_parquet(schema: pa.Schema, batches: Batches) -> Iterator[bytes]:
    sink = _Drain()
    writer = pq.ParquetWriter(sink, schema)
    try:
        for chunk in _chunks(batches()):
            writer.write_batch(chunk)  # one row group per chunk
            yield sink.take()
    finally:
        writer.close()
    yield sink.take()


def iter_encode(schema: pa.Schema, batches: Batches, fmt: str) -> Iterator[bytes]:
    if fmt == "json":
        return iter_json(schema, batches)
    if fmt == "csv":
        return iter_csv(schema, batches)
    if fmt == "parquet":
        return iter_parquet(schema, batches)
    if fmt == "arrow":
        return iter([_arrow(schema, batches)])
    raise ValueError(f"unknown format {fmt!r}")


def _arrow(schema: pa.Schema, batches: Batches) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, schema) as writer:
        for batch in batches():
            writer.write_batch(batch)
    return sink.getvalue()


def encode(table: pa.Table, fmt: str) -> bytes:
    """A small table (a sweep's summary) in ``fmt``, whole."""
    return b"".join(iter_encode(table.schema, table.to_batches, fmt))
