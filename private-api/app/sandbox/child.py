"""A sandbox that is one process tree running our runner: shared by every backend.

The backend decides *what* to spawn (plain python, bwrap, a Docker container) and which
`ResourceControl` confines it. A `ProcessTree` owns the processes (spawn, release, wait, kill,
reap): `ChildTree` is a child process of ours, `app.sandbox.docker.ContainerTree` a container.
`ChildProcessSandbox` owns the job (states, staging, deadline, outcome, clean-up).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.sandbox.base import Job, Limits, Outcome, Sandbox, SandboxError
from app.sandbox.capture import BoundedLog, ControlMessages, OutputPump
from app.sandbox.outcome import Observation, Verdict, classify, decode_wait_status, signal_name
from app.sandbox.resources import SANDBOX_ID_ENV, ResourceControl
from app.sandbox.runner import (
    CHILD_DONE,
    CHILD_STARTED,
    DONE,
    EXIT,
    GO,
    READY,
    RESET_CHECKED,
    RESULT_FILE,
    SweepChunk,
)
from app.sandbox.staging import (
    SandboxDirs,
    encode_spec,
    output_over_quota,
    output_over_quota_problem,
    output_problem,
    stage_job,
)

logger = logging.getLogger(__name__)

_REAP_TIMEOUT_S = 5.0
_DRAIN_TIMEOUT_S = 1.0
_POLL_FALLBACK_S = 0.005
_OUTPUT_CHECK_S = 0.05

RUNNER_PATH = Path(__file__).with_name("runner.py")
ZYGOTE_PATH = Path(__file__).with_name("zygote.py")  # a warm sandbox's (app.sandbox.warm)


def runner_digest() -> str:
    """Names the version of what runs inside sandboxes (runner.py, then zygote.py): host and sandbox
    speak one protocol, and checks of an FMU are per runner. The runner image carries it as a label."""
    return hashlib.sha256(RUNNER_PATH.read_bytes() + ZYGOTE_PATH.read_bytes()).hexdigest()

# One thread per numeric library: the sandbox has a small pids limit and one job.
SINGLE_THREADED_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def runner_env(home: str, sandbox_id: str) -> dict[str, str]:
    """The whole environment of a runner: nothing of the server's (keys, database URLs) leaks in."""
    path = "/usr/local/bin:/usr/bin:/bin"
    return {
        "PATH": path,
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        SANDBOX_ID_ENV: sandbox_id,
        **SINGLE_THREADED_ENV,
    }


def new_sandbox_id() -> str:
    return "sbx-" + uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Launch:
    """How a backend starts its runner."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    signal_via_exit_code: bool = False  # bwrap: exit code 128 + N means the runner died of signal N


@dataclass(frozen=True)
class Exit:
    status: int | None  # raw wait status, None if it could not be reaped
    max_rss_bytes: int | None
    cpu_time_s: float | None


class ProcessTree(Protocol):
    """The processes of one sandbox, as the job lifecycle needs them."""

    pid: int  # host pid of the tree's top process

    def stage(self, fmu_dir: Path, spec_json: bytes, job_dir: Path) -> None:
        """Place the extracted FMU and the spec where the waiting runner will look."""

    def release(self) -> None:
        """Tell the waiting runner to go."""

    def wait_exited(self, deadline: float) -> bool:
        """Wait until the top process has exited or the (monotonic) deadline passes."""

    def kill(self) -> None:
        """Kill the whole tree now; idempotent, callable from any thread."""

    def finish(self, drain_timeout: float) -> Exit:
        """Kill what is left, collect the exit, drain the output."""

    def dispose(self) -> None:
        """finish() plus releasing every resource; only once no other thread uses the tree."""


# Starts a tree that feeds the runner's stdout to the control messages and its stderr to the log.
SpawnTree = Callable[[ControlMessages, BoundedLog], ProcessTree]


class ChildTree:
    """The spawned process tree. Killing is never done by pid once the child is reaped (pids get reused)."""

    def __init__(self, launch: Launch, resources: ResourceControl, control: ControlMessages, log: BoundedLog) -> None:
        self.resources = resources
        self.exit: Exit | None = None
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            launch.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=launch.env,
            cwd=launch.cwd,
            start_new_session=True,  # own process group: killpg reaches every descendant that stays in it
            preexec_fn=resources.preexec,
            close_fds=True,
        )
        self.pid = self._proc.pid
        resources.attach(self.pid)
        self._pidfd = open_pidfd(self.pid)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        stdout, stderr = self._proc.stdout.fileno(), self._proc.stderr.fileno()
        self._pump = OutputPump(stdout, stderr, control, log, name=f"sandbox-pump-{self.pid}")
        self._pump.start()

    def stage(self, fmu_dir: Path, spec_json: bytes, job_dir: Path) -> None:
        stage_job(fmu_dir, spec_json, job_dir)

    def release(self) -> None:
        """Tell the waiting runner to go; a dead runner is diagnosed from its exit status."""
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._proc.stdin.write(GO)
            self._proc.stdin.flush()

    def wait_exited(self, deadline: float) -> bool:
        """Wait until the child has exited (a zombie, not reaped) or the deadline passes."""
        while True:
            remaining = deadline - time.monotonic()
            if self._pidfd is not None:
                if select.select([self._pidfd], [], [], max(remaining, 0.0))[0]:
                    return True
            elif has_exited(self.pid):
                return True
            else:
                time.sleep(min(_POLL_FALLBACK_S, max(remaining, 0.0)))
            if remaining <= 0:
                return False

    def kill(self) -> None:
        with self._lock:
            self.resources.kill_all()
            if self.exit is None:  # the unreaped zombie still pins the process group id
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)

    def finish(self, drain_timeout: float) -> Exit:
        """Kill what is left (before reaping: the zombie keeps the pgid from reuse), reap, drain the pipes."""
        self.kill()
        exit_ = self._reap()
        self._pump.stop(drain_timeout)
        return exit_

    def dispose(self) -> None:
        """finish() plus releasing every resource; only once no other thread uses the tree."""
        self.finish(0)
        self.resources.close()
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _reap(self) -> Exit:
        with self._lock:
            if self.exit is not None:
                return self.exit
        if not self.wait_exited(time.monotonic() + _REAP_TIMEOUT_S):
            logger.error("sandbox process %d did not die after SIGKILL", self.pid)
            return Exit(None, None, None)
        with self._lock:
            if self.exit is None:
                _, status, usage = os.wait4(self.pid, 0)
                self._proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
                self.resources.detach()
                self.exit = Exit(status, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)
            return self.exit


def spawn_child(launch: Launch, resources: ResourceControl) -> SpawnTree:
    return lambda control, log: ChildTree(launch, resources, control, log)


def dispose_sandbox(tree: ProcessTree, dirs: SandboxDirs) -> None:
    """Everything close() releases; also run by the finalizer when a sandbox is dropped unclosed."""
    try:
        tree.dispose()
    finally:
        dirs.remove()


class ChildProcessSandbox(Sandbox):
    def __init__(
        self,
        *,
        sandbox_id: str,
        limits: Limits,
        dirs: SandboxDirs,
        resources: ResourceControl,
        spawn: SpawnTree,
        signal_via_exit_code: bool,
    ) -> None:
        self.id = sandbox_id
        self.limits = limits
        self.dirs = dirs
        self.resources = resources
        self._signal_via_exit_code = signal_via_exit_code
        self._lock = threading.Lock()
        self._state = "idle"  # idle -> running -> finished; any -> closed
        self._log = BoundedLog(limits.max_log_bytes)
        self._cpu_at_go: float | None = None
        self._control = ControlMessages()
        try:
            self._tree = spawn(self._control, self._log)
        except (OSError, subprocess.SubprocessError, SandboxError) as e:
            resources.close()
            dirs.remove()
            raise SandboxError(f"cannot start sandbox: {e}") from e
        # A pool that drops a sandbox without close() must not leak its processes, cgroup or dirs.
        self._dispose = weakref.finalize(self, dispose_sandbox, self._tree, dirs)

    @property
    def pid(self) -> int:
        return self._tree.pid

    @property
    def tree(self) -> ProcessTree:
        return self._tree

    def wait_ready(self, timeout: float) -> bool:
        return self._control.wait_for(READY, timeout) is not None

    @property
    def ready(self) -> dict[str, Any] | None:
        """The runner's ready message (its pid, warm-up CPU, memory, whether it warmed up), once sent."""
        return self._control.get(READY)

    def run(self, job: Job) -> Outcome:
        if job.limits.fixed_at_start() != self.limits.fixed_at_start():
            raise SandboxError("job limits differ from the limits this sandbox was started with (only deadline_s may)")
        spec_json = encode_spec(job.spec)
        with self._lock:
            if self._state != "idle":
                raise SandboxError(f"sandbox {self.id} is {self._state}; a sandbox runs exactly one job")
            self._state = "running"
        started = time.monotonic()
        try:
            outcome = self._run(job, spec_json, started)
        finally:
            with self._lock:
                closed_meanwhile = self._state == "closed"
                self._state = "closed" if closed_meanwhile else "finished"
            if closed_meanwhile:
                self._dispose()
        if closed_meanwhile:
            return self._failed("sandbox was closed during the run", started, outcome_exit(outcome))
        return outcome

    def remove_files(self) -> None:
        self.dirs.remove()

    def close(self, *, wait: bool = True) -> None:
        with self._lock:
            previous, self._state = self._state, "closed"
        if previous == "running":
            self._tree.kill()  # the thread in run() sees the exit and disposes
        elif previous != "closed":
            if wait:
                self._dispose()
            else:
                self.remove_files()
                threading.Thread(target=self._dispose, name=f"sandbox-dispose-{self.id}", daemon=True).start()

    def _run(self, job: Job, spec_json: bytes, started: float) -> Outcome:
        if self._tree.wait_exited(started):
            # E.g. --die-with-parent fired because the thread that started us ended: not the model's fault.
            exit_ = self._tree.finish(_DRAIN_TIMEOUT_S)
            return self._failed("sandbox process died before its job arrived", started, exit_)
        try:
            self._tree.stage(job.fmu_dir, spec_json, self.dirs.job)
        except OSError as e:
            return self._failed(f"cannot stage the job: {e}", started, self._tree.finish(0))
        # CPU spent warming up (imports) is the platform's; the job's share starts at "go".
        self._cpu_at_go = self.resources.usage().cpu_time_s
        self._tree.release()
        deadline = started + job.limits.deadline_s
        deadline_s = job.limits.deadline_s
        timed_out, over_quota = False, None
        quota = job.output_quota_bytes or self.limits.max_output_bytes
        # /out is a host directory: watch its size while the model runs, not only afterwards.
        while not self._tree.wait_exited(min(deadline, time.monotonic() + _OUTPUT_CHECK_S)):
            if time.monotonic() >= deadline or self._child_over_deadline(job.child_deadline_s):
                timed_out = True
                if time.monotonic() < deadline and job.child_deadline_s is not None:
                    deadline_s = job.child_deadline_s
                break
            over_quota = output_over_quota(self.dirs.out, quota)
            if over_quota is not None:
                break
        exit_ = self._tree.finish(_DRAIN_TIMEOUT_S)
        wall_time = time.monotonic() - started
        if over_quota is not None:
            code, sig = decode_wait_status(exit_.status, self._signal_via_exit_code)
            verdict = Verdict("failed", "output_too_large", over_quota, code, signal_name(sig) if sig else None)
            return self._make_outcome(verdict, wall_time, exit_)
        return self._outcome(timed_out, deadline_s, wall_time, exit_, isinstance(job.spec, SweepChunk), quota)

    def _child_over_deadline(self, child_deadline_s: float | None) -> bool:
        """A sweep chunk's current child has run longer than its own deadline."""
        if child_deadline_s is None:
            return False
        messages = self._control.all(CHILD_STARTED, CHILD_DONE)
        if not messages or messages[-1][1]["event"] != CHILD_STARTED:
            return False
        return time.monotonic() - messages[-1][0] > child_deadline_s

    def _outcome(self, timed_out: bool, deadline_s: float, wall_time: float, exit_: Exit, chunk: bool,
                 quota: int) -> Outcome:
        report = self._control.get(DONE)
        problem = None
        if report is not None and report.get("ok") is True:
            # A chunk's results are per child (<id>.npy), judged by whoever reads them.
            problem = output_over_quota_problem(self.dirs.out, quota) if chunk else output_problem(
                self.dirs.out, self.limits.max_output_bytes)
        exit_ = self._measured(exit_)
        peak_vm = (self._control.get(EXIT) or {}).get("peak_vm_bytes")
        observation = Observation(
            timed_out=timed_out,
            wait_status=exit_.status,
            signal_via_exit_code=self._signal_via_exit_code,
            ready=self._control.get(READY),
            report=report,
            oom_killed=self.resources.oom_killed(),
            detects_oom=self.resources.detects_oom,
            max_rss_bytes=exit_.max_rss_bytes,
            cpu_time_s=exit_.cpu_time_s,
            output_problem=problem,
            peak_vm_bytes=peak_vm if isinstance(peak_vm, int) else None,
        )
        return self._make_outcome(classify(observation, self.limits, deadline_s), wall_time, exit_)

    def _measured(self, exit_: Exit) -> Exit:
        """Best figures for CPU and memory: wait4 cannot see through bwrap's init, the supervisor and cgroup can."""
        usage = self.resources.usage()
        supervised = self._control.get(EXIT) or {}
        rss, cpu = supervised.get("max_rss_bytes"), supervised.get("cpu_time_s")
        rss_figures = [exit_.max_rss_bytes, rss if isinstance(rss, int) else None]
        if not supervised:
            rss_figures.append(usage.peak_memory_bytes)  # the whole tree was killed: only the cgroup saw the peak
        cpu_figures = [exit_.cpu_time_s, float(cpu) if isinstance(cpu, (int, float)) else None]
        # The supervisor's figure minus the warm-up the runner reported before any model code ran.
        reported = (self._control.get(READY) or {}).get("cpu_time_s")
        warm_up = float(reported) if isinstance(reported, (int, float)) else None
        job_cpu = None
        if isinstance(cpu, (int, float)) and warm_up is not None:
            job_cpu = max(float(cpu) - warm_up, 0.0)
        if usage.cpu_time_s is not None:
            # A cgroup read by sampling (docker) may miss the end of a short job; the supervisor does not.
            # The larger wins: a model forging a low supervisor figure cannot lower the cgroup's.
            best_cpu = max(usage.cpu_time_s - (self._cpu_at_go or 0.0), job_cpu or 0.0)
        elif job_cpu is not None:
            # No cgroup to read (rlimits, or a worker in a container): not the warm-up either. wait4's
            # figure cannot be forged by the model, the supervisor's could be: never below wait4's.
            waited = exit_.cpu_time_s - warm_up if exit_.cpu_time_s is not None and warm_up is not None else None
            best_cpu = max(job_cpu, waited or 0.0)
        else:
            best_cpu = max_or_none(cpu_figures)
        return Exit(exit_.status, max_or_none(rss_figures), best_cpu)

    def _failed(self, message: str, started: float, exit_: Exit) -> Outcome:
        """A failure of the platform, not of the model."""
        code, sig = decode_wait_status(exit_.status, self._signal_via_exit_code)
        verdict = Verdict("failed", "sandbox_error", message, code, signal_name(sig) if sig is not None else None)
        return self._make_outcome(verdict, time.monotonic() - started, exit_)

    def _result_path(self, verdict: Verdict) -> Path | None:
        path = self.dirs.out / RESULT_FILE
        return path if verdict.status == "succeeded" and path.exists() else None

    def _make_outcome(self, verdict: Verdict, wall_time: float, exit_: Exit) -> Outcome:
        return Outcome(
            status=verdict.status,
            error_code=verdict.error_code,
            error_message=verdict.error_message,
            result_path=self._result_path(verdict),
            log=self._log.text(),
            wall_time_s=wall_time,
            cpu_time_s=exit_.cpu_time_s,
            max_rss_bytes=exit_.max_rss_bytes,
            exit_code=verdict.exit_code,
            signal=verdict.signal,
            out_dir=self.dirs.out,
            children=[m for _, m in self._control.all(CHILD_STARTED, CHILD_DONE, RESET_CHECKED)],
        )


def outcome_exit(outcome: Outcome) -> Exit:
    return Exit(None, outcome.max_rss_bytes, outcome.cpu_time_s)


def max_or_none(values: list[int | None] | list[float | None]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def open_pidfd(pid: int) -> int | None:
    """A pidfd turns waiting with a deadline into one select(); absent before Linux 5.3."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def has_exited(pid: int) -> bool:
    """Poll without reaping (WNOWAIT), for kernels without pidfd."""
    result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return result is not None
