"""Result encoders on tables a model can produce: an FMI 3 array variable is a list column, which
pyarrow's CSV writer refuses; CSV carries it as its JSON array text, JSON as an array."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa

from app.runs import result_formats


def table_with_an_array() -> pa.Table:
    return pa.table({
        "time": pa.array([0.0, 0.5, 1.0]),
        "x": pa.array([[1.0, 2.0], [3.0, float("inf")], None], pa.list_(pa.float64(), 2)),
        "n": pa.array([1, 2, 3], pa.int32()),
    })


def encoded(table: pa.Table, fmt: str) -> bytes:
    return b"".join(result_formats.iter_encode(table.schema, lambda: table.to_batches(), fmt))


def test_csv_writes_an_array_variable_as_json_text() -> None:
    rows = list(csv.reader(io.StringIO(encoded(table_with_an_array(), "csv").decode())))
    assert rows[0] == ["time", "x", "n"]
    assert rows[1] == ["0", "[1.0, 2.0]", "1"]
    assert json.loads(rows[2][1]) == [3.0, None]  # CSV has no infinity in JSON text either
    assert rows[3] == ["1", "", "3"]


def test_csv_of_no_rows_is_the_header() -> None:
    empty = table_with_an_array().slice(0, 0)
    assert encoded(empty, "csv").decode().splitlines() == ['"time","x","n"']


def test_json_keeps_the_array_as_an_array() -> None:
    document = json.loads(encoded(table_with_an_array(), "json"))
    assert document["rows"] == 3
    assert document["data"]["x"] == [[1.0, 2.0], [3.0, None], None]


def test_tables_without_lists_are_written_as_pyarrow_writes_them() -> None:
    plain = table_with_an_array().drop_columns(["x"])
    assert encoded(plain, "csv").decode().splitlines() == ['"time","n"', "0,1", "0.5,2", "1,3"]
