from __future__ import annotations

import platform
import sys

import pytest

from app.errors import UnsupportedPlatform
from app.fmi.model_description import ModelInfo, parse_model_description
from app.fmi.platforms import (
    host_platform_tags,
    is_shared_library,
    platforms_in_archive,
    require_host_platform,
    shared_libraries_in_archive,
)

from .fmu_archives import FMI2_XML, fmi2_xml

on_x86_64_linux = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"), reason="expects an x86_64 Linux host"
)


def with_binaries(info: ModelInfo, *names: str) -> ModelInfo:
    binaries = shared_libraries_in_archive(names)
    return info.model_copy(update={"platforms": list(binaries), "binaries": binaries})


class TestPlatformsInArchive:
    def test_folders_are_reported_as_found(self) -> None:
        names = [
            "binaries/linux64/m.so",
            "binaries/win64/m.dll",
            "binaries/x86_64-linux/m.so",
            "binaries/aarch64-darwin/m.dylib",
            "binaries/linux32/libdep.so.1",
        ]

        assert platforms_in_archive(names) == ["aarch64-darwin", "linux32", "linux64", "win64", "x86_64-linux"]

    def test_folders_without_a_shared_library_do_not_count(self) -> None:
        names = ["binaries/linux64/README.txt", "binaries/win64/", "sources/m.c", "binaries/m.so", "resources/x.so"]

        assert platforms_in_archive(names) == []


class TestHostPlatformTags:
    @on_x86_64_linux
    def test_this_host_uses_linux64_for_fmi2_and_the_tuple_for_fmi3(self) -> None:
        assert host_platform_tags("2.0") == {"linux64"}
        assert host_platform_tags("3.0") == {"x86_64-linux"}

    def test_an_arm_mac_is_recognised_as_fmpy_does(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "platform", "darwin")
        monkeypatch.setattr(platform, "machine", lambda: "arm64")

        assert host_platform_tags("2.0") == {"darwin64"}
        assert host_platform_tags("3.0") == {"aarch64-darwin"}

    def test_an_unknown_architecture_runs_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(platform, "machine", lambda: "riscv64")

        assert host_platform_tags("3.0") == set()


@on_x86_64_linux
class TestRequireHostPlatform:
    def test_an_fmu_with_the_host_binary_keeps_both_interfaces(self) -> None:
        info = with_binaries(parse_model_description(FMI2_XML), "binaries/linux64/Tank.so")

        checked = require_host_platform(info)

        assert checked.supports_model_exchange and checked.supports_co_simulation

    def test_an_interface_whose_library_is_missing_is_dropped(self) -> None:
        interfaces = '<ModelExchange modelIdentifier="m_me"/><CoSimulation modelIdentifier="m_cs"/>'
        info = with_binaries(parse_model_description(fmi2_xml(interfaces=interfaces)), "binaries/linux64/m_cs.so")

        checked = require_host_platform(info)

        assert (checked.supports_model_exchange, checked.supports_co_simulation) == (False, True)

    def test_an_fmu_without_its_declared_library_is_unsupported(self) -> None:
        info = with_binaries(parse_model_description(FMI2_XML), "binaries/linux64/other.so")

        with pytest.raises(UnsupportedPlatform, match=r"Tank\.so") as raised:
            require_host_platform(info)
        assert raised.value.extra["platforms"] == ["linux64"]

    def test_an_fmi2_fmu_with_fmi3_folder_names_is_told_where_binaries_belong(self) -> None:
        info = with_binaries(parse_model_description(FMI2_XML), "binaries/x86_64-linux/Tank.so")

        with pytest.raises(UnsupportedPlatform, match="binaries/linux64/") as raised:
            require_host_platform(info)
        assert raised.value.extra["platforms"] == ["x86_64-linux"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("m.so", True), ("libdep.so.1.2", True), ("m.dll", True), ("m.dylib", True), ("m.so.txt", False), ("m.c", False)],
)
def test_shared_libraries_are_recognised_by_suffix(name: str, expected: bool) -> None:
    assert is_shared_library(f"binaries/linux64/{name}") is expected
