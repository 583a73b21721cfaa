"""Result tables are stored as Arrow IPC; other formats are converted through pyarrow."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq


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


def read_table(arrow_ipc: bytes) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(arrow_ipc)).read_all()


def _json_value(value: object) -> object:
    # JSON has no NaN/Infinity; null keeps the document valid.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def convert(arrow_ipc: bytes, fmt: str) -> bytes:
    return encode(read_table(arrow_ipc), fmt)


def encode(table: pa.Table, fmt: str) -> bytes:
    sink = io.BytesIO()
    if fmt == "arrow":
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    elif fmt == "parquet":
        pq.write_table(table, sink)
    elif fmt == "csv":
        pa_csv.write_csv(table, sink)
    elif fmt == "json":
        columns = {name: [_json_value(v) for v in table.column(name).to_pylist()] for name in table.column_names}
        return json.dumps({"columns": table.column_names, "rows": table.num_rows, "data": columns},
                          allow_nan=False).encode()
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return sink.getvalue()
