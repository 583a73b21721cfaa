from __future__ import annotations

import io
import os
import stat
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import ArchiveTooLarge, MissingModelDescription, NotAZip, UnsafeArchive
from app.fmi import archive
from app.fmi.archive import (
    ArchiveLimits,
    copy_capped,
    extract_fmu,
    inspect_archive,
    read_model_description_bytes,
)

from .fmu_archives import (
    CHAR_DEVICE,
    FIFO,
    FMI2_XML,
    SYMLINK,
    fmu_members,
    patch_member,
    special_file,
    write_zero_bomb,
    write_zip,
)

LIMITS = ArchiveLimits()


@pytest.fixture
def fmu(tmp_path: Path) -> Path:
    members = [
        *fmu_members(),
        ("documentation/", b""),
        ("resources/data/table.csv", b"t,x\n0,1\n"),
    ]
    return write_zip(tmp_path / "tank.fmu", members)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    # Extraction must set modes itself, not inherit whatever umask the worker runs with.
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".partial"))


class TestInspectArchive:
    def test_a_valid_fmu_is_summarised_in_archive_order(self, fmu: Path) -> None:
        summary = inspect_archive(fmu, LIMITS)

        assert summary.names == [
            "modelDescription.xml",
            "binaries/linux64/Tank.so",
            "documentation/",
            "resources/data/table.csv",
        ]
        assert summary.uncompressed_bytes == sum(info.file_size for info in summary.members)

    def test_a_text_file_is_not_a_zip(self, tmp_path: Path) -> None:
        path = tmp_path / "model.fmu"
        path.write_text("just some text, no archive here\n" * 100)

        with pytest.raises(NotAZip):
            inspect_archive(path, LIMITS)

    def test_an_empty_file_is_not_a_zip(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.fmu"
        path.touch()

        with pytest.raises(NotAZip) as raised:
            inspect_archive(path, LIMITS)
        assert raised.value.code == "not_a_zip"

    def test_a_truncated_zip_is_not_a_zip(self, fmu: Path) -> None:
        fmu.write_bytes(fmu.read_bytes()[:-30])

        with pytest.raises(NotAZip):
            inspect_archive(fmu, LIMITS)

    @pytest.mark.parametrize(
        "name",
        [
            "../evil",
            "/abs",
            "/etc/cron.d/evil",
            "a/../../b",
            "binaries/linux64/../../../evil.so",
            "..\\evil",
            "a\\..\\..\\b",
            "C:/Windows/evil.dll",
            "c:evil",
            "a//b",
            "./modelDescription.xml",
            "x" * 256,
        ],
    )
    def test_a_member_that_could_escape_or_alias_is_refused(self, tmp_path: Path, name: str) -> None:
        path = write_zip(tmp_path / "slip.fmu", [*fmu_members(), (name, b"pwned")])

        with pytest.raises(UnsafeArchive) as raised:
            inspect_archive(path, LIMITS)
        assert raised.value.code == "unsafe_archive"
        assert raised.value.extra["member"] == name
        assert repr(name) in raised.value.detail

    @pytest.mark.parametrize("file_type", [SYMLINK, FIFO, CHAR_DEVICE], ids=["symlink", "fifo", "device"])
    def test_a_symlink_or_special_file_is_refused(self, tmp_path: Path, file_type: int) -> None:
        member = special_file("resources/passwd", file_type)
        path = write_zip(tmp_path / "link.fmu", [*fmu_members(), (member, b"/etc/passwd")])

        with pytest.raises(UnsafeArchive) as raised:
            inspect_archive(path, LIMITS)
        assert raised.value.extra["member"] == "resources/passwd"

    @pytest.mark.parametrize(
        "names",
        [["resources/a", "resources/a"], ["resources/a", "resources/a/"], ["resources/a", "resources/a/b"]],
        ids=["duplicate", "file-and-directory", "file-as-parent"],
    )
    def test_members_that_collide_on_disk_are_refused(self, tmp_path: Path, names: list[str]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate we write on purpose
            path = write_zip(tmp_path / "dup.fmu", [*fmu_members(), *((name, b"") for name in names)])

        with pytest.raises(UnsafeArchive):
            inspect_archive(path, LIMITS)

    def test_an_encrypted_member_is_refused(self, fmu: Path) -> None:
        patch_member(fmu, "resources/data/table.csv", flags=0x1)

        with pytest.raises(UnsafeArchive) as raised:
            inspect_archive(fmu, LIMITS)
        assert "encrypted" in raised.value.detail
        assert raised.value.extra["member"] == "resources/data/table.csv"

    def test_a_bzip2_member_is_refused_because_zipfile_cannot_bound_its_output(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "bz.fmu", fmu_members(), compression=zipfile.ZIP_BZIP2)

        with pytest.raises(UnsafeArchive, match="compression method"):
            inspect_archive(path, LIMITS)

    def test_members_sharing_compressed_data_are_refused(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "overlap.fmu", [("a", b"x" * 1000), ("b", b"y" * 1000)])
        patch_member(path, "b", offset=0)

        with pytest.raises(UnsafeArchive, match="overlaps"):
            inspect_archive(path, LIMITS)

    def test_more_members_than_allowed_is_too_large(self, fmu: Path) -> None:
        with pytest.raises(ArchiveTooLarge) as raised:
            inspect_archive(fmu, ArchiveLimits(max_members=3))
        assert raised.value.code == "archive_too_large"

    def test_a_declared_total_above_the_limit_is_too_large(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "big.fmu", [*fmu_members(), ("resources/blob", os.urandom(64 << 10))])

        with pytest.raises(ArchiveTooLarge, match="expands to"):
            inspect_archive(path, ArchiveLimits(max_uncompressed_bytes=32 << 10))

    def test_a_member_compressed_beyond_the_ratio_cap_is_too_large(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "ratio.fmu", [*fmu_members(), ("resources/zeros", bytes(8 << 20))])

        with pytest.raises(ArchiveTooLarge) as raised:
            inspect_archive(path, LIMITS)
        assert raised.value.extra["member"] == "resources/zeros"

    def test_many_small_members_beyond_the_total_ratio_cap_are_too_large(self, tmp_path: Path) -> None:
        zeros = [(f"resources/{i}", bytes(512 << 10)) for i in range(8)]
        path = write_zip(tmp_path / "ratio.fmu", [*fmu_members(), *zeros])

        with pytest.raises(ArchiveTooLarge, match="archive expands"):
            inspect_archive(path, LIMITS)

    def test_small_files_may_compress_well(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "sparse.fmu", [*fmu_members(), ("resources/zeros", bytes(512 << 10))])

        assert "resources/zeros" in inspect_archive(path, LIMITS).names

    def test_a_two_gib_zip_bomb_is_refused_without_decompressing_it(
        self, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        bomb = write_zero_bomb(tmp_path_factory.mktemp("bomb") / "bomb.fmu", 2 << 30)
        dest = bomb.parent / "extracted"

        started = time.perf_counter()
        with pytest.raises(ArchiveTooLarge):
            extract_fmu(bomb, dest, LIMITS)

        assert time.perf_counter() - started < 1.0
        assert not dest.exists()
        assert leftovers(bomb.parent) == []


class TestExtractFmu:
    def test_files_are_world_readable_and_libraries_executable(
        self, fmu: Path, tmp_path: Path, strict_umask: None
    ) -> None:
        dest = tmp_path / "cache" / "sha"
        dest.parent.mkdir()

        assert extract_fmu(fmu, dest, LIMITS) is True

        assert (dest / "modelDescription.xml").read_bytes() == FMI2_XML
        assert (dest / "resources/data/table.csv").read_text() == "t,x\n0,1\n"
        assert stat.S_IMODE(dest.stat().st_mode) == 0o755
        assert stat.S_IMODE((dest / "documentation").stat().st_mode) == 0o755
        assert stat.S_IMODE((dest / "resources/data").stat().st_mode) == 0o755
        assert stat.S_IMODE((dest / "modelDescription.xml").stat().st_mode) == 0o644
        assert stat.S_IMODE((dest / "binaries/linux64/Tank.so").stat().st_mode) == 0o755
        assert leftovers(dest.parent) == []

    def test_an_extraction_that_lost_the_race_keeps_the_winner(self, fmu: Path, tmp_path: Path) -> None:
        dest = tmp_path / "sha"
        dest.mkdir()
        (dest / "winner").write_text("first")

        assert extract_fmu(fmu, dest, LIMITS) is False

        assert [p.name for p in dest.iterdir()] == ["winner"]
        assert leftovers(tmp_path) == []

    def test_an_unsafe_archive_leaves_nothing_behind(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "slip.fmu", [*fmu_members(), ("../../evil", b"pwned")])
        dest = tmp_path / "out" / "sha"
        dest.parent.mkdir()

        with pytest.raises(UnsafeArchive):
            extract_fmu(path, dest, LIMITS)

        assert list(dest.parent.iterdir()) == []
        assert not (tmp_path / "evil").exists()

    def test_a_member_larger_than_its_declared_size_is_refused(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "liar.fmu", [*fmu_members(), ("resources/blob", os.urandom(256 << 10))])
        patch_member(path, "resources/blob", file_size=16)
        dest = tmp_path / "sha"

        with pytest.raises(UnsafeArchive) as raised:
            extract_fmu(path, dest, LIMITS)

        assert raised.value.extra["member"] == "resources/blob"
        assert not dest.exists()
        assert leftovers(tmp_path) == []

    def test_extraction_counts_the_bytes_it_writes_not_the_declared_sizes(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write_zip(tmp_path / "big.fmu", [("a", os.urandom(3000)), ("b", os.urandom(3000))])
        monkeypatch.setattr(archive, "_check_totals", lambda summary, limits: None)  # pretend the headers lied
        dest = tmp_path / "sha"

        with pytest.raises(ArchiveTooLarge) as raised:
            extract_fmu(path, dest, ArchiveLimits(max_uncompressed_bytes=5000))

        assert raised.value.extra["member"] == "b"
        assert not dest.exists()
        assert leftovers(tmp_path) == []

    def test_copying_stops_as_soon_as_the_budget_is_exceeded(self) -> None:
        out = io.BytesIO()

        with pytest.raises(ArchiveTooLarge):
            copy_capped(io.BytesIO(bytes(5 << 20)), out, 2 << 20, member="m")

        assert len(out.getvalue()) <= 2 << 20


class TestReadModelDescriptionBytes:
    def test_it_returns_the_xml(self, fmu: Path) -> None:
        assert read_model_description_bytes(fmu, LIMITS) == FMI2_XML

    def test_an_fmu_without_one_at_its_root_is_missing_it(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "m.fmu", [("model/modelDescription.xml", FMI2_XML)])

        with pytest.raises(MissingModelDescription) as raised:
            read_model_description_bytes(path, LIMITS)
        assert raised.value.code == "missing_model_description"

    def test_an_oversized_one_is_too_large(self, fmu: Path) -> None:
        with pytest.raises(ArchiveTooLarge) as raised:
            read_model_description_bytes(fmu, ArchiveLimits(max_xml_bytes=100))
        assert raised.value.extra["member"] == "modelDescription.xml"

    def test_one_that_is_larger_than_declared_is_refused(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "m.fmu", [("modelDescription.xml", FMI2_XML)])
        patch_member(path, "modelDescription.xml", file_size=10)

        with pytest.raises(UnsafeArchive):
            read_model_description_bytes(path, LIMITS)
