"""Which platforms an FMU ships binaries for, and whether this host can run it.

FMPy loads ``binaries/<platform>/<modelIdentifier>.<ext>`` where ``<platform>`` is the
FMI 2 name (``linux64``) for FMI 2.0 and the FMI 3 tuple (``x86_64-linux``) for FMI 3.0,
so the host check matches exactly those folders.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from app.errors import UnsupportedPlatform

if TYPE_CHECKING:
    from app.fmi.model_description import FMIVersion, ModelInfo

# Versioned sonames (libdep.so.1) are dependencies FMUs ship next to the model library.
_SHARED_LIBRARY = re.compile(r"\.(so(\.\d+)*|dll|dylib)$")
_INTERFACES = {"ModelExchange": "supports_model_exchange", "CoSimulation": "supports_co_simulation"}
# FMI 2 platform names and the FMI 3 tuples they correspond to.
_FMI2_TO_FMI3 = {
    "linux32": "x86-linux",
    "linux64": "x86_64-linux",
    "win32": "x86-windows",
    "win64": "x86_64-windows",
    "darwin64": "x86_64-darwin",
}


def is_shared_library(name: str) -> bool:
    return _SHARED_LIBRARY.search(name.rsplit("/", 1)[-1]) is not None


def shared_libraries_in_archive(names: Iterable[str]) -> dict[str, list[str]]:
    """Map each ``binaries/<platform>/`` folder to the shared libraries directly inside it."""
    libraries: dict[str, list[str]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "binaries" and parts[1] and is_shared_library(parts[2]):
            libraries.setdefault(parts[1], []).append(parts[2])
    return {folder: sorted(files) for folder, files in sorted(libraries.items())}


def platforms_in_archive(names: Iterable[str]) -> list[str]:
    """The ``binaries/`` folder names holding a shared library, as they appear in the archive."""
    return list(shared_libraries_in_archive(names))


def normalised_platform(name: str) -> str:
    """The FMI 3 tuple for an FMI 2 platform name; other names are returned unchanged."""
    return _FMI2_TO_FMI3.get(name, name)


def host_platform_tags(fmi_version: FMIVersion) -> set[str]:
    """The ``binaries/`` folder FMPy loads from on this host, for FMUs of ``fmi_version``."""
    system = _host_system()
    architecture = _host_architecture()
    if system is None or architecture is None:
        return set()
    if fmi_version == "2.0":
        # Like FMPy: FMI 2 only knows bitness, so aarch64 hosts also look in linux64/darwin64.
        bits = "32" if architecture == "x86" else "64"
        return {("win" if system == "windows" else system) + bits}
    return {f"{architecture}-{system}"}


def host_library_suffix() -> str:
    if sys.platform.startswith("win"):
        return ".dll"
    return ".dylib" if sys.platform == "darwin" else ".so"


def require_host_platform(info: ModelInfo) -> ModelInfo:
    """Return ``info`` limited to the interfaces whose binary exists for this host.

    Raises ``UnsupportedPlatform`` (listing the FMU's platforms) when nothing can run here.
    """
    tags = host_platform_tags(info.fmi_version)
    host = next((folder for folder in info.platforms if folder in tags), None)
    if host is None:
        raise UnsupportedPlatform(_missing_platform_detail(info, tags), platforms=info.platforms)
    libraries = set(info.binaries.get(host, ()))
    supported = {
        flag: bool(getattr(info, flag))
        and f"{info.model_identifiers.get(interface)}{host_library_suffix()}" in libraries
        for interface, flag in _INTERFACES.items()
    }
    if not any(supported.values()):
        expected = sorted(identifier + host_library_suffix() for identifier in info.model_identifiers.values())
        raise UnsupportedPlatform(
            f"binaries/{host}/ does not contain {' or '.join(expected)}, the library the FMU declares.",
            platforms=info.platforms,
        )
    return info.model_copy(update=supported)


def _missing_platform_detail(info: ModelInfo, tags: set[str]) -> str:
    wanted = " or ".join(f"binaries/{tag}/" for tag in sorted(tags)) or "a binary for this host"
    if not info.platforms:
        return f"The FMU contains no binaries (source-only FMUs are not compiled); this server needs {wanted}."
    found = ", ".join(info.platforms)
    misplaced = [p for p in info.platforms if normalised_platform(p) in {normalised_platform(t) for t in tags}]
    if misplaced:
        return (
            f"The FMU has binaries in binaries/{misplaced[0]}/, but an FMI {info.fmi_version} FMU "
            f"must put them in {wanted}."
        )
    return f"The FMU has binaries for {found}; this server needs {wanted}."


def _host_system() -> str | None:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("win"):
        return "windows"
    return None


def _host_architecture() -> str | None:
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "aarch64"
    if machine in ("amd64", "i386", "i686", "x86", "x86_64", "x86pc"):
        # Bitness of this interpreter, not of the kernel: a 32-bit Python loads 32-bit FMUs.
        return "x86_64" if sys.maxsize > 2**32 else "x86"
    return None
