"""Turns what the host observed about a finished sandbox into an `Outcome` status and error code.

The runner's own report is a claim by a process that hosted untrusted native code, so it
only decides between codes the model could cause anyway; what the kernel tells us
(deadline, OOM counter, signal) always wins.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

from app.sandbox.base import ErrorCode, Limits, RunStatus
from app.sandbox.runner import REPORTABLE_ERRORS

# A crash with the address space this close to RLIMIT_AS was a failed allocation.
_PEAK_VM_SHARE = 0.8
# Under RLIMIT_AS a crash after RSS grew through half of the headroom is taken as the memory limit:
# big allocations fail long before RSS reaches the limit (address space counts, not RSS).
_HEADROOM_SHARE = 0.5
_MEMORY_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGKILL})


@dataclass(frozen=True)
class Observation:
    timed_out: bool
    wait_status: int | None  # raw status from wait4; None when the process could not be reaped
    signal_via_exit_code: bool  # bwrap reports a child's death by signal N as exit code 128 + N
    ready: dict[str, Any] | None  # the runner's "ready" message
    report: dict[str, Any] | None  # the runner's "done" message
    oom_killed: bool  # the cgroup's OOM counter moved
    detects_oom: bool  # False under rlimits: memory failures must be inferred
    max_rss_bytes: int | None
    cpu_time_s: float | None
    output_problem: tuple[ErrorCode, str] | None
    peak_vm_bytes: int | None = None  # the runner's VmPeak as its supervisor last saw it


@dataclass(frozen=True)
class Verdict:
    status: RunStatus
    error_code: ErrorCode | None
    error_message: str | None
    exit_code: int | None
    signal: str | None


def decode_wait_status(status: int | None, signal_via_exit_code: bool) -> tuple[int | None, int | None]:
    """(exit code, signal number) of a raw wait status."""
    if status is None:
        return None, None
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    if signal_via_exit_code and 128 < code < 128 + signal.NSIG:
        return None, code - 128
    return code, None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(obs: Observation, limits: Limits, deadline_s: float) -> Verdict:
    code, sig = decode_wait_status(obs.wait_status, obs.signal_via_exit_code)
    name = signal_name(sig) if sig is not None else None

    def verdict(status: RunStatus, error_code: ErrorCode | None, message: str | None) -> Verdict:
        return Verdict(status, error_code, message, code, name)

    if obs.timed_out:
        return verdict("timed_out", None, f"deadline of {deadline_s:g} s exceeded")
    if obs.oom_killed:
        return verdict("failed", "memory_limit", memory_message(limits))
    if obs.report is not None:
        return verdict(*judge_report(obs.report, obs.output_problem))
    if obs.ready is None:
        how = f"was killed by {name}" if name else f"exited with code {code}"
        return verdict("failed", "sandbox_error", f"sandbox process {how} before the runner was ready")
    if obs.wait_status is None:
        # Not reaped, or a warm sandbox's init vanished without its report: harm to, or a fault of, ours.
        return verdict("failed", "sandbox_error", "the sandbox's supervisor ended without reporting the run's end")
    if sig is not None:
        return verdict(*judge_signal(sig, obs, limits))
    return verdict("failed", "model_crashed", f"model ended the runner with exit code {code} before it reported")


Judgement = tuple[RunStatus, ErrorCode | None, str | None]


def judge_report(report: dict[str, Any], problem: tuple[ErrorCode, str] | None) -> Judgement:
    if report.get("ok") is True:
        if problem is not None:
            return "failed", problem[0], problem[1]
        return "succeeded", None, None
    claimed = report.get("error_code")
    error_code: ErrorCode = claimed if claimed in REPORTABLE_ERRORS else "runner_error"
    return "failed", error_code, str(report.get("message") or error_code)[:2000]


def judge_signal(sig: int, obs: Observation, limits: Limits) -> Judgement:
    cpu_exceeded = limits.cpu_seconds is not None and (obs.cpu_time_s or 0.0) >= limits.cpu_seconds
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_exceeded):
        return "timed_out", None, f"CPU time limit of {limits.cpu_seconds} s exceeded"
    if sig == signal.SIGXFSZ:
        return "failed", "output_too_large", f"model wrote a file larger than {limits.max_output_bytes} bytes"
    if not obs.detects_oom and sig in _MEMORY_SIGNALS and near_memory_limit(obs, limits):
        return "failed", "memory_limit", memory_message(limits)
    return "failed", "model_crashed", f"model crashed with {signal_name(sig)}"


def near_memory_limit(obs: Observation, limits: Limits) -> bool:
    """Did RSS grow through most of the address space that was left when the runner became ready?"""
    ready = obs.ready or {}
    vm, rss = ready.get("vm_bytes"), ready.get("rss_bytes")
    if obs.max_rss_bytes is None or not isinstance(vm, int) or not isinstance(rss, int):
        return False
    # The supervisor samples VmPeak, and may not have sampled since the warm-up if the job crashed at once;
    # the address space the runner reported when ready is a floor of the peak.
    peak_vm = max(obs.peak_vm_bytes or 0, vm)
    if peak_vm >= _PEAK_VM_SHARE * limits.memory_bytes:
        return True
    headroom = limits.memory_bytes - vm
    return headroom > 0 and obs.max_rss_bytes - rss >= _HEADROOM_SHARE * headroom


def memory_message(limits: Limits) -> str:
    return f"model exceeded the memory limit of {limits.memory_bytes / (1 << 20):g} MiB"
