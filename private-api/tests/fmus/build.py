"""Build the project's own test FMUs from the C sources in ``src/`` with gcc.

Usage as a script::

    python private-api/tests/fmus/build.py OUT_DIR [NAME ...]

Each FMU lives in ``src/<name>/`` (``model.c`` + ``modelDescription.xml``); FMI 2.0 models are
linked with the shared ``src/fmi2_framework.c``. The FMI headers come from FMPy's ``c-code`` folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import fmpy

SRC_DIR = Path(__file__).resolve().parent / "src"

NAMES: tuple[str, ...] = ("VanDerPol", "Feedthrough", "Hostile", "BouncingBall3")

FMI2_FRAMEWORK: tuple[str, ...] = ("fmi2_framework.c", "fmi2_framework.h")

# fixed zip timestamps so rebuilding unchanged sources gives byte-identical archives
_ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)

_CFLAGS: tuple[str, ...] = ("-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra")


@dataclass(frozen=True)
class FmuSpec:
    """Everything needed to build one test FMU."""

    name: str
    fmi_version: str
    model_identifier: str
    model_description: Path
    sources: tuple[Path, ...]

    @property
    def platform_dir(self) -> str:
        # FMI 3 uses platform tuples ("x86_64-linux"), FMI 2 the old names ("linux64")
        return str(fmpy.platform_tuple if self.fmi_version.startswith("3.") else fmpy.platform)

    @property
    def inputs(self) -> tuple[Path, ...]:
        """Files whose modification invalidates a built FMU."""
        return (*self.sources, self.model_description, Path(__file__).resolve())


def fmi_headers_dir() -> Path:
    """Directory with the fmi2*/fmi3* headers shipped by FMPy."""
    return Path(fmpy.__file__).resolve().parent / "c-code"


def read_spec(name: str) -> FmuSpec:
    """Collect the FMI version, model identifier and source files of the test FMU ``name``."""
    model_dir = SRC_DIR / name
    model_description = model_dir / "modelDescription.xml"
    if name not in NAMES or not model_description.is_file():
        raise ValueError(f"Unknown test FMU {name!r}, expected one of {', '.join(NAMES)}.")

    root = ET.parse(model_description).getroot()
    fmi_version = root.get("fmiVersion", "")
    identifiers = {
        element.get("modelIdentifier") for element in root if element.tag in ("ModelExchange", "CoSimulation")
    }
    if len(identifiers) != 1 or None in identifiers:
        raise ValueError(f"{model_description} must use one modelIdentifier for all interfaces.")

    sources = sorted(model_dir.glob("*.c")) + sorted(model_dir.glob("*.h"))
    if fmi_version == "2.0":
        sources += [SRC_DIR / file_name for file_name in FMI2_FRAMEWORK]

    return FmuSpec(
        name=name,
        fmi_version=fmi_version,
        model_identifier=str(identifiers.pop()),
        model_description=model_description,
        sources=tuple(sources),
    )


def _is_up_to_date(fmu: Path, spec: FmuSpec) -> bool:
    if not fmu.is_file():
        return False
    return fmu.stat().st_mtime >= max(path.stat().st_mtime for path in spec.inputs)


def _compile(spec: FmuSpec, library: Path) -> None:
    c_files = [str(path.relative_to(SRC_DIR)) for path in spec.sources if path.suffix == ".c"]
    include_dirs = {str(path.parent.relative_to(SRC_DIR)) for path in spec.sources if path.suffix == ".h"}
    command = [
        os.environ.get("CC", "gcc"),
        *_CFLAGS,
        "-I",
        str(fmi_headers_dir()),
        *(f"-I{directory}" for directory in sorted(include_dirs)),
        "-o",
        str(library),
        *c_files,
        "-lm",
    ]
    # relative source paths keep the build directory out of the binary
    result = subprocess.run(command, cwd=SRC_DIR, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"Compiling {spec.name} failed ({result.returncode}):\n{' '.join(command)}\n{result.stderr}")


def _add_file(archive: zipfile.ZipFile, arcname: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16
    archive.writestr(info, data)


def build_fmu(name: str, out_dir: Path) -> Path:
    """Build ``out_dir/<name>.fmu`` unless it is newer than all of its sources; return its path."""
    spec = read_spec(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fmu = out_dir / f"{name}.fmu"

    if _is_up_to_date(fmu, spec):
        return fmu

    with tempfile.TemporaryDirectory(prefix=f"build-{name}-") as tmp:
        library = Path(tmp) / f"{spec.model_identifier}{fmpy.sharedLibraryExtension}"
        _compile(spec, library)

        # write next to the target and rename so concurrent builders never see a partial archive
        fd, partial_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=out_dir)
        partial = Path(partial_name)
        try:
            with os.fdopen(fd, "wb") as stream, zipfile.ZipFile(stream, "w") as archive:
                _add_file(archive, "modelDescription.xml", spec.model_description.read_bytes())
                _add_file(
                    archive,
                    f"binaries/{spec.platform_dir}/{library.name}",
                    library.read_bytes(),
                    mode=0o755,
                )
                for source in spec.sources:
                    _add_file(archive, f"sources/{source.name}", source.read_bytes())
            partial.chmod(0o644)  # mkstemp creates 0600, FMUs are meant to be shared
            os.replace(partial, fmu)
        finally:
            partial.unlink(missing_ok=True)

    return fmu


def build_all(out_dir: Path) -> dict[str, Path]:
    """Build every test FMU into ``out_dir``; map each name to its ``.fmu`` path."""
    return {name: build_fmu(name, out_dir) for name in NAMES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the C test FMUs with gcc.")
    parser.add_argument("out_dir", type=Path, help="directory that receives <name>.fmu")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(NAMES)} (default: all)")
    args = parser.parse_args(argv)

    for name in args.names or NAMES:
        try:
            print(build_fmu(name, args.out_dir))
        except ValueError as error:
            parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
