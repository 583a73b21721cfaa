"""The sandbox contract: one fresh, isolated process tree runs exactly one FMU job.

A backend spawns a sandbox *before* its job is known (`SandboxBackend.start`), so a warm
pool can keep sandboxes with FMPy already imported; `Sandbox.run` then stages the job
and waits for the outcome under a hard deadline.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from app.sandbox.runner import RunSpec, SweepChunk

if TYPE_CHECKING:
    from app.sandbox.warm import Zygote

logger = logging.getLogger(__name__)

RunStatus = Literal["succeeded", "failed", "timed_out"]
ErrorCode = Literal[
    "model_crashed",
    "memory_limit",
    "model_error",
    "output_too_large",
    "runner_error",
    "sandbox_error",
]


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 1 << 30  # memory limit of the whole sandbox
    deadline_s: float = 60.0  # hard wall-clock deadline for the job, kills the whole tree
    max_processes: int = 32  # process/thread count limit
    max_output_bytes: int = 256 << 20  # cap on files the runner may write (result)
    max_log_bytes: int = 1 << 20  # cap on captured stdout/stderr/FMU log
    cpu_seconds: int | None = None  # RLIMIT_CPU per process, counted from start() (warm-up included)

    def fixed_at_start(self) -> Limits:
        """The limits a started sandbox is bound to; only the deadline is chosen per job."""
        return dataclasses.replace(self, deadline_s=Limits.deadline_s)


@dataclass(frozen=True)
class Job:
    run_id: str
    fmu_dir: Path  # host path of the extracted FMU (world-readable); read-only in the sandbox
    spec: RunSpec | SweepChunk  # one run's, or a sweep chunk's children's (see app/sandbox/runner.py)
    limits: Limits
    # A sweep chunk: each child's own deadline, and the output dir's quota for all its results.
    child_deadline_s: float | None = None
    output_quota_bytes: int | None = None


@dataclass
class Outcome:
    status: RunStatus
    error_code: ErrorCode | None
    error_message: str | None  # human readable; crashes name the signal
    # The runner's result array (.npy) on the host when succeeded (a regular file within the limit);
    # the sandbox's output, so read through app.sandbox.result_file.convert. Gone after close().
    result_path: Path | None
    log: str  # FMU log + stderr, head and tail kept when over max_log_bytes
    wall_time_s: float
    cpu_time_s: float | None  # the job's CPU time (from "go") where the cgroup measures it, else the whole tree's
    max_rss_bytes: int | None
    exit_code: int | None
    signal: str | None
    out_dir: Path | None = None  # the sandbox's output dir on the host; gone after close()
    # A sweep chunk's child_started / child_done / reset_checked messages, in order.
    children: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class SandboxError(Exception):
    """The sandbox cannot take this job (closed, already used, or limits mismatch)."""


class Sandbox(ABC):
    """One fresh process tree, used for exactly one job, then closed."""

    id: str
    limits: Limits

    @abstractmethod
    def wait_ready(self, timeout: float) -> bool:
        """True once the runner has FMPy imported and waits for a job; run() does not require it."""

    @abstractmethod
    def run(self, job: Job) -> Outcome:
        """Stage the job, release the waiting runner, wait until done or the deadline."""

    @abstractmethod
    def remove_files(self) -> None:
        """Remove the host-side dirs (the result included) now, once what must outlive them is
        stored: an output that filled the disk frees it before the run is final. close() still
        ends the processes. Idempotent."""

    @abstractmethod
    def close(self, *, wait: bool = True) -> None:
        """Kill anything left and remove the host-side dirs (including the result). Idempotent.

        From another thread during run(), it aborts the run (sandbox_error) and run() cleans up.
        ``wait=False``: the dirs go now; killing and reaping the processes (a large address space
        takes milliseconds to unmap) and removing the cgroup are left to a background thread.
        """

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SandboxBackend(ABC):
    name: ClassVar[str]
    work_dir: Path
    # Whether start_zygote gives warm sandboxes (app.sandbox.warm) of this backend.
    has_zygotes: bool = False

    @abstractmethod
    def start(self, limits: Limits) -> Sandbox:
        """Spawn a sandbox now; its runner imports FMPy and waits for a job."""

    def start_zygote(self, limits: Limits, *, prefork: bool = False) -> Zygote:
        """A warm sandbox for one tenant, forking a sandbox per run; SandboxError where there is none."""
        raise SandboxError(f"the {self.name} backend has no warm sandboxes")

    @abstractmethod
    def remove_leftovers(self) -> list[str]:
        """Remove what a previous process on this work dir left (crash, kill -9); call before start()."""
