"""The runner's array file, turned into the stored Arrow file on the host (app/sandbox/result_file.py).

The array file is written by the process that ran the model: every way it can lie is refused with
a reason, nothing it planted is followed, and what it says truthfully is converted value for value.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest
from numpy.lib import format as npy

from app.sandbox import result_file
from app.sandbox.result_file import Converted, arrow_path, check, convert, result_table
from app.sandbox.runner import write_result

LIMIT = 1 << 20
FMI3_LIKE = np.dtype([("time", "f8"), ("x", "f4"), ("n", "i4"), ("u", "u8"), ("b", "?"), ("v", "f8", (3,))])


def to_arrow(source: Path, max_bytes: int) -> tuple[str, str] | None:
    """convert() to a file: its problem, or None."""
    converted = convert(source, max_bytes)
    return converted if isinstance(converted, tuple) else None


def sample(rows: int, dtype: np.dtype = FMI3_LIKE) -> np.ndarray:
    array = np.zeros(rows, dtype=dtype)
    for name in dtype.names:
        field = array[name]
        field[...] = np.arange(field.size, dtype="f8").reshape(field.shape) * 0.5 if field.dtype.kind == "f" else (
            np.arange(field.size).reshape(field.shape) % 2 if field.dtype.kind == "b" else
            np.arange(field.size).reshape(field.shape))
    return array


def read(path: Path) -> pa.Table:
    with pa.OSFile(str(path), "rb") as source:
        return pyarrow.ipc.open_file(source).read_all()


def direct_arrow_bytes(array: np.ndarray) -> bytes:
    """What the runner wrote when it made the Arrow file itself."""
    table = result_table(array)
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


class TestConversion:
    def test_a_result_becomes_the_same_bytes_the_runner_wrote_as_arrow(self, tmp_path: Path) -> None:
        array = sample(501)
        assert write_result(array, tmp_path / "result.npy") == 501
        assert to_arrow(tmp_path / "result.npy", LIMIT) is None
        assert arrow_path(tmp_path / "result.npy").read_bytes() == direct_arrow_bytes(array)
        assert not (tmp_path / "result.npy").exists()  # its disk is given back at once
        table = read(tmp_path / "result.arrow")
        assert table.column_names == list(FMI3_LIKE.names)
        assert table.column("v").type == pa.list_(pa.float64(), 3)
        assert table.column("v").to_pylist()[1] == [1.5, 2.0, 2.5]

    def test_in_memory_a_batch_is_the_same_bytes_and_no_file(self, tmp_path: Path) -> None:
        array = sample(501)
        write_result(array, tmp_path / "result.npy")
        converted = convert(tmp_path / "result.npy", LIMIT, in_memory=True)
        assert isinstance(converted, Converted)
        assert (converted.rows, converted.columns) == (501, list(FMI3_LIKE.names))
        assert converted.data == direct_arrow_bytes(array)
        assert not (tmp_path / "result.arrow").exists() and not (tmp_path / "result.npy").exists()

    def test_in_memory_a_result_over_one_batch_is_written_instead(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(result_file, "_BATCH_BYTES", 1000)
        write_result(sample(100), tmp_path / "result.npy")
        converted = convert(tmp_path / "result.npy", LIMIT, in_memory=True)
        assert isinstance(converted, Converted) and converted.data is None and converted.rows == 100
        assert read(tmp_path / "result.arrow").num_rows == 100

    def test_a_check_looks_at_the_file_alone_and_leaves_it(self, tmp_path: Path) -> None:
        write_result(sample(7), tmp_path / "result.npy")
        assert check(tmp_path / "result.npy", LIMIT) is None
        assert (tmp_path / "result.npy").exists() and not (tmp_path / "result.arrow").exists()
        size = (tmp_path / "result.npy").stat().st_size
        assert check(tmp_path / "result.npy", 100) == (
            "output_too_large", f"result of {size} bytes exceeds the limit of 100 bytes")
        (tmp_path / "link.npy").symlink_to(tmp_path / "result.npy")
        assert check(tmp_path / "link.npy", LIMIT) == ("runner_error", "result is not a regular file")

    def test_an_empty_result_converts(self, tmp_path: Path) -> None:
        write_result(sample(0), tmp_path / "result.npy")
        assert to_arrow(tmp_path / "result.npy", LIMIT) is None
        assert read(tmp_path / "result.arrow").num_rows == 0

    def test_a_large_result_is_converted_in_bounded_batches_with_every_value(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(result_file, "_BATCH_BYTES", 1000)
        array = sample(1234)
        write_result(array, tmp_path / "result.npy")
        assert to_arrow(tmp_path / "result.npy", LIMIT) is None
        with pa.OSFile(str(tmp_path / "result.arrow"), "rb") as source:
            reader = pyarrow.ipc.open_file(source)
            assert reader.num_record_batches == -(-1234 // (1000 // FMI3_LIKE.itemsize))
            assert reader.read_all().equals(result_table(array))

    def test_a_result_of_thousands_of_variables_uses_the_larger_header(self, tmp_path: Path) -> None:
        wide = np.dtype([("time", "f8"), *((f"model.sub{n}.variable_with_a_long_name", "f8") for n in range(4000))])
        write_result(np.zeros(2, dtype=wide), tmp_path / "result.npy")
        with open(tmp_path / "result.npy", "rb") as f:
            assert npy.read_magic(f) == (2, 0)
        assert to_arrow(tmp_path / "result.npy", 8 * LIMIT) is None
        assert read(tmp_path / "result.arrow").num_columns == 4001


def planted(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "result.npy"
    path.write_bytes(data)
    return path


def npy_bytes(array: np.ndarray, **kwargs: bool) -> bytes:
    f = io.BytesIO()
    np.save(f, array, **kwargs)
    return f.getvalue()


class TestWhatTheSandboxCannotMakeTheHostDo:
    def test_no_result_file(self, tmp_path: Path) -> None:
        assert to_arrow(tmp_path / "result.npy", LIMIT) == (
            "runner_error", "runner reported success but wrote no result")

    def test_a_link_is_not_followed(self, tmp_path: Path) -> None:
        secret = tmp_path / "secret.npy"
        write_result(sample(3), secret)
        (tmp_path / "result.npy").symlink_to(secret)
        assert to_arrow(tmp_path / "result.npy", LIMIT) == ("runner_error", "result is not a regular file")
        assert not (tmp_path / "result.arrow").exists()

    def test_a_fifo_does_not_block_the_host(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "result.npy")
        assert to_arrow(tmp_path / "result.npy", LIMIT) == ("runner_error", "result is not a regular file")

    def test_a_result_over_the_limit_is_refused_before_it_is_read(self, tmp_path: Path) -> None:
        path = planted(tmp_path, npy_bytes(sample(100)))
        problem = to_arrow(path, 1000)
        assert problem is not None and problem[0] == "output_too_large"

    @pytest.mark.parametrize("data", [
        b"not an array at all",
        npy_bytes(np.arange(10.0)),  # not a table
        npy_bytes(np.zeros((2, 2), dtype=[("a", "f8")])),  # two-dimensional
        npy_bytes(np.array([("x",)], dtype=[("s", "U4")])),  # a string field
        npy_bytes(np.array([(1,)], dtype=[("o", "O")]), allow_pickle=True),  # pickled objects
        npy_bytes(sample(10))[:-8],  # fewer bytes than its rows
        npy_bytes(sample(10)) + b"\0" * 8,  # more bytes than its rows
        npy_bytes(sample(10)).replace(b"(10,)", b"(99999999999999,)"),  # a shape that would take the host's memory
        b"\x93NUMPY\x01\x00\x10\x00{'descr': [('a', 'f8', (99999999999,))], 'fortran_order': False, 'shape': (1,), }",
        b"\x93NUMPY\x01\x00\x08\x00__import__('os').system('true')",
        b"\x93NUMPY\x02\x00" + (2 << 20).to_bytes(4, "little") + b"{'descr': [",  # a header costing seconds
    ], ids=["garbage", "plain-array", "2d", "strings", "pickle", "short", "long", "huge-shape", "huge-subarray",
            "code", "huge-header"])
    def test_a_lying_array_file_is_refused(self, tmp_path: Path, data: bytes) -> None:
        problem = to_arrow(planted(tmp_path, data), LIMIT)
        assert problem is not None and problem[0] == "runner_error", problem
        assert problem[1].startswith("result is not a readable array"), problem
        assert not (tmp_path / "result.arrow").exists()

    def test_a_link_planted_where_the_arrow_file_goes_is_replaced_not_followed(self, tmp_path: Path) -> None:
        victim = tmp_path / "victim"
        victim.write_bytes(b"keep me")
        write_result(sample(3), tmp_path / "result.npy")
        (tmp_path / "result.arrow").symlink_to(victim)
        assert to_arrow(tmp_path / "result.npy", LIMIT) is None
        assert victim.read_bytes() == b"keep me"
        assert not (tmp_path / "result.arrow").is_symlink() and read(tmp_path / "result.arrow").num_rows == 3
