"""A sweep's tables, built from its children's stored Arrow results one child at a time.

The long result: ``sweep_index``, the parameters, then the time series of every succeeded child,
stacked (a parameter that is also a result column, e.g. an initial state that is an output, is
named ``start(<name>)``). The summary: one row per child — ``sweep_index``, ``run_id``,
``status``, ``error_code``, the parameters, then ``final(<output>)``, ``min(<output>)`` and
``max(<output>)`` of each numeric or boolean result column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from app.fmi.model_description import ModelInfo
from app.runs.result_formats import read_table
from app.runs.service import result_key
from app.storage import Storage
from app.sweeps.service import Child

ARROW_TYPES = {"real": pa.float64(), "integer": pa.int64(), "enumeration": pa.int64(), "boolean": pa.bool_(),
               "string": pa.string()}


class TableWriter(Protocol):
    def write_table(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


def parameter_types(info: ModelInfo, names: list[str]) -> dict[str, pa.DataType]:
    types = {}
    for name in names:
        variable = info.variable(name)
        types[name] = ARROW_TYPES.get(info.kind(variable), pa.string()) if variable else pa.string()
    return types


def _results(storage: Storage, children: Iterable[Child]) -> Iterator[tuple[Child, pa.Table | None]]:
    for child in children:
        key = result_key(child.stored_under)
        if child.status == "succeeded" and storage.exists(key):
            yield child, read_table(storage.read_bytes(key))
        else:
            yield child, None


def _open_writer(fmt: str, dest: Path, schema: pa.Schema) -> TableWriter:
    writer: TableWriter
    if fmt == "arrow":
        writer = pa.ipc.new_file(str(dest), schema)
    elif fmt == "parquet":
        writer = pq.ParquetWriter(str(dest), schema)
    elif fmt == "csv":
        writer = pa_csv.CSVWriter(str(dest), schema)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return writer


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A child's table with the first child's columns (missing ones null, types cast)."""
    if table.schema.equals(schema):
        return table
    columns = [table.column(field.name).cast(field.type) if field.name in table.column_names
               else pa.nulls(table.num_rows, field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def write_result(storage: Storage, info: ModelInfo, names: list[str], children: Iterable[Child], fmt: str,
                 dest: Path) -> int:
    """Write the long table to ``dest``; returns its number of rows."""
    types = parameter_types(info, names)
    writer: TableWriter | None = None
    schema: pa.Schema | None = None
    result_schema: pa.Schema | None = None
    rows = 0
    try:
        for child, table in _results(storage, children):
            if table is None:
                continue
            if result_schema is None:
                result_schema = table.schema
                taken = set(result_schema.names) | {"sweep_index"}
                fields = [pa.field("sweep_index", pa.int64())]
                fields += [pa.field(f"start({n})" if n in taken else n, types[n]) for n in names]
                schema = pa.schema(fields + list(result_schema))
                writer = _open_writer(fmt, dest, schema)
            assert schema is not None and writer is not None
            table = _conform(table, result_schema)
            n = table.num_rows
            prefix = [pa.repeat(pa.scalar(child.index, pa.int64()), n)]
            prefix += [pa.repeat(pa.scalar(child.start_values.get(name), types[name]), n) for name in names]
            writer.write_table(pa.Table.from_arrays(prefix + list(table.columns), schema=schema))
            rows += n
        if writer is None:  # no child succeeded: the columns we know, no rows
            schema = pa.schema([pa.field("sweep_index", pa.int64())] + [pa.field(n, types[n]) for n in names])
            writer = _open_writer(fmt, dest, schema)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _stats(table: pa.Table) -> dict[str, tuple[float | None, float | None, float | None]]:
    out: dict[str, tuple[float | None, float | None, float | None]] = {}
    for name in table.column_names:
        column = table.column(name)
        if name == "time" or not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                                  or pa.types.is_boolean(column.type)):
            continue
        values = column.cast(pa.float64())
        extremes = pc.min_max(values)
        final = values[-1].as_py() if len(values) else None
        out[name] = (final, extremes["min"].as_py(), extremes["max"].as_py())
    return out


def summary_table(storage: Storage, info: ModelInfo, names: list[str], children: Iterable[Child]) -> pa.Table:
    types = parameter_types(info, names)
    columns: dict[str, list[Any]] = {"sweep_index": [], "run_id": [], "status": [], "error_code": []}
    columns.update({name: [] for name in names})
    stats: dict[str, list[float | None]] = {}
    for count, (child, table) in enumerate(_results(storage, children), start=1):
        columns["sweep_index"].append(child.index)
        columns["run_id"].append(child.run_id)
        columns["status"].append(child.status)
        columns["error_code"].append(child.error_code)
        for name in names:
            columns[name].append(child.start_values.get(name))
        found = _stats(table) if table is not None else {}
        for output, values in found.items():
            for label, value in zip(("final", "min", "max"), values, strict=True):
                # A column first seen now: earlier children had no value for it.
                stats.setdefault(f"{label}({output})", [None] * (count - 1)).append(value)
        for column in stats.values():
            if len(column) < count:
                column.append(None)
    arrays = [pa.array(columns["sweep_index"], pa.int64()), pa.array(columns["run_id"], pa.string()),
              pa.array(columns["status"], pa.string()), pa.array(columns["error_code"], pa.string())]
    arrays += [pa.array(columns[name], types[name]) for name in names]
    # Insertion order: final, min, max of the first output, then of the next.
    arrays += [pa.array(values, pa.float64()) for values in stats.values()]
    return pa.Table.from_arrays(arrays, names=[*columns, *stats])


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
