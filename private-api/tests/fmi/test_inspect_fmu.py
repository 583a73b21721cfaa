from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from app.errors import (
    InvalidModelDescription,
    MissingModelDescription,
    NotAZip,
    TooManyVariables,
    UnsafeArchive,
    UnsupportedFMIVersion,
    UnsupportedPlatform,
)
from app.fmi.archive import ArchiveLimits, inspect_fmu

from .fmu_archives import FMI3_XML, SYMLINK, fmi2_xml, fmu_members, special_file, write_zip

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"), reason="expects an x86_64 Linux host"
)

LIMITS = ArchiveLimits()


def test_a_valid_fmi2_fmu_is_described_with_its_platforms(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "tank.fmu", fmu_members(binaries=["binaries/linux64/Tank.so", "binaries/win64/Tank.dll"])
    )

    inspected = inspect_fmu(path, LIMITS)
    info = inspected.info

    assert inspected.extracted_bytes == sum(len(data) for _, data in fmu_members(
        binaries=["binaries/linux64/Tank.so", "binaries/win64/Tank.dll"]))
    assert (info.fmi_version, info.model_name) == ("2.0", "Tank")
    assert info.platforms == ["linux64", "win64"]
    assert info.binaries == {"linux64": ["Tank.so"], "win64": ["Tank.dll"]}
    assert info.supports_model_exchange and info.supports_co_simulation
    assert [v.name for v in info.variables][:3] == ["level", "der(level)", "area"]


def test_a_valid_fmi3_fmu_is_described(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "ball.fmu", fmu_members(FMI3_XML, binaries=["binaries/x86_64-linux/Ball.so"]))

    info = inspect_fmu(path, LIMITS).info

    assert (info.fmi_version, info.platforms) == ("3.0", ["x86_64-linux"])


def test_an_fmu_with_only_windows_binaries_is_unsupported(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "win.fmu", fmu_members(binaries=["binaries/win64/Tank.dll"]))

    with pytest.raises(UnsupportedPlatform) as raised:
        inspect_fmu(path, LIMITS)

    assert raised.value.code == "unsupported_platform"
    assert raised.value.extra["platforms"] == ["win64"]
    assert "win64" in raised.value.detail and "linux64" in raised.value.detail


def test_a_source_only_fmu_is_unsupported_because_uploads_are_not_compiled(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "src.fmu", fmu_members(binaries=[], sources=True))

    with pytest.raises(UnsupportedPlatform, match="source-only") as raised:
        inspect_fmu(path, LIMITS)

    assert raised.value.extra["platforms"] == []


def test_an_fmu_without_a_model_description_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "none.fmu", fmu_members()[1:])

    with pytest.raises(MissingModelDescription):
        inspect_fmu(path, LIMITS)


def test_an_fmi1_fmu_is_unsupported(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "old.fmu", fmu_members(fmi2_xml(root='fmiVersion="1.0"')))

    with pytest.raises(UnsupportedFMIVersion):
        inspect_fmu(path, LIMITS)


def test_the_archive_is_checked_before_its_xml_is_read(tmp_path: Path) -> None:
    members = [*fmu_members(b"<not xml"), (special_file("resources/link", SYMLINK), b"/etc/shadow")]
    path = write_zip(tmp_path / "link.fmu", members)

    with pytest.raises(UnsafeArchive):
        inspect_fmu(path, LIMITS)


def test_a_broken_model_description_is_invalid(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "broken.fmu", fmu_members(b"<fmiModelDescription"))

    with pytest.raises(InvalidModelDescription):
        inspect_fmu(path, LIMITS)


def test_a_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.fmu"
    path.write_bytes(b"\x7fELF" + bytes(100))

    with pytest.raises(NotAZip):
        inspect_fmu(path, LIMITS)


def test_a_model_with_more_variables_than_the_limit_is_refused(tmp_path: Path) -> None:
    variables = "".join(f'<ScalarVariable name="v{i}" valueReference="{i}"><Real/></ScalarVariable>' for i in range(4))
    path = write_zip(tmp_path / "many.fmu", fmu_members(fmi2_xml(variables), binaries=["binaries/linux64/m.so"]))

    with pytest.raises(TooManyVariables):
        inspect_fmu(path, ArchiveLimits(max_variables=3))
    assert len(inspect_fmu(path, ArchiveLimits(max_variables=4)).info.variables) == 4
