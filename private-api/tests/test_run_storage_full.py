"""What a worker stores when blob storage is full (``FmuRunner._store``, ``_store_child``): the log
first, then the result; a result that does not fit fails the run with ``storage_full`` (a platform
error: refunded), keeping the log if it fit, and nothing is left half-written. On a real, small
tmpfs; the end-to-end case is tests/api/test_storage_full.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pytest
from tmpfs import fill, mounted_tmpfs

from app.config import Settings
from app.runs.executor import FmuRunner
from app.runs.lifecycle import PLATFORM_ERRORS
from app.runs.service import log_key, result_key
from app.sandbox.base import Limits, Outcome
from app.sandbox.runner import write_result
from app.storage import LocalStorage

MIB = 1 << 20
LOG = "[OK] logAll: Instantiated VanDerPol.\n"


def result_array(path: Path, size: int) -> Path:
    """A result as the runner writes it (its Arrow form is a little larger)."""
    write_result(np.zeros(size // 8, dtype=[("time", "f8")]), path)
    return path


def outcome(**fields: Any) -> Outcome:
    base: dict[str, Any] = {"status": "succeeded", "error_code": None, "error_message": None, "result_path": None,
                            "log": LOG, "wall_time_s": 0.5, "cpu_time_s": 0.4, "max_rss_bytes": 1 << 20,
                            "exit_code": 0, "signal": None}
    return Outcome(**{**base, **fields})


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", 4 * MIB) as mounted:
        yield mounted


@pytest.fixture
def runner(disk: Path, tmp_path: Path) -> FmuRunner:
    # _store and _store_child use the storage alone.
    none = cast(Any, None)
    return FmuRunner(Settings(var_dir=tmp_path / "var"), none, LocalStorage(disk / "blobs"), none, none, none)


def stored_files(disk: Path) -> list[str]:
    return sorted(p.relative_to(disk / "blobs").as_posix() for p in (disk / "blobs").rglob("*") if p.is_file())


class TestStore:
    def test_a_result_that_does_not_fit_fails_the_run_storage_full_with_its_log_kept(
            self, runner: FmuRunner, disk: Path, tmp_path: Path) -> None:
        result = result_array(tmp_path / "result.npy", 2 * MIB)
        fill(disk, MIB)
        fields = runner._store("run_a", outcome(result_path=result), Limits())
        assert (fields["status"], fields["error_code"]) == ("failed", "storage_full")
        assert "storage is full" in fields["error_message"] and "log is kept" in fields["error_message"]
        assert "storage_full" in PLATFORM_ERRORS  # refunded when it settles
        assert stored_files(disk) == [log_key("run_a")]
        assert runner.storage.read_bytes(log_key("run_a")).decode() == LOG

    def test_when_not_even_the_log_fits_nothing_is_stored_and_the_message_says_so(
            self, runner: FmuRunner, disk: Path, tmp_path: Path) -> None:
        result = result_array(tmp_path / "result.npy", 2 * MIB)
        fill(disk, 0)
        fields = runner._store("run_b", outcome(result_path=result), Limits())
        assert (fields["status"], fields["error_code"]) == ("failed", "storage_full")
        assert "log could not be stored" in fields["error_message"]
        assert stored_files(disk) == []

    def test_a_model_failure_whose_log_does_not_fit_keeps_its_verdict_and_says_the_log_is_lost(
            self, runner: FmuRunner, disk: Path) -> None:
        fill(disk, 0)
        fields = runner._store("run_c", outcome(status="failed", error_code="model_error",
                                                error_message="fmi2DoStep failed"), Limits())
        assert (fields["status"], fields["error_code"]) == ("failed", "model_error")
        assert fields["error_message"] == "fmi2DoStep failed (its log could not be stored: storage is full)"
        assert stored_files(disk) == []

    def test_a_result_that_fits_is_stored_after_its_log(self, runner: FmuRunner, disk: Path,
                                                        tmp_path: Path) -> None:
        result = result_array(tmp_path / "result.npy", MIB // 2)
        fill(disk, 2 * MIB)
        fields = runner._store("run_d", outcome(result_path=result), Limits())
        assert fields["status"] == "succeeded" and fields["result_bytes"] > MIB // 2
        assert pa.ipc.open_file(pa.BufferReader(runner.storage.read_bytes(result_key("run_d")))).read_all().num_rows \
            == MIB // 16
        assert stored_files(disk) == sorted([log_key("run_d"), result_key("run_d")])


class TestStoreChild:
    def test_a_sweep_child_whose_result_does_not_fit_fails_storage_full_with_its_log_kept(
            self, runner: FmuRunner, disk: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        out.mkdir()
        result_array(out / "run_e.npy", 2 * MIB)
        (out / "run_e.log").write_text(LOG)
        fill(disk, MIB)
        report = {"event": "child_done", "id": "run_e", "ok": True, "cpu_time_s": 0.1, "wall_time_s": 0.2}
        fields = runner._store_child("run_e", report, outcome(out_dir=out), Limits(), 1.0)
        assert (fields["status"], fields["error_code"]) == ("failed", "storage_full")
        assert "log is kept" in fields["error_message"]
        assert stored_files(disk) == [log_key("run_e")]
