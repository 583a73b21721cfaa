"""Host-side directories of one sandbox, and placing a job into them."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.sandbox.base import ErrorCode
from app.sandbox.result_file import check
from app.sandbox.runner import FMU_DIR, RESULT_FILE, SPEC_FILE, RunSpec, SweepChunk


@dataclass(frozen=True)
class SandboxDirs:
    root: Path  # work_dir/<sandbox id>
    job: Path  # read-only for the runner: fmu/ and spec.json
    out: Path  # writable for the runner: result.npy
    tmp: Path  # scratch dir (HOME/TMPDIR) for backends without a private /tmp

    @classmethod
    def create(cls, work_dir: Path, sandbox_id: str) -> SandboxDirs:
        root = work_dir / sandbox_id
        dirs = cls(root=root, job=root / "job", out=root / "out", tmp=root / "tmp")
        root.mkdir(parents=True, mode=0o700)
        for d in (dirs.job, dirs.out, dirs.tmp):
            d.mkdir(mode=0o755)
        return dirs

    def remove(self) -> None:
        # rmtree never follows symlinks, so whatever the runner left in out/ cannot redirect it.
        shutil.rmtree(self.root, ignore_errors=True)


def encode_spec(spec: RunSpec | SweepChunk) -> bytes:
    """``spec.json``: the spec's wire form."""
    try:
        return json.dumps(spec.to_wire(), allow_nan=True).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ValueError(f"run spec is not JSON-serialisable: {e}") from e


def stage_job(fmu_dir: Path, spec_json: bytes, job_dir: Path) -> None:
    """Place the extracted FMU and the spec where the (already running) runner will look."""
    link_tree(fmu_dir, job_dir / FMU_DIR)
    write_spec(spec_json, job_dir)


def write_spec(spec_json: bytes, job_dir: Path) -> None:
    tmp = job_dir / (SPEC_FILE + ".tmp")
    tmp.write_bytes(spec_json)
    tmp.rename(job_dir / SPEC_FILE)


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of src into dst (cheap, read-only in the sandbox); copy across devices."""
    for dirpath, dirnames, filenames in os.walk(src):
        target = dst / Path(dirpath).relative_to(src)
        target.mkdir(mode=0o755)
        for name in filenames:
            link_or_copy(Path(dirpath) / name, target / name)
        for name in dirnames:
            if (Path(dirpath) / name).is_symlink():
                # os.walk does not descend into it; keep the link as it is, the runner resolves it in its own view.
                os.symlink(os.readlink(Path(dirpath) / name), target / name)


def link_or_copy(src: Path, dst: Path) -> None:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError as e:
        # EXDEV: other filesystem; EPERM: protected_hardlinks forbids linking files we do not own.
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755 if os.access(src, os.X_OK) else 0o644)


MAX_OUTPUT_ENTRIES = 1000


def output_over_quota(out_dir: Path, max_bytes: int) -> str | None:
    """Why the output dir is over its quota (bytes or entries), or None; never follows links."""
    total = entries = 0
    for dirpath, dirnames, filenames in os.walk(out_dir):
        for name in filenames + dirnames:
            entries += 1
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    if total > max_bytes:
        return f"output of {total} bytes exceeds the limit of {max_bytes} bytes"
    if entries > MAX_OUTPUT_ENTRIES:
        return f"output of {entries} files exceeds the limit of {MAX_OUTPUT_ENTRIES}"
    return None


def output_over_quota_problem(out_dir: Path, max_bytes: int) -> tuple[ErrorCode, str] | None:
    over = output_over_quota(out_dir, max_bytes)
    return ("output_too_large", over) if over is not None else None


def output_problem(out_dir: Path, max_bytes: int) -> tuple[ErrorCode, str] | None:
    """Why the runner's output cannot be used, or None; never follows links the sandbox planted."""
    over = output_over_quota_problem(out_dir, max_bytes)
    if over is not None:
        return over
    return check(out_dir / RESULT_FILE, max_bytes)
