"""Warm sandboxes: runs forked from one zygote per tenant stay isolated from each other, from the
zygote and from other tenants; the pool gives each tenant its own zygote and retires them.

Real bwrap and Docker, namespaces and cgroups, the project's Hostile FMU; no mocks. The whole
conformance suite also runs on the warm path (the `bwrap-warm` and `docker-warm` backends in
test_conformance.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.sandbox import Job, Limits, Sandbox, SandboxBackend
from app.sandbox.child import ChildProcessSandbox
from app.sandbox.pool import SandboxPool
from app.sandbox.runner import RunSpec
from app.sandbox.warm import ForkedTree, Reuse, Zygote

from .conftest import DEFAULT_LIMITS, assert_nothing_left, backend_named, children_of, read_table, zygote_levels

# What mode 15 reports, bit by bit, for what mode 14 planted.
PLANTED_BITS = {1: "/tmp file", 2: "/dev/shm file", 4: "cwd file", 8: "SysV segment", 16: "a process",
                32: "static memory", 64: "out dir file"}  # fmt: skip


def hostile(mode: int, **params: Any) -> dict[str, Any]:
    return {"fmi_type": "CoSimulation", "start_values": {"mode": mode, **params}}


def run(sandbox: Sandbox, fmu_dir: Path, spec: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> tuple[Any, float]:
    """Run one job, return (outcome, last probe value or nan), close the sandbox, check nothing is left."""
    assert isinstance(sandbox, ChildProcessSandbox)
    try:
        outcome = sandbox.run(Job("run-1", fmu_dir, RunSpec.from_wire(spec), limits))
        probe = float("nan")
        if outcome.result_path is not None and "probe" in (table := read_table(outcome.result_path)).column_names:
            probe = table.column("probe").to_pylist()[-1]
    finally:
        sandbox.close()
    assert_nothing_left(sandbox)
    return outcome, probe


def zygote_of(sandbox: Sandbox) -> Zygote:
    assert isinstance(sandbox, ChildProcessSandbox) and isinstance(sandbox.tree, ForkedTree)
    return sandbox.tree.zygote


# Where warm sandboxes are: every test runs on both.
WARM = ("bwrap", "docker")


@pytest.fixture(params=WARM)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SandboxBackend]:
    with backend_named(request.param, tmp_path / "sandboxes") as backend:
        yield backend


@pytest.fixture
def pool(backend: SandboxBackend) -> Iterator[SandboxPool]:
    pool = SandboxPool(backend, DEFAULT_LIMITS, size=1, reuse=Reuse())
    pool.start()
    try:
        yield pool
    finally:
        pool.close()


def wakeups(pid: int) -> int:
    """How often a live process went to sleep and woke up (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches:"))
    except (OSError, StopIteration):
        return 0


def found(probe: float) -> list[str]:
    return [what for bit, what in PLANTED_BITS.items() if int(probe) & bit]


class TestOneZygotePerTenant:
    def test_a_tenant_keeps_its_zygote_and_another_tenant_gets_its_own(
        self, pool: SandboxPool, fmu_dirs: dict[str, Path]
    ) -> None:
        first, again, other = (pool.acquire(DEFAULT_LIMITS, t) for t in ("alice", "alice", "bob"))
        try:
            assert zygote_of(first) is zygote_of(again)
            assert zygote_of(other) is not zygote_of(first)
            assert (zygote_of(first).tenant, zygote_of(other).tenant) == ("alice", "bob")
        finally:
            for sandbox in (first, again, other):
                sandbox.close()

    def test_the_next_run_is_forked_ahead_and_waits_ready(self, pool: SandboxPool, fmu_dirs: dict[str, Path]) -> None:
        first = pool.acquire(DEFAULT_LIMITS, "alice")
        zygote = zygote_of(first)
        assert run(first, fmu_dirs["VanDerPol"], {"stop_time": 1.0})[0].status == "succeeded"
        first.close()  # the next run is forked when one ends (not while one is on its way)
        wait_until(lambda: zygote.spare_pids() != set())  # forked, namespaces built, runner waiting
        spare = zygote.spare_pids()
        second = pool.acquire(DEFAULT_LIMITS, "alice")
        # The run forked ahead (its init was seen, its runner may have joined it since), not a new fork.
        assert isinstance(second, ChildProcessSandbox) and spare <= second.resources.pids()
        assert second.wait_ready(0)  # no waiting: it is ready
        assert run(second, fmu_dirs["VanDerPol"], {"stop_time": 1.0})[0].status == "succeeded"

    def test_a_run_forked_ahead_warms_up_and_one_forked_for_its_job_does_not(
        self, pool: SandboxPool, fmu_dirs: dict[str, Path]
    ) -> None:
        """Forked ahead, a run has the time to take its first faults before its job; forked for a
        job at hand, it goes straight to it. The results are the same."""
        first = pool.acquire(DEFAULT_LIMITS, "alice")
        zygote = zygote_of(first)
        assert run(first, fmu_dirs["VanDerPol"], {"stop_time": 1.0})[0].status == "succeeded"
        wait_until(lambda: zygote.spare_pids() != set())
        ahead = pool.acquire(DEFAULT_LIMITS, "alice")
        now = pool.acquire(DEFAULT_LIMITS, "alice")  # nothing forked ahead any more
        tables = []
        try:
            for sandbox, warm in ((ahead, True), (now, False)):
                assert isinstance(sandbox, ChildProcessSandbox) and sandbox.wait_ready(30)
                assert sandbox.ready is not None and sandbox.ready["warm"] is warm
                outcome = sandbox.run(Job("run-1", fmu_dirs["VanDerPol"], RunSpec(stop_time=1.0), DEFAULT_LIMITS))
                assert outcome.status == "succeeded" and outcome.result_path is not None, outcome
                tables.append(read_table(outcome.result_path))
        finally:
            ahead.close()
            now.close()
        assert_nothing_left(now)
        assert tables[0].equals(tables[1])

    def test_a_run_waiting_for_its_job_sleeps(self, pool: SandboxPool) -> None:
        """Warm runs may wait for hours on an idle server: they sleep, they do not poll."""
        sandbox = pool.acquire(DEFAULT_LIMITS, "alice")
        try:
            assert isinstance(sandbox, ChildProcessSandbox) and sandbox.wait_ready(30)
            pids = sandbox.resources.pids()
            before = sum(map(wakeups, pids))
            time.sleep(3)
            assert sum(map(wakeups, pids)) - before < 30  # polling every 10 ms woke it 300 times
        finally:
            sandbox.close()

    def test_runs_without_a_tenant_or_with_other_limits_get_a_sandbox_of_their_own(
        self, pool: SandboxPool
    ) -> None:
        bigger = dataclasses.replace(DEFAULT_LIMITS, memory_bytes=DEFAULT_LIMITS.memory_bytes * 2)
        for sandbox in (pool.acquire(DEFAULT_LIMITS), pool.acquire(bigger, "alice")):
            with sandbox:
                assert isinstance(sandbox, ChildProcessSandbox) and not isinstance(sandbox.tree, ForkedTree)


class TestNothingCrossesRuns:
    @pytest.mark.parametrize("looker", ["alice", "bob"], ids=["same-tenant", "other-tenant"])
    def test_what_a_run_plants_is_invisible_to_later_runs(
        self, pool: SandboxPool, fmu_dirs: dict[str, Path], looker: str
    ) -> None:
        hostile_dir = fmu_dirs["Hostile"]
        outcome, planted = run(pool.acquire(DEFAULT_LIMITS, "alice"), hostile_dir, hostile(14, target_file="/out/x"))
        assert outcome.status == "succeeded", outcome
        assert planted == 7  # 3 scratch files, the out dir file, the SysV segment, the daemon, plus one
        for _ in range(5):
            outcome, probe = run(pool.acquire(DEFAULT_LIMITS, looker), hostile_dir, hostile(15, target_file="/out/x"))
            assert outcome.status == "succeeded", outcome
            assert found(probe) == []

    def test_kill_everything_ends_only_that_run(self, pool: SandboxPool, fmu_dirs: dict[str, Path]) -> None:
        """kill(-1) from a run reaches nothing outside its PID namespace: the zygote and five later runs live."""
        sandbox = pool.acquire(DEFAULT_LIMITS, "alice")
        zygote = zygote_of(sandbox)
        outcome, probe = run(sandbox, fmu_dirs["Hostile"], hostile(16))
        assert outcome.status == "succeeded", outcome
        assert probe == -1  # ESRCH: nothing in its namespace it may signal but itself and its init
        for _ in range(5):
            sandbox = pool.acquire(DEFAULT_LIMITS, "alice")
            assert zygote_of(sandbox) is zygote
            assert run(sandbox, fmu_dirs["VanDerPol"], {"stop_time": 1.0})[0].status == "succeeded"

    def test_a_run_cannot_mount_unmount_or_gain_privileges(
        self, pool: SandboxPool, fmu_dirs: dict[str, Path]
    ) -> None:
        outcome, probe = run(pool.acquire(DEFAULT_LIMITS, "alice"), fmu_dirs["Hostile"], hostile(17))
        assert outcome.status == "succeeded", outcome
        assert probe == 0  # umount /proc, writable /job, new mount, user namespace, setuid: all EPERM

    def test_the_model_library_is_never_loaded_in_the_zygote(
        self, pool: SandboxPool, fmu_dirs: dict[str, Path]
    ) -> None:
        sandbox = pool.acquire(DEFAULT_LIMITS, "alice")
        zygote = zygote_of(sandbox)
        assert run(sandbox, fmu_dirs["VanDerPol"], {"stop_time": 1.0})[0].status == "succeeded"
        maps = "".join(Path(f"/proc/{pid}/maps").read_text() for pid in zygote_processes(zygote))
        assert "VanDerPol.so" not in maps
        assert "fmpy" in maps or "numpy" in maps  # the imports are done: it is warm
        # Nor pyarrow, which every run forked from it would pay for (the host makes the Arrow file).
        assert "libarrow" not in maps and "pyarrow" not in maps


class TestHarm:
    def test_a_killed_zygote_fails_its_run_and_is_replaced(self, pool: SandboxPool, fmu_dirs: dict[str, Path]) -> None:
        sandbox = pool.acquire(DEFAULT_LIMITS, "alice")
        zygote = zygote_of(sandbox)
        assert sandbox.wait_ready(20.0)
        os.kill(zygote.pid, signal.SIGKILL)
        wait_until(lambda: not zygote.usable())  # the kill takes its namespace's processes down first
        outcome, _ = run(sandbox, fmu_dirs["VanDerPol"], {"stop_time": 1.0})
        assert (outcome.status, outcome.error_code) == ("failed", "sandbox_error")
        replacement = pool.acquire(DEFAULT_LIMITS, "alice")
        assert zygote_of(replacement) is not zygote
        assert run(replacement, fmu_dirs["VanDerPol"], {"stop_time": 1.0})[0].status == "succeeded"

    def test_a_run_whose_init_vanished_discards_the_zygote(
        self, pool: SandboxPool, fmu_dirs: dict[str, Path]
    ) -> None:
        """Init always reports before it exits; a run that ends without that report means harm."""
        sandbox = pool.acquire(DEFAULT_LIMITS, "alice")
        zygote = zygote_of(sandbox)
        assert sandbox.wait_ready(20.0)
        for pid in zygote_children(zygote):  # the run's init, killed behind the host's back
            os.kill(pid, signal.SIGKILL)
        outcome, _ = run(sandbox, fmu_dirs["VanDerPol"], {"stop_time": 1.0})
        assert (outcome.status, outcome.error_code) == ("failed", "sandbox_error")
        assert not zygote.usable()
        assert zygote_of(pool.acquire(DEFAULT_LIMITS, "alice")) is not zygote


class TestRecycling:
    def test_a_zygote_is_retired_after_its_runs_and_when_idle(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path]
    ) -> None:
        pool = SandboxPool(backend, DEFAULT_LIMITS, size=0, reuse=Reuse(max_runs=2, idle_s=0.5))
        pool.start()
        try:
            spec = {"stop_time": 1.0}
            first = pool.acquire(DEFAULT_LIMITS, "alice")
            zygote = zygote_of(first)
            run(first, fmu_dirs["VanDerPol"], spec)
            second = pool.acquire(DEFAULT_LIMITS, "alice")
            assert zygote_of(second) is zygote
            run(second, fmu_dirs["VanDerPol"], spec)
            third = pool.acquire(DEFAULT_LIMITS, "alice")  # two runs done: a new zygote
            assert zygote_of(third) is not zygote
            assert run(third, fmu_dirs["VanDerPol"], spec)[0].status == "succeeded"
            wait_until(lambda: not zygote.root.exists())  # retired and removed
            time.sleep(0.6)
            fourth = pool.acquire(DEFAULT_LIMITS, "alice")
            assert zygote_of(fourth) is not zygote_of(third)  # retired when idle
            fourth.close()
        finally:
            pool.close()


def zygote_processes(zygote: Zygote) -> list[int]:
    """The zygote's Python process, not what starts it (bwrap, or the container's first process)."""
    return zygote_levels(zygote)[-1]


def zygote_children(zygote: Zygote) -> list[int]:
    return [child for pid in zygote_processes(zygote) for child in children_of(pid)]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
