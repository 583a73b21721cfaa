"""Fixtures for the sandbox conformance tests: extracted test FMUs, backends, and a leak check."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pytest
from docker_engine import require_docker, sandbox_containers

from app.sandbox import Job, Limits, Outcome, SandboxBackend, create_backend
from app.sandbox.bwrap import BwrapZygote
from app.sandbox.child import ChildProcessSandbox
from app.sandbox.docker import LABEL_SANDBOX
from app.sandbox.resources import ContainerResources
from app.sandbox.result_file import Converted, arrow_path, convert
from app.sandbox.runner import RESULT_SUFFIX, RunSpec
from app.sandbox.warm import ForkedTree, Zygote, ZygoteBackend

BACKENDS = ("bwrap", "bwrap-warm", "docker", "docker-warm", "process")
# The backends that isolate: what bwrap hides, docker and the runs forked by warm sandboxes must hide too.
ISOLATING = ("bwrap", "bwrap-warm", "docker", "docker-warm")
# Small enough that hang tests stay fast, large enough for a cold runner to import FMPy.
DEFAULT_LIMITS = Limits(memory_bytes=512 << 20, deadline_s=20.0, max_processes=32)


def bwrap_usable() -> bool:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    probe = [bwrap, "--unshare-all", "--ro-bind", "/", "/", "--", "/bin/true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="session")
def fmu_dirs(fmus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each test FMU extracted once, as the worker's FMU cache would hold it."""
    root = tmp_path_factory.mktemp("extracted")
    root.chmod(0o755)
    dirs = {}
    for name, fmu in fmus.items():
        target = root / name
        with zipfile.ZipFile(fmu) as archive:
            archive.extractall(target)
        dirs[name] = target
    return dirs


def make_backend(name: str, work_dir: Path) -> SandboxBackend:
    """A backend by name; ``<name>-warm``: every sandbox forked from a warm one of ``<name>``."""
    base = name.removesuffix("-warm")
    if base == "bwrap" and not bwrap_usable():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here")
    if base == "docker":
        require_docker()
    backend = create_backend(base, work_dir=work_dir)
    return ZygoteBackend(backend) if name.endswith("-warm") else backend


@contextlib.contextmanager
def backend_named(name: str, work_dir: Path) -> Iterator[SandboxBackend]:
    backend = make_backend(name, work_dir)
    try:
        yield backend
    finally:
        if isinstance(backend, ZygoteBackend):
            backend.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SandboxBackend]:
    with backend_named(request.param, tmp_path / "sandboxes") as backend:
        yield backend


@pytest.fixture(params=ISOLATING)
def isolating_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SandboxBackend]:
    with backend_named(request.param, tmp_path / "sandboxes") as backend:
        yield backend


@dataclass
class Finished:
    outcome: Outcome
    table: pa.Table | None  # read before close(), which removes the result
    sandbox: ChildProcessSandbox


def run_once(backend: SandboxBackend, fmu_dir: Path, spec: dict[str, Any] | RunSpec,
             limits: Limits = DEFAULT_LIMITS) -> Finished:
    """start + run + read the result + close, then check that nothing of the sandbox is left.
    A dict ``spec`` is a wire form, read as a stored one is."""
    sandbox = backend.start(limits)
    assert isinstance(sandbox, ChildProcessSandbox)
    if isinstance(spec, dict):
        spec = RunSpec.from_wire(spec)
    try:
        outcome = sandbox.run(Job(run_id="run-1", fmu_dir=fmu_dir, spec=spec, limits=limits))
        table = read_table(outcome.result_path) if outcome.result_path else None
    finally:
        sandbox.close()
    assert_nothing_left(sandbox)
    return Finished(outcome, table, sandbox)


def read_table(path: Path) -> pa.Table:
    """An Arrow file, or the runner's array file (an outcome's result_path) as the host stores it."""
    if path.suffix == RESULT_SUFFIX:
        converted = convert(path, 1 << 40)
        assert isinstance(converted, Converted), converted
        path = arrow_path(path)
    with pa.OSFile(str(path), "rb") as source:
        return pyarrow.ipc.open_file(source).read_all()


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (the runner's --sandbox-id is inherited by forks)."""
    found = []
    needle = text.encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != b"Z":
            found.append(int(entry.name))
    return found


def zygote_pids(sandbox: ChildProcessSandbox) -> set[int]:
    """The zygote's own processes (see zygote_chain) and the run forked ahead."""
    assert isinstance(sandbox.tree, ForkedTree)
    zygote = sandbox.tree.zygote
    return {pid for level in zygote_levels(zygote) for pid in level} | zygote.spare_pids()


def zygote_levels(zygote: Zygote) -> list[list[int]]:
    """The zygote's processes from the outermost to its Python, which forks the runs (last): bwrap,
    bwrap's init, the Python; or, in a container, the process that made its namespaces, the Python."""
    levels = [[zygote.pid]]
    for _ in range(2 if isinstance(zygote, BwrapZygote) else 1):
        levels.append([child for pid in levels[-1] for child in children_of(pid)])
    return levels


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def assert_nothing_left(sandbox: ChildProcessSandbox) -> None:
    survivors = processes_mentioning(sandbox.id)
    if isinstance(sandbox.tree, ForkedTree) and sandbox.tree.zygote.usable():
        # The run's end forks the next one ahead: once it is the ready spare, its processes are known.
        sandbox.tree.zygote.settle_spare(30)
        # A forked run's processes carry its zygote's command line: only the zygote may remain.
        survivors = [pid for pid in processes_mentioning(sandbox.tree.zygote.id) if pid not in zygote_pids(sandbox)]
    for pid in survivors:  # do not leak them into the next test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert survivors == [], "sandbox processes survived close()"
    assert not sandbox.dirs.root.exists(), "sandbox dirs survived close()"
    for cgroup in getattr(sandbox.resources, "dirs", []):
        assert not cgroup.exists(), f"cgroup {cgroup} survived close()"
    if isinstance(sandbox.resources, ContainerResources):
        assert sandbox_containers(**{LABEL_SANDBOX: sandbox.id}) == [], "sandbox container survived close()"
