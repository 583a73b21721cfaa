"""Resource limits for a sandbox's process tree: a cgroup (v1 or v2) where we may create one, else rlimits.

A `ResourceControl` is created per sandbox before its process is spawned; `preexec` runs in
the forked child before exec (so every descendant inherits the cgroup and rlimits),
`kill_all` ends the whole tree, `oom_killed` tells a memory-limit kill from a crash.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, overload

from app.sandbox.base import Limits

logger = logging.getLogger(__name__)

CGROUP_PREFIX = "fmu-gateway-"
# Set in every runner's environment; forks and execs keep it, so leftovers are found without a cgroup.
SANDBOX_ID_ENV = "FMU_GATEWAY_SANDBOX_ID"
_KILL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Usage:
    peak_memory_bytes: int | None
    cpu_time_s: float | None


class ResourceControl(ABC):
    kind: ClassVar[str]
    # True when a memory-limit kill is observed directly (cgroup OOM counter), not guessed.
    detects_oom: ClassVar[bool]

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pid: int | None = None

    def preexec(self) -> None:
        """Runs in the forked child before exec; only plain system calls, the parent may have threads."""
        set_common_rlimits(self.limits)

    def attach(self, pid: int) -> None:
        """Remember the spawned child (session leader of the tree)."""
        self.pid = pid

    def detach(self) -> None:
        """The child was reaped: its pid may be reused, so never signal by it again."""
        self.pid = None

    def procs_files(self) -> list[Path]:
        """Files a process writes "0" to in order to join this control's cgroups (none under rlimits)."""
        return []

    def child_rlimits(self) -> dict[str, int]:
        """The rlimits `preexec` sets, for a process forked elsewhere (a warm sandbox's run) to set itself."""
        limits = {"fsize": self.limits.max_output_bytes}
        if self.limits.cpu_seconds is not None:
            limits["cpu"] = self.limits.cpu_seconds
        return limits

    @abstractmethod
    def pids(self) -> set[int]:
        """Host pids of the processes this control can see in the tree."""

    @abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process of the tree that this control can reach."""

    def oom_killed(self) -> bool:
        return False

    def usage(self) -> Usage:
        """Peak memory and CPU time of the whole tree, where the control can measure them."""
        return Usage(None, None)

    def close(self) -> None:
        """Kill leftovers and release what was created; idempotent."""
        self.kill_all()


def set_common_rlimits(limits: Limits) -> None:
    """Limits that apply in every mode: no core dumps, bounded file size, optional CPU time."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_output_bytes, limits.max_output_bytes))
    if limits.cpu_seconds is not None:
        # Soft limit sends SIGXCPU, the hard one a second later SIGKILL.
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))


class RlimitControl(ResourceControl):
    """Fallback without a writable cgroup: RLIMIT_AS for memory, RLIMIT_NPROC, kill by session and marker."""

    kind = "rlimit"
    detects_oom = False

    def __init__(self, limits: Limits, sandbox_id: str) -> None:
        super().__init__(limits)
        self._marker = f"{SANDBOX_ID_ENV}={sandbox_id}".encode()
        # RLIMIT_NPROC counts all processes of the user, so allow max_processes beyond today's count.
        self._nproc = count_user_tasks(os.getuid()) + limits.max_processes

    def preexec(self) -> None:
        super().preexec()
        resource.setrlimit(resource.RLIMIT_AS, (self.limits.memory_bytes, self.limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (self._nproc, self._nproc))

    def child_rlimits(self) -> dict[str, int]:
        return {**super().child_rlimits(), "as": self.limits.memory_bytes, "nproc": self._nproc}

    def pids(self) -> set[int]:
        """Our session (while the leader is unreaped) plus every process carrying our environment marker."""
        found = {pid for pid, sid in iter_sessions() if sid == self.pid} if self.pid is not None else set()
        return found | processes_with_environ(self._marker)

    def kill_all(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        kill_until_gone(self.pids)


class CgroupControl(ResourceControl):
    """One cgroup directory per controller hierarchy (v1) or a single one (v2)."""

    detects_oom = True

    def __init__(self, limits: Limits, dirs: list[Path]) -> None:
        super().__init__(limits)
        self.dirs = dirs
        # Encoded once in the parent: preexec must not allocate much.
        self._procs_files = [os.fsencode(d / "cgroup.procs") for d in dirs]

    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def preexec(self) -> None:
        for path in self._procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # 0 = the writing process
            finally:
                os.close(fd)
        super().preexec()

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            # Gone, or being removed by another thread (ENODEV while it is): no processes left there.
            with contextlib.suppress(FileNotFoundError, OSError):
                found.update(int(line) for line in (d / "cgroup.procs").read_text().split())
        return found

    def kill_all(self) -> None:
        kill_until_gone(self.pids)

    def close(self) -> None:
        self.kill_all()
        for d in self.dirs:
            remove_cgroup(d)


class CgroupV1Control(CgroupControl):
    """dirs: memory first, then pids and (when mounted) cpuacct."""

    kind = "cgroup-v1"

    def oom_killed(self) -> bool:
        return read_counter(self.dirs[0] / "memory.oom_control", "oom_kill") > 0

    def usage(self) -> Usage:
        cpuacct = [d / "cpuacct.usage" for d in self.dirs if (d / "cpuacct.usage").exists()]
        cpu_ns = read_int(cpuacct[0]) if cpuacct else None
        return Usage(read_int(self.dirs[0] / "memory.max_usage_in_bytes"), cpu_ns / 1e9 if cpu_ns is not None else None)


class CgroupV2Control(CgroupControl):
    kind = "cgroup-v2"

    def kill_all(self) -> None:
        kill_file = self.dirs[0] / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        super().kill_all()

    def oom_killed(self) -> bool:
        return read_counter(self.dirs[0] / "memory.events", "oom_kill") > 0

    def usage(self) -> Usage:
        cpu_us = read_counter(self.dirs[0] / "cpu.stat", "usage_usec", default=None)
        # memory.peak exists since Linux 5.19.
        return Usage(read_int(self.dirs[0] / "memory.peak"), cpu_us / 1e6 if cpu_us is not None else None)


def create_resource_control(limits: Limits, sandbox_id: str, *, use_cgroups: bool = True) -> ResourceControl:
    """A cgroup for the sandbox below our own cgroup when we may create one, else rlimits."""
    if use_cgroups:
        try:
            control = create_cgroup_control(limits, CGROUP_PREFIX + sandbox_id)
        except OSError as e:
            logger.debug("cgroups not usable (%s); falling back to rlimits", e)
        else:
            if control is not None:
                return control
    return RlimitControl(limits, sandbox_id)


def cgroups_usable(limits: Limits, name: str) -> bool:
    """Whether sandboxes started now would get cgroups (one is made under ``name`` and removed)."""
    control = create_resource_control(limits, name)
    control.close()
    return isinstance(control, CgroupControl)


def create_cgroup_control(limits: Limits, name: str) -> CgroupControl | None:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounts = parse_mountinfo(f.read())
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        own = parse_proc_cgroup(f.read())
    version = cgroup_version(mounts, own)
    if version == 2:
        return create_v2(limits, mounts[""] / own[""].lstrip("/") / name)
    if version == 1:
        return create_v1(limits, name, mounts, own)
    return None


def cgroup_version(mounts: dict[str, Path], own: dict[str, str]) -> int | None:
    """1 when memory and pids are v1 controllers, 2 on a pure v2 system (hybrid hosts keep them in v1)."""
    if all(c in mounts and c in own for c in ("memory", "pids")):
        return 1
    if "" in mounts and "" in own and not {"memory", "pids"} & mounts.keys():
        return 2
    return None


def v1_dirs(mounts: dict[str, Path], groups: dict[str, str]) -> list[Path]:
    """The memory, pids and (when mounted) cpuacct directories of a v1 cgroup; memory first."""
    wanted = [c for c in ("memory", "pids", "cpuacct") if c in mounts and c in groups]
    # Co-mounted controllers (e.g. "cpu,cpuacct") share one directory.
    return list(dict.fromkeys(mounts[c] / groups[c].lstrip("/") for c in wanted))


def cgroup_of(limits: Limits, pid: int) -> CgroupControl | None:
    """A control over the cgroup that `pid` is in, to measure it (its owner made it and removes it);
    None when this process cannot see it (e.g. `pid` lives in another cgroup namespace)."""
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    groups = parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    version = cgroup_version(mounts, groups)
    if version == 1:
        dirs = v1_dirs(mounts, groups)
        return CgroupV1Control(limits, dirs) if all(d.is_dir() for d in dirs) else None
    if version == 2:
        path = mounts[""] / groups[""].lstrip("/")
        return CgroupV2Control(limits, [path]) if path.is_dir() else None
    return None


def create_v1(limits: Limits, name: str, mounts: dict[str, Path], own: dict[str, str]) -> CgroupV1Control:
    dirs = [d / name for d in v1_dirs(mounts, own)]
    memory, pids = dirs[0], mounts["pids"] / own["pids"].lstrip("/") / name
    created: list[Path] = []
    try:
        for d in dirs:
            d.mkdir()
            created.append(d)
        (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        memsw = memory / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            # Without this, the limit would only cover RAM and the tree could swap beyond it.
            memsw.write_text(str(limits.memory_bytes))
        (pids / "pids.max").write_text(str(limits.max_processes))
    except OSError:
        for d in created:
            remove_cgroup(d)
        raise
    return CgroupV1Control(limits, dirs)


def create_v2(limits: Limits, path: Path) -> CgroupV2Control | None:
    enabled = (path.parent / "cgroup.subtree_control").read_text().split()
    if not {"memory", "pids"} <= set(enabled):
        try:
            # Fails with EBUSY when our own cgroup has processes (v2 "no internal processes" rule).
            (path.parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError as e:
            logger.debug("cannot enable memory+pids controllers below %s: %s", path.parent, e)
            return None
    path.mkdir()
    try:
        (path / "memory.max").write_text(str(limits.memory_bytes))
        with contextlib.suppress(OSError):  # kill the whole tree on OOM, not just its biggest process
            (path / "memory.oom.group").write_text("1")
        swap = path / "memory.swap.max"
        if swap.exists():
            swap.write_text("0")
        (path / "pids.max").write_text(str(limits.max_processes))
    except OSError:
        remove_cgroup(path)
        raise
    return CgroupV2Control(limits, [path])


def parse_mountinfo(text: str) -> dict[str, Path]:
    """Controller name -> mount point from /proc/self/mountinfo; "" is the cgroup v2 (unified) hierarchy."""
    mounts: dict[str, Path] = {}
    for line in text.splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3].split(",")
        mount_point = Path(fields[4].replace("\\040", " "))
        if fstype == "cgroup2":
            mounts.setdefault("", mount_point)
        elif fstype == "cgroup":
            for option in options:
                if option in ("memory", "pids", "cpuacct"):
                    mounts.setdefault(option, mount_point)
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller name -> our cgroup path from /proc/self/cgroup; "" for v2."""
    own: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


@overload
def read_counter(path: Path, key: str) -> int: ...
@overload
def read_counter(path: Path, key: str, default: None) -> int | None: ...
def read_counter(path: Path, key: str, default: int | None = 0) -> int | None:
    """The value of `key` in a flat-keyed cgroup file such as memory.events."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return default


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def remove_cgroup(path: Path) -> None:
    """rmdir a cgroup; it stays busy for a moment while killed tasks are reaped."""
    deadline = time.monotonic() + _KILL_TIMEOUT_S
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                logger.warning("could not remove cgroup %s: %s", path, e)
                return
            time.sleep(0.001)


def kill_until_gone(pids: Callable[[], set[int]]) -> None:
    """SIGKILL until nothing is left: a forking tree can add processes between two reads."""
    deadline = time.monotonic() + _KILL_TIMEOUT_S
    pause = 0.001  # a killed process takes a few ms to unmap its memory: look again soon, then less often
    while (alive := pids()) and time.monotonic() < deadline:
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def iter_sessions() -> list[tuple[int, int]]:
    """(pid, session id) of every visible live process; zombies are ignored."""
    found: list[tuple[int, int]] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] != b"Z":
            found.append((int(entry.name), int(fields[3])))
    return found


def processes_with_environ(marker: bytes) -> set[int]:
    """Processes whose initial environment holds `marker` (only those we may read: same user, or root)."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.add(int(entry.name))
        except OSError:
            continue
    return found


def count_user_tasks(uid: int) -> int:
    """Processes and threads of `uid`, which is what RLIMIT_NPROC counts."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                total += len(os.listdir(f"/proc/{entry.name}/task"))
        except OSError:
            continue
    return total


class ContainerResources(ResourceControl):
    """The container's own cgroup, read (never written) where this process can see it.

    The engine enforces the limits; we only measure. The cgroup disappears with the container,
    so the last reading taken while it lived stands for the whole run.
    """

    kind = "docker"
    detects_oom = True

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self.dirs: list[Path] = []
        self._view: CgroupControl | None = None
        self._last = Usage(None, None)
        self._oom_killed = False
        self._kill: Callable[[], None] | None = None

    def bind(self, container_pid: int, kill: Callable[[], None]) -> None:
        """Find the container's cgroup through its init process; absent when we run in another namespace."""
        self._kill = kill
        with contextlib.suppress(OSError, ValueError, KeyError):
            self._view = cgroup_of(self.limits, container_pid)
        self.dirs = self._view.dirs if self._view is not None else []

    def pids(self) -> set[int]:
        return self._view.pids() if self._view is not None else set()

    def kill_all(self) -> None:
        if self._kill is not None:
            self._kill()

    def usage(self) -> Usage:
        """The cgroup's figures while it exists, else the last ones read (the tree reads it while it waits)."""
        if self._view is not None:
            usage = self._view.usage()
            if usage.cpu_time_s is not None or usage.peak_memory_bytes is not None:
                self._last = usage
        return self._last

    def record_oom(self, oom_killed: bool) -> None:
        self._oom_killed = self._oom_killed or oom_killed

    def oom_killed(self) -> bool:
        if self._oom_killed:
            return True
        return self._view is not None and self._view.oom_killed()  # reads fail as "no kill"

    def close(self) -> None:
        self.kill_all()
