"""Warm sandboxes: a bwrap zygote per tenant, with the runner's imports done, forks each run.

The zygote (`zygote.py` inside) is started once, serves one tenant for its whole life and is
retired after a number of runs or idle seconds. Each run it forks is still a sandbox of its
own (`ChildProcessSandbox` over a `ForkedTree`): own PID, mount and IPC namespaces, own
cgroup or rlimits, fresh /tmp, /dev/shm and out dir, no capabilities, and the same protocol,
outcome rules and clean-up as a cold sandbox. The FMU's library is only ever loaded in the
forked runner, never in the zygote.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import socket
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

from app.sandbox.base import Limits, SandboxBackend, SandboxError
from app.sandbox.capture import BoundedLog, ControlMessages, OutputPump
from app.sandbox.child import ChildProcessSandbox, Exit, new_sandbox_id
from app.sandbox.resources import ResourceControl, create_resource_control
from app.sandbox.runner import DONE, EXIT, FMU_DIR, GO
from app.sandbox.staging import SandboxDirs, link_tree, write_spec

logger = logging.getLogger(__name__)

_READY_TIMEOUT_S = 60.0
END_TIMEOUT_S = 5.0
_ZYGOTE_LOG_BYTES = 64 << 10


class ZygoteProcess(Protocol):
    """What the host holds of a zygote's outermost process (a ``Popen``, or a container's init)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Zygote(ABC):
    """One long-lived sandbox that forks isolated runs for a single tenant; how it is started and
    stopped (bwrap, a container) is the subclass's, everything about its runs is here."""

    log_name = "zygote.log"  # below root: the zygote's stderr

    def __init__(self, work_dir: Path, limits: Limits, *, use_cgroups: bool, prefork: bool = False) -> None:
        self.id = new_sandbox_id()
        self.limits = limits.fixed_at_start()
        self.use_cgroups = use_cgroups
        # Keep one run forked ahead, namespaces built and runner waiting, so a run skips that wait.
        # The next one is forked when a run ends, not when it starts: the host's share of forking
        # (dirs, cgroups, a pump thread) then never competes with a run on its way for the GIL.
        self.prefork = prefork
        self._spare: ChildProcessSandbox | None = None
        self._spare_pending = False
        self.tenant: str | None = None  # set once, at first use; never changes
        self.runs_started = 0
        self.active = 0
        self.last_used = time.monotonic()
        self.retiring = False
        self.broken: str | None = None
        self._lock = threading.Lock()
        self._ready = False
        self._closed = False
        self.root = work_dir / self.id
        self.runs_dir = self.root / "runs"
        # Each FMU this zygote's runs use, linked here once; a run's init binds its own at "go".
        self.fmus_dir = self.root / "fmus"
        self._staged: dict[Path, str] = {}
        self._staging = threading.Lock()
        self.root.mkdir(parents=True, mode=0o700)
        self.runs_dir.mkdir(mode=0o700)
        self.fmus_dir.mkdir(mode=0o700)
        self.resources = self._own_resources()
        try:
            self._proc, self._sock = self._launch()
        except BaseException:
            self.resources.close()
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @abstractmethod
    def _own_resources(self) -> ResourceControl:
        """What bounds the zygote itself (its runs join their own cgroups, or take rlimits, at once)."""

    @abstractmethod
    def _launch(self) -> tuple[ZygoteProcess, socket.socket]:
        """Start the zygote; its process and the host's end of its socket. SandboxError if it cannot."""

    @abstractmethod
    def _stop(self) -> None:
        """Kill the zygote's process and with it every run still in its namespace; wait for it."""

    @abstractmethod
    def _prepare_run(self, dirs: SandboxDirs) -> None:
        """Make a new run's dirs reachable for the zygote's user (before its request is sent)."""

    @property
    def pid(self) -> int:
        """The zygote's outermost process: killing it ends the zygote and every run it forked."""
        return self._proc.pid

    def stage_fmu(self, fmu_dir: Path) -> str:
        """The name under /fmus of this extracted FMU, linked there on its first run here."""
        with self._staging:
            name = self._staged.get(fmu_dir)
            if name is None:
                name = f"fmu{len(self._staged)}"
                link_tree(fmu_dir, self.fmus_dir / name)
                self._staged[fmu_dir] = name
            return name

    def usable(self) -> bool:
        return not self.retiring and self.broken is None and not self._closed and self._proc.poll() is None

    def wait_ready(self, timeout: float) -> bool:
        """Block until the zygote has its imports done; False if it died or took too long."""
        with self._lock:
            if self._ready:
                return True
            self._sock.settimeout(timeout)
            line = b""
            with contextlib.suppress(OSError):
                while b"\n" not in line and len(line) < 65536:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        break
                    line += chunk
            self._sock.settimeout(None)
            with contextlib.suppress(ValueError):
                self._ready = json.loads(line.split(b"\n", 1)[0]).get("event") == "ready"
            return self._ready

    @property
    def busy(self) -> int:
        """Runs handed out and not ended (the spare is not one)."""
        return self.active - (1 if self._spare is not None else 0)

    def fork(self, limits: Limits) -> ChildProcessSandbox:
        """A sandbox for one run, forked from this zygote (the spare one when it is ready)."""
        if limits.fixed_at_start() != self.limits:
            raise SandboxError("job limits differ from the limits this warm sandbox was started with")
        with self._lock:
            spare, self._spare = self._spare, None
            self.runs_started += 1
        if spare is not None and spare.tree.wait_exited(time.monotonic()):
            spare.close()  # its run died while it waited (its cgroup was killed, say): not handed out
            spare = None
        return spare or self._fork()

    def fork_spare(self) -> None:
        """Fork the next run now, in the background; it waits, ready, for the next fork()."""
        with self._lock:
            if self._spare_pending or self._spare is not None or not self.usable():
                return
            self._spare_pending = True
        threading.Thread(target=self._make_spare, name=f"prefork-{self.id}", daemon=True).start()

    def _make_spare(self) -> None:
        sandbox = None
        try:
            sandbox = self._fork(ahead=True)
        except SandboxError as e:
            logger.warning("warm sandbox %s: cannot fork ahead: %s", self.id, e)
        with self._lock:
            self._spare_pending = False
            keep = sandbox is not None and self.usable() and self._spare is None
            if keep:
                self._spare = sandbox
        if sandbox is not None and not keep:
            sandbox.close()

    def settle_spare(self, timeout: float) -> bool:
        """Wait until no run is being forked ahead and the spare, if any, is ready (its processes all
        in its cgroup); False if that took longer than ``timeout``. For tools and tests."""
        deadline = time.monotonic() + timeout
        while self._spare_pending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        spare = self._spare
        return spare is None or spare.wait_ready(max(deadline - time.monotonic(), 0.0))

    def spare_pids(self) -> set[int]:
        """The processes of the run forked ahead (where its cgroup shows them)."""
        spare = self._spare
        return spare.resources.pids() if spare is not None else set()

    def _fork(self, *, ahead: bool = False) -> ChildProcessSandbox:
        """``ahead``: forked before its job is known, the run goes through the warm-up again while it
        waits, so that its job finds the pages it writes first already copied (~2,000 faults, a
        third of a short model's time in the sandbox). A run forked for a job at hand skips that:
        the warm-up costs ~7 ms of CPU and takes only ~5 ms of faults off the job, which would wait."""
        limits = self.limits
        if not self.wait_ready(_READY_TIMEOUT_S):
            self.discard("the warm sandbox did not become ready")
            raise SandboxError(f"warm sandbox {self.id} did not become ready: {self.log_tail()}")
        run_id = new_sandbox_id()
        dirs = SandboxDirs.create(self.runs_dir, run_id)
        self._prepare_run(dirs)
        resources = create_resource_control(limits, run_id, use_cgroups=self.use_cgroups)

        def spawn(control: ControlMessages, log: BoundedLog) -> ForkedTree:
            return ForkedTree(self, run_id, limits, resources, control, log, warm=ahead)

        return ChildProcessSandbox(
            sandbox_id=run_id, limits=limits, dirs=dirs, resources=resources, spawn=spawn, signal_via_exit_code=False
        )

    def send_run(self, request: dict[str, Any], fds: list[int]) -> None:
        line = json.dumps(request).encode() + b"\n"
        with self._lock:
            if not self.usable():
                raise SandboxError(f"warm sandbox {self.id} is {self.broken or 'closed'}")
            try:
                self._sock.sendmsg([line], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            except OSError as e:
                raise SandboxError(f"warm sandbox {self.id} is gone: {e}") from e
            self.active += 1
            self.last_used = time.monotonic()

    def run_ended(self) -> None:
        with self._lock:
            self.active -= 1
            self.last_used = time.monotonic()
            close = (self.retiring or self.broken is not None) and self.active == 0
        if close:
            self.close()
        elif self.prefork:
            self.fork_spare()

    def retire(self) -> None:
        """No new runs; closed once the runs it serves have ended."""
        with self._lock:
            self.retiring = True
        self._close_when_idle()

    def discard(self, reason: str) -> None:
        """Something harmed or lost the zygote: it takes no more runs and goes once they end."""
        with self._lock:
            if self.broken is None:
                logger.warning("warm sandbox %s discarded: %s", self.id, reason)
                self.broken = reason
        self._close_when_idle()

    def _close_when_idle(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()  # its end may close the zygote already
        with self._lock:
            close = self.active == 0
        if close:
            self.close()

    def close(self) -> None:
        """Kill the zygote (and with it any run it still has) and remove its dirs. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        self._sock.close()
        self.resources.kill_all()
        self._stop()
        self.resources.detach()
        self.resources.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            with open(self.root / self.log_name, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(f.tell() - _ZYGOTE_LOG_BYTES, 0))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""


class ForkedTree:
    """The process tree of one run forked by a zygote: its init reports on pipes made for it alone."""

    def __init__(
        self, zygote: Zygote, name: str, limits: Limits, resources: ResourceControl,
        control: ControlMessages, log: BoundedLog, *, warm: bool = False,
    ) -> None:  # fmt: skip
        self.pid = zygote.pid
        self.zygote = zygote
        self._resources = resources
        self._control = control
        self._lock = threading.Lock()
        self._killed = False
        self._exit: Exit | None = None
        self._fmu: str | None = None
        stdin_r, self._stdin = os.pipe()
        control_r, control_w = os.pipe()
        log_r, log_w = os.pipe()
        procs = [os.open(path, os.O_WRONLY) for path in resources.procs_files()]
        theirs = [stdin_r, control_w, log_w, *procs]
        request = {"run": name, "rlimits": resources.child_rlimits(), "tmpfs_bytes": limits.memory_bytes,
                   "warm": warm}
        try:
            zygote.send_run(request, theirs)
        except SandboxError:
            for fd in (self._stdin, control_r, log_r):
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self._pump = OutputPump(control_r, log_r, control, log, name=f"sandbox-pump-{name}")
        self._pump.start()
        self._fds: tuple[int, ...] = (control_r, log_r)
        # Where the run's cgroup measures its CPU and memory, its end is its "done" message: the
        # runner only exits after it, and tearing a forked address space down takes milliseconds
        # nobody needs to wait for (the kill and the reaping happen anyway).
        self._done_ends = resources.usage().cpu_time_s is not None

    def stage(self, fmu_dir: Path, spec_json: bytes, job_dir: Path) -> None:
        """The spec into the run's job dir; the FMU is the zygote's staged copy, bound by init at "go"."""
        self._fmu = self.zygote.stage_fmu(fmu_dir)
        (job_dir / FMU_DIR).mkdir(mode=0o755)
        write_spec(spec_json, job_dir)

    def release(self) -> None:
        go = GO if self._fmu is None else GO.replace(b"\n", f" {self._fmu}\n".encode())
        with contextlib.suppress(BrokenPipeError, OSError):
            os.write(self._stdin, go)

    def wait_exited(self, deadline: float) -> bool:
        """The run's init has exited once its control pipe ends (nothing else ever holds it); with a
        cgroup, the run has ended once its runner said "done"."""
        return self._control.wait_closed(deadline - time.monotonic(), DONE if self._done_ends else None)

    def kill(self) -> None:
        """Hang up on init (it kills its namespace) and kill the run's cgroup; the zygote stays."""
        with self._lock:
            self._killed = True
        self._hang_up()
        self._resources.kill_all()

    def _hang_up(self) -> None:
        with self._lock:
            stdin, self._stdin = self._stdin, -1
        if stdin >= 0:
            os.close(stdin)

    def finish(self, drain_timeout: float) -> Exit:
        with self._lock:
            if self._exit is not None:
                return self._exit
            killed = self._killed
        ended = self._control.closed
        report = self._control.get(EXIT)
        if ended and report is None and not killed:
            # Init always reports before it exits: it was harmed, or the zygote failed to start it.
            self.zygote.discard("a run's init ended without reporting")
        if not ended and not killed and self._done_ends and self._control.get(DONE) is not None:
            # Done: hang up (init kills what is left) and let dispose() reap in its own time.
            self._hang_up()
            return Exit(None, None, None)
        self.kill()
        if not self._control.wait_closed(END_TIMEOUT_S):
            logger.error("run %s of warm sandbox %s did not end after SIGKILL", self._pump.name, self.zygote.id)
        self._pump.stop(drain_timeout)
        report = report or {}
        status, rss, cpu = report.get("status"), report.get("max_rss_bytes"), report.get("cpu_time_s")
        exit_ = Exit(
            status if isinstance(status, int) else None,
            rss if isinstance(rss, int) else None,
            float(cpu) if isinstance(cpu, (int, float)) else None,
        )
        with self._lock:
            self._exit = exit_
        return exit_

    def dispose(self) -> None:
        try:
            self.kill()
            self._control.wait_closed(END_TIMEOUT_S)
            self._pump.stop(0)
            self._resources.close()
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = ()
        finally:
            self.zygote.run_ended()


@dataclasses.dataclass(frozen=True)
class Reuse:
    """How long a warm sandbox lives: `max_runs` runs or `idle_s` seconds without one."""

    max_runs: int = 1000
    idle_s: float = 300.0
    max_sandboxes: int = 16  # warm sandboxes kept at once, all tenants together


class ZygoteBackend(SandboxBackend):
    """Every sandbox forked from a warm zygote of ``backend``, one zygote per set of limits (so one
    tenant): for tools and the conformance suite. The server's `SandboxPool` keeps one per tenant."""

    def __init__(self, backend: SandboxBackend) -> None:
        if not backend.has_zygotes:
            raise SandboxError(f"the {backend.name} backend has no warm sandboxes")
        self.inner = backend
        self.name = f"{backend.name}-warm"  # type: ignore[misc]
        self.work_dir = backend.work_dir
        self._zygotes: dict[Limits, Zygote] = {}
        self._lock = threading.Lock()

    def start(self, limits: Limits) -> ChildProcessSandbox:
        key = limits.fixed_at_start()
        with self._lock:
            zygote = self._zygotes.get(key)
            if zygote is None or not zygote.usable():
                zygote = self._zygotes[key] = self.inner.start_zygote(key)
        return zygote.fork(limits)

    def remove_leftovers(self) -> list[str]:
        return self.inner.remove_leftovers()

    def close(self) -> None:
        with self._lock:
            zygotes, self._zygotes = list(self._zygotes.values()), {}
        for zygote in zygotes:
            zygote.close()
