"""The `bwrap` backend: the runner inside bubblewrap namespaces.

Inside, the runner sees only the system's /usr (and its /lib* links), the Python
installation, its own script, /job (read-only) and /out; it has a private /tmp, /proc
and /dev, no network, no capabilities, another uid, no environment of ours, and dies
with its parent.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from app.sandbox.base import Limits, SandboxBackend, SandboxError
from app.sandbox.child import (
    RUNNER_PATH,
    ZYGOTE_PATH,
    ChildProcessSandbox,
    Launch,
    new_sandbox_id,
    runner_env,
    spawn_child,
)
from app.sandbox.cleanup import remove_stale_sandboxes
from app.sandbox.resources import ResourceControl, create_resource_control
from app.sandbox.staging import SandboxDirs
from app.sandbox.warm import END_TIMEOUT_S, Zygote, ZygoteProcess

logger = logging.getLogger(__name__)

SANDBOX_UID = 65534  # "nobody": not root inside, so bwrap keeps no capabilities
SANDBOX_RUNNER = "/runner/runner.py"
SANDBOX_ZYGOTE = "/runner/zygote.py"
# Kept in the zygote's own user namespace to build each run's namespaces; every run drops all.
ZYGOTE_CAPS = ("CAP_SYS_ADMIN", "CAP_SETPCAP", "CAP_SYS_RESOURCE")
SANDBOX_JOB = "/job"
SANDBOX_OUT = "/out"
# Top-level system paths the loader and Python need; on merged-/usr systems they are symlinks.
SYSTEM_PATHS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# /etc stays empty but for the loader's cache and library alternatives (no passwd, hosts, ssl, ...).
ETC_FILES = ("/etc/ld.so.cache", "/etc/alternatives")


@dataclass(frozen=True)
class BwrapFeatures:
    disable_userns: bool  # bwrap >= 0.8: forbid nested user namespaces
    tmpfs_size: bool  # bwrap >= 0.5: cap the private /tmp


@functools.cache
def bwrap_features(bwrap: str) -> BwrapFeatures:
    help_text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, check=False).stdout
    return BwrapFeatures(disable_userns="--disable-userns" in help_text, tmpfs_size="--size" in help_text)


@functools.cache
def python_dirs(python: str) -> tuple[str, ...]:
    """Directories the interpreter needs (installation + venv), minus those under /usr that are bound anyway."""
    # Compare unresolved paths: a venv's python is a symlink to the base interpreter.
    if python == os.path.abspath(sys.executable):
        paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    else:
        probe = (
            "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"
        )
        out = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, check=True).stdout
        paths = set(json.loads(out))
    real_python = os.path.realpath(python)
    if not any(real_python.startswith(p.rstrip("/") + "/") for p in paths):
        paths.add(os.path.dirname(real_python))
    return tuple(sorted(p for p in paths if not covered(p, {"/usr"}) and not covered(p, paths - {p})))


def covered(path: str, roots: set[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


class BubblewrapBackend(SandboxBackend):
    name = "bwrap"
    has_zygotes = True

    def __init__(
        self, *, work_dir: Path, python: Path | None = None, bwrap: str | None = None, use_cgroups: bool = True
    ) -> None:
        found = bwrap or shutil.which("bwrap")
        if found is None:
            raise SandboxError("bubblewrap (bwrap) is not installed; install it or choose the 'process' backend")
        self.bwrap = found
        self.work_dir = work_dir
        self.python = os.path.abspath(python or sys.executable)  # no "..": the path must resolve inside too
        self.use_cgroups = use_cgroups
        self.features = bwrap_features(found)
        self.python_dirs = python_dirs(self.python)

    def start_zygote(self, limits: Limits, *, prefork: bool = False) -> Zygote:
        return BwrapZygote(self, limits, prefork=prefork)

    def remove_leftovers(self) -> list[str]:
        return remove_stale_sandboxes(self.work_dir)

    def start(self, limits: Limits) -> ChildProcessSandbox:
        sandbox_id = new_sandbox_id()
        dirs = SandboxDirs.create(self.work_dir, sandbox_id)
        argv = self.argv(sandbox_id, dirs, limits)
        launch = Launch(argv=argv, env=runner_env("/tmp", sandbox_id), cwd=dirs.tmp, signal_via_exit_code=True)
        resources = create_resource_control(limits, sandbox_id, use_cgroups=self.use_cgroups)
        return ChildProcessSandbox(
            sandbox_id=sandbox_id, limits=limits, dirs=dirs, resources=resources,
            spawn=spawn_child(launch, resources), signal_via_exit_code=launch.signal_via_exit_code,
        )

    def argv(self, sandbox_id: str, dirs: SandboxDirs, limits: Limits) -> list[str]:
        return [
            self.bwrap,
            *self.isolation_args(),
            *self.env_args(sandbox_id),
            *self.filesystem_args(dirs, limits),
            "--",
            self.python,
            "-I",  # ignore PYTHON* variables and user site; the venv still applies via pyvenv.cfg
            "-B",  # the installation is read-only
            SANDBOX_RUNNER,
            "--job-dir",
            SANDBOX_JOB,
            "--out-dir",
            SANDBOX_OUT,
            "--sandbox-id",
            sandbox_id,
        ]

    def isolation_args(self, keep_caps: tuple[str, ...] = ()) -> list[str]:
        """`keep_caps`: capabilities kept in the sandbox's own user namespace, for a zygote (never a run).
        A zygote is uid 0 of that namespace and denies nested user namespaces itself: bwrap's
        --uid and --disable-userns each add a namespace level in which /proc can no longer be mounted."""
        args = ["--unshare-all", "--unshare-user", "--cap-drop", "ALL"]  # user, ipc, pid, net, uts, cgroup ns
        if self.features.disable_userns and not keep_caps:
            args.append("--disable-userns")
        for cap in keep_caps:
            args += ["--cap-add", cap]
        uid = "0" if keep_caps else str(SANDBOX_UID)
        return [
            *args,
            "--uid", uid,
            "--gid", uid,
            "--hostname", "sandbox",
            "--die-with-parent",
            "--new-session",  # no TIOCSTI into a terminal of ours
        ]  # fmt: skip

    def env_args(self, sandbox_id: str) -> list[str]:
        args = ["--clearenv"]
        for key, value in runner_env("/tmp", sandbox_id).items():
            args += ["--setenv", key, value]
        return args

    def filesystem_args(self, dirs: SandboxDirs, limits: Limits) -> list[str]:
        return [
            *self.system_args(limits),
            "--ro-bind", str(RUNNER_PATH), SANDBOX_RUNNER,
            # Bind mounts are live views: the FMU placed in dirs.job later appears here.
            "--ro-bind", str(dirs.job), SANDBOX_JOB,
            "--bind", str(dirs.out), SANDBOX_OUT,
            "--chdir", "/tmp",
        ]  # fmt: skip

    def system_args(self, limits: Limits) -> list[str]:
        """What every runner sees: the system and Python read-only, a private /tmp, /proc and /dev."""
        args = ["--ro-bind", "/usr", "/usr"]
        for path in SYSTEM_PATHS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        for path in ETC_FILES:
            args += ["--ro-bind-try", path, path]
        if self.features.tmpfs_size:
            # tmpfs pages are not in RLIMIT_AS; this keeps /tmp bounded without cgroups too.
            args += ["--size", str(limits.memory_bytes)]
        # The private /tmp comes before the Python binds: a venv under /tmp must stay visible.
        args += ["--tmpfs", "/tmp"]
        for path in self.python_dirs:
            args += ["--ro-bind", path, path]
        return [
            *args,
            "--proc", "/proc",
            # Else kernel-wide sysctls under /proc/sys are writable when the host side is root.
            "--remount-ro", "/proc",
            "--dev", "/dev",
        ]  # fmt: skip


class BwrapZygote(Zygote):
    """The zygote in a bwrap sandbox of its own, spoken to over an inherited socketpair."""

    def __init__(self, backend: BubblewrapBackend, limits: Limits, *, prefork: bool = False) -> None:
        self.backend = backend
        super().__init__(backend.work_dir, limits, use_cgroups=backend.use_cgroups, prefork=prefork)

    def _own_resources(self) -> ResourceControl:
        # Bounded like one run (it forks its runs before they join their own cgroups).
        return create_resource_control(self.limits, self.id, use_cgroups=self.use_cgroups)

    def _launch(self) -> tuple[ZygoteProcess, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with open(self.root / self.log_name, "wb") as log:
                proc = subprocess.Popen(
                    self.argv(theirs.fileno()), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    pass_fds=(theirs.fileno(),), env=runner_env("/tmp", self.id), cwd=self.root,
                    start_new_session=True, preexec_fn=self.resources.preexec,
                )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            ours.close()
            raise SandboxError(f"cannot start a warm sandbox: {e}") from e
        finally:
            theirs.close()
        self.resources.attach(proc.pid)
        self._popen = proc
        return proc, ours

    def argv(self, socket_fd: int) -> list[str]:
        b = self.backend
        return [
            b.bwrap,
            *b.isolation_args(keep_caps=ZYGOTE_CAPS),
            *b.env_args(self.id),
            *b.system_args(self.limits),
            "--ro-bind", str(RUNNER_PATH), SANDBOX_RUNNER,
            "--ro-bind", str(ZYGOTE_PATH), SANDBOX_ZYGOTE,
            "--bind", str(self.runs_dir), "/runs",
            "--ro-bind", str(self.fmus_dir), "/fmus",
            "--dir", "/job",
            "--dir", "/out",
            "--chdir", "/tmp",
            "--",
            b.python, "-I", "-B", SANDBOX_ZYGOTE,
            "--socket-fd", str(socket_fd),
            "--sandbox-id", self.id,
        ]  # fmt: skip

    def _prepare_run(self, dirs: SandboxDirs) -> None:
        pass  # the zygote is the host's user, root in its namespace: it reaches them as they are

    def _stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        try:
            self._popen.wait(END_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.error("warm sandbox %s did not die after SIGKILL", self.id)
