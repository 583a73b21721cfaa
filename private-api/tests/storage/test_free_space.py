"""The free space new work is admitted against (``app.storage.space``), and what a write that finds
the disk full leaves behind: nothing."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from tmpfs import fill, mounted_tmpfs

from app.errors import StorageFull
from app.storage import LocalStorage, Storage
from app.storage.s3 import S3Storage
from app.storage.space import FreeSpace, is_out_of_space

MIB = 1 << 20


class FakeStorage(LocalStorage):
    """A local storage whose free bytes (or the error reading them) the test sets, counting reads."""

    def __init__(self, root: Path, free: int | OSError | None) -> None:
        super().__init__(root)
        self.free = free
        self.reads = 0

    def free_bytes(self) -> int | None:
        self.reads += 1
        if isinstance(self.free, OSError):
            raise self.free
        return self.free


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def space(storage: Storage, min_free: int, clock: Clock) -> FreeSpace:
    return FreeSpace(storage, min_free, ttl_s=1.0, clock=clock)


class TestFreeBytes:
    def test_a_local_directory_reports_its_file_systems_free_bytes(self, tmp_path: Path) -> None:
        free = LocalStorage(tmp_path).free_bytes()
        assert free is not None and abs(free - shutil.disk_usage(tmp_path).free) < 64 * MIB

    def test_s3_has_no_such_limit(self) -> None:
        assert S3Storage(client=None, bucket="b").free_bytes() is None

    def test_the_figure_is_read_once_a_second(self, tmp_path: Path) -> None:
        storage, clock = FakeStorage(tmp_path, 10 * MIB), Clock()
        free_space = space(storage, MIB, clock)
        assert [free_space.free_bytes() for _ in range(100)] == [10 * MIB] * 100
        assert storage.reads == 1
        storage.free = 5 * MIB
        clock.now += 0.9
        assert free_space.free_bytes() == 10 * MIB
        clock.now += 0.1
        assert free_space.free_bytes() == 5 * MIB
        assert storage.reads == 2

    def test_an_unreadable_figure_is_unknown_and_refuses_nothing(self, tmp_path: Path) -> None:
        free_space = space(FakeStorage(tmp_path, FileNotFoundError(errno.ENOENT, "gone")), MIB, Clock())
        assert free_space.free_bytes() is None
        free_space.check()


class TestCheck:
    def test_under_the_threshold_is_507_storage_full_with_retry_after(self, tmp_path: Path) -> None:
        free_space = space(FakeStorage(tmp_path, MIB - 1), MIB, Clock())
        with pytest.raises(StorageFull) as raised:
            free_space.check()
        assert (raised.value.status, raised.value.code) == (507, "storage_full")
        assert int(raised.value.headers["Retry-After"]) > 0

    def test_at_the_threshold_is_admitted(self, tmp_path: Path) -> None:
        space(FakeStorage(tmp_path, MIB), MIB, Clock()).check()

    def test_a_refusal_ends_once_space_is_freed_and_the_figure_read_again(self, tmp_path: Path) -> None:
        storage, clock = FakeStorage(tmp_path, 0), Clock()
        free_space = space(storage, MIB, clock)
        with pytest.raises(StorageFull):
            free_space.check()
        storage.free = 2 * MIB
        with pytest.raises(StorageFull):
            free_space.check()  # still the figure read a moment ago
        clock.now += 1.0
        free_space.check()

    def test_a_threshold_of_0_turns_the_check_off_without_reading(self, tmp_path: Path) -> None:
        storage = FakeStorage(tmp_path, 0)
        space(storage, 0, Clock()).check()
        assert storage.reads == 0

    def test_a_storage_without_a_limit_is_never_refused(self, tmp_path: Path) -> None:
        space(FakeStorage(tmp_path, None), 1 << 40, Clock()).check()


class TestOutOfSpace:
    @pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
    def test_a_full_disk_or_quota_is_out_of_space(self, code: int) -> None:
        assert is_out_of_space(OSError(code, "full"))

    @pytest.mark.parametrize("error", [OSError(errno.EIO, "io"), PermissionError(errno.EACCES, "no"),
                                       ValueError("no")])
    def test_other_errors_are_not(self, error: Exception) -> None:
        assert not is_out_of_space(error)

    def test_a_write_that_fills_the_disk_leaves_no_partial_blob(self, tmp_path: Path) -> None:
        with mounted_tmpfs(tmp_path / "disk", 4 * MIB) as disk:
            storage = LocalStorage(disk / "blobs")
            fill(disk, MIB)
            source = tmp_path / "big.bin"
            source.write_bytes(bytes(2 * MIB))
            with pytest.raises(OSError) as raised:
                storage.put_file("runs/r1/result.arrow", source)
            assert is_out_of_space(raised.value)
            with pytest.raises(OSError):
                storage.put_bytes("runs/r1/log.txt", bytes(2 * MIB))
            assert [p.name for p in (disk / "blobs").rglob("*") if p.is_file()] == []
