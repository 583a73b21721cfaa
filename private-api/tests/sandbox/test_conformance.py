"""Conformance tests every sandbox backend must pass: same results as raw FMPy, and every way a
model can misbehave ends in the documented outcome with nothing left running.

Real processes, real namespaces and cgroups, the project's C test FMUs; no mocks.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fmpy
import numpy as np
import pyarrow as pa
import pytest

from app.sandbox import Job, Limits, SandboxBackend, SandboxError, create_backend
from app.sandbox.bwrap import BubblewrapBackend
from app.sandbox.child import ChildProcessSandbox
from app.sandbox.process import ProcessBackend
from app.sandbox.runner import RunSpec, SweepChunk
from app.sandbox.warm import ZygoteBackend

from .conftest import (
    DEFAULT_LIMITS,
    ISOLATING,
    Finished,
    assert_nothing_left,
    bwrap_usable,
    processes_mentioning,
    read_table,
    run_once,
)

HANG_LIMITS = dataclasses.replace(DEFAULT_LIMITS, deadline_s=2.5)
# Time to tear a tree down after the deadline, on a loaded CI machine.
KILL_SLACK_S = 2.0

INPUT_TYPES = {"real_in": "Real", "int_in": "Integer", "bool_in": "Boolean"}
NUMPY_TYPES = {"Real": np.float64, "Integer": np.int32, "Boolean": np.bool_}


def raw_fmpy(fmu_dir: Path, spec: dict[str, Any]) -> np.ndarray:
    """The reference: FMPy in this process, given the spec the way a user of FMPy would."""
    table = spec.get("input")
    signals = None
    if table is not None:
        names = list(table)
        dtype = [(n, np.float64 if n == "time" else NUMPY_TYPES[spec["input_types"][n]]) for n in names]
        signals = np.array(list(zip(*(table[n] for n in names), strict=True)), dtype=dtype)
    result: np.ndarray = fmpy.simulate_fmu(
        str(fmu_dir),
        fmi_type=spec.get("fmi_type"),
        start_time=spec.get("start_time"),
        stop_time=spec.get("stop_time"),
        output_interval=spec.get("output_interval"),
        solver=spec.get("solver", "CVode"),
        relative_tolerance=spec.get("relative_tolerance"),
        start_values=spec.get("start_values", {}),
        input=signals,
        output=spec.get("outputs"),
    )
    return result


def assert_same_result(table: pa.Table | None, expected: np.ndarray) -> None:
    assert table is not None
    names = list(expected.dtype.names or ())
    assert table.column_names == names
    assert table.num_rows == len(expected)
    for name in names:
        column = table.column(name).to_numpy()
        assert column.dtype == expected[name].dtype, name
        if np.issubdtype(expected[name].dtype, np.floating):
            np.testing.assert_allclose(column, expected[name], rtol=1e-9, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(column, expected[name], err_msg=name)


def succeeded(finished: Finished) -> Finished:
    outcome = finished.outcome
    assert (outcome.status, outcome.error_code) == ("succeeded", None), outcome
    return finished


def hostile(mode: int, **params: Any) -> dict[str, Any]:
    return {"fmi_type": "CoSimulation", "start_values": {"mode": mode, **params}}


class TestResultsMatchRawFmpy:
    def test_van_der_pol_co_simulation(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        spec = {"fmi_type": "CoSimulation", "stop_time": 10.0, "output_interval": 0.05}
        finished = succeeded(run_once(backend, fmu_dirs["VanDerPol"], spec))
        assert_same_result(finished.table, raw_fmpy(fmu_dirs["VanDerPol"], spec))

    @pytest.mark.parametrize("solver", ["CVode", "Euler"])
    def test_van_der_pol_model_exchange(self, backend: SandboxBackend, fmu_dirs: dict[str, Path], solver: str) -> None:
        spec = {"fmi_type": "ModelExchange", "stop_time": 5.0, "solver": solver, "relative_tolerance": 1e-6}
        finished = succeeded(run_once(backend, fmu_dirs["VanDerPol"], spec))
        assert_same_result(finished.table, raw_fmpy(fmu_dirs["VanDerPol"], spec))

    def test_bouncing_ball_fmi3(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        spec: dict[str, Any] = {"stop_time": 3.0}
        finished = succeeded(run_once(backend, fmu_dirs["BouncingBall3"], spec))
        assert_same_result(finished.table, raw_fmpy(fmu_dirs["BouncingBall3"], spec))

    def test_start_values_are_applied(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        spec = {"fmi_type": "CoSimulation", "stop_time": 5.0, "start_values": {"mu": 3.5, "x0": 1.0}}
        finished = succeeded(run_once(backend, fmu_dirs["VanDerPol"], spec))
        assert finished.table is not None
        assert finished.table.column("x0")[0].as_py() == 1.0
        assert_same_result(finished.table, raw_fmpy(fmu_dirs["VanDerPol"], spec))
        default = raw_fmpy(fmu_dirs["VanDerPol"], {**spec, "start_values": {"x0": 1.0}})
        assert not np.allclose(finished.table.column("x1").to_numpy(), default["x1"])

    def test_input_table_drives_feedthrough_with_types_kept(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path]
    ) -> None:
        spec = {
            "fmi_type": "CoSimulation",
            "stop_time": 2.0,
            "output_interval": 0.1,
            "start_values": {"gain": 2.0},
            "input": {
                "time": [0.0, 1.0, 1.0, 2.0],
                "real_in": [0.0, 1.0, 3.0, 4.0],
                "int_in": [1, 1, 7, 7],
                "bool_in": [False, False, True, True],
            },
            "input_types": INPUT_TYPES,
            "outputs": ["real_out", "int_out", "bool_out"],
        }
        finished = succeeded(run_once(backend, fmu_dirs["Feedthrough"], spec))
        assert finished.table is not None
        assert finished.table.schema.field("int_out").type == pa.int32()
        assert finished.table.schema.field("bool_out").type == pa.bool_()
        assert finished.table.column("int_out").to_pylist()[-1] == 7
        assert_same_result(finished.table, raw_fmpy(fmu_dirs["Feedthrough"], spec))

    @pytest.mark.parametrize("reset", [None, True, False], ids=["check-reset", "reuse-instance", "fresh-instances"])
    def test_a_sweep_chunk_gives_each_child_the_result_it_gets_alone(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path], reset: bool | None
    ) -> None:
        specs = [{"fmi_type": "CoSimulation", "stop_time": 3.0, "output_interval": 0.05, "start_values": {"mu": mu}}
                 for mu in (0.5, 2.0, 1.0)]
        chunk = {"children": [{"id": f"run-{n}", "spec": spec} for n, spec in enumerate(specs)], "reset": reset}
        sandbox = backend.start(DEFAULT_LIMITS)
        assert isinstance(sandbox, ChildProcessSandbox)
        try:
            outcome = sandbox.run(Job("run-0", fmu_dirs["VanDerPol"], SweepChunk.from_wire(chunk), DEFAULT_LIMITS))
            assert outcome.status == "succeeded", outcome
            assert outcome.out_dir is not None
            tables = [read_table(outcome.out_dir / f"run-{n}.npy") for n in range(len(specs))]
        finally:
            sandbox.close()
        assert_nothing_left(sandbox)
        events = [(m["event"], m.get("id"), m.get("ok")) for m in outcome.children]
        checked = [("reset_checked", None, True)] if reset is None else []
        assert events == [("child_started", "run-0", None), *checked, ("child_done", "run-0", True),
                          ("child_started", "run-1", None), ("child_done", "run-1", True),
                          ("child_started", "run-2", None), ("child_done", "run-2", True)]
        for table, spec in zip(tables, specs, strict=True):
            assert_same_result(table, raw_fmpy(fmu_dirs["VanDerPol"], spec))

    def test_outcome_reports_resources_used(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        outcome = succeeded(run_once(backend, fmu_dirs["VanDerPol"], {"stop_time": 1.0})).outcome
        # A forked warm run ends at its "done" (its cgroup has the figures); its exit is not waited for.
        assert outcome.exit_code == (None if backend.name.endswith("-warm") else 0) and outcome.signal is None
        # FMPy + NumPy loaded; a forked warm run is charged only what it added to the zygote's pages.
        least = 1 << 20 if backend.name.endswith("-warm") else 10 << 20
        assert outcome.max_rss_bytes is not None and outcome.max_rss_bytes > least
        assert outcome.cpu_time_s is not None and outcome.cpu_time_s > 0
        assert 0 < outcome.wall_time_s < DEFAULT_LIMITS.deadline_s


class TestMisbehavingModels:
    @pytest.mark.parametrize(("mode", "signal_name"), [(1, "SIGSEGV"), (2, "SIGABRT")])
    def test_crash_is_model_crashed_with_the_signal(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path], mode: int, signal_name: str
    ) -> None:
        outcome = run_once(backend, fmu_dirs["Hostile"], hostile(mode)).outcome
        assert (outcome.status, outcome.error_code, outcome.signal) == ("failed", "model_crashed", signal_name)
        assert outcome.error_message == f"model crashed with {signal_name}"
        assert outcome.result_path is None
        assert f"mode {mode} triggered" in outcome.log  # the FMU's log up to the crash is kept

    @pytest.mark.parametrize("mode", [3, 4], ids=["busy-loop", "sleep"])
    def test_hang_is_killed_at_the_deadline(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path], mode: int
    ) -> None:
        started = time.monotonic()
        outcome = run_once(backend, fmu_dirs["Hostile"], hostile(mode), HANG_LIMITS).outcome
        elapsed = time.monotonic() - started
        assert (outcome.status, outcome.error_code) == ("timed_out", None)
        assert outcome.error_message == "deadline of 2.5 s exceeded"
        assert HANG_LIMITS.deadline_s <= outcome.wall_time_s < HANG_LIMITS.deadline_s + KILL_SLACK_S
        assert elapsed < HANG_LIMITS.deadline_s + KILL_SLACK_S

    def test_cpu_limit_ends_a_busy_loop_before_the_deadline(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path]
    ) -> None:
        limits = dataclasses.replace(DEFAULT_LIMITS, cpu_seconds=2, deadline_s=15.0)
        outcome = run_once(backend, fmu_dirs["Hostile"], hostile(3), limits).outcome
        assert (outcome.status, outcome.error_message) == ("timed_out", "CPU time limit of 2 s exceeded")
        assert outcome.wall_time_s < 5.0

    def test_memory_hog_is_memory_limit(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        outcome = run_once(backend, fmu_dirs["Hostile"], hostile(5)).outcome
        assert (outcome.status, outcome.error_code) == ("failed", "memory_limit"), outcome
        assert outcome.error_message == "model exceeded the memory limit of 512 MiB"

    def test_fmi_error_is_model_error_with_the_fmu_message(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path]
    ) -> None:
        outcome = run_once(backend, fmu_dirs["Hostile"], hostile(6)).outcome
        assert (outcome.status, outcome.error_code) == ("failed", "model_error")
        assert outcome.error_message is not None and "fmi2DoStep" in outcome.error_message
        assert "[ERROR] logStatusError: Hostile: requested failure" in outcome.log

    def test_fork_bomb_is_contained(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        probe = backend.start(HANG_LIMITS)
        assert isinstance(probe, ChildProcessSandbox)
        unlimited = probe.resources.kind == "rlimit" and os.getuid() == 0
        probe.close()
        if unlimited:
            pytest.skip("no cgroup and RLIMIT_NPROC does not bind root: a fork bomb would hit the host")
        started = time.monotonic()
        outcome = run_once(backend, fmu_dirs["Hostile"], hostile(7), HANG_LIMITS).outcome
        assert outcome.status in ("failed", "timed_out"), outcome
        assert time.monotonic() - started < HANG_LIMITS.deadline_s + KILL_SLACK_S
        # The host can still start processes.
        assert subprocess.run(["true"], check=False).returncode == 0


class TestIsolation:
    """What bwrap and docker must hide; the process backend's results document that it hides nothing."""

    @pytest.fixture
    def listener(self) -> Iterator[int]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            yield server.getsockname()[1]

    def test_network_is_unreachable(self, backend: SandboxBackend, fmu_dirs: dict[str, Path], listener: int) -> None:
        finished = succeeded(run_once(backend, fmu_dirs["Hostile"], hostile(8, port=listener)))
        probe = last_probe(finished)
        if backend.name in ISOLATING:
            assert probe == 0  # neither 1.1.1.1:53 nor the host's loopback
        else:
            assert probe >= 10  # the process backend shares the host's network

    def test_secrets_are_invisible(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("FMU_GATEWAY_TEST_SECRET", "hunter2")
        secret = tmp_path / "secret.env"
        secret.write_text("STRIPE_KEY=sk_live_x\n")
        spec = hostile(9, target_env="FMU_GATEWAY_TEST_SECRET", target_file=str(secret))
        probe = last_probe(succeeded(run_once(backend, fmu_dirs["Hostile"], spec)))
        if backend.name in ISOLATING:
            assert probe == 0
        else:
            assert probe == 10  # clean environment, but the host's files are readable

    def test_server_files_are_invisible(self, isolating_backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        repo_file = Path(__file__).resolve()  # stands in for the repo, var/ and .env
        targets = [str(repo_file), "/etc/shadow", str(fmu_dirs["VanDerPol"] / "modelDescription.xml")]
        if isolating_backend.name == "bwrap":
            targets.append("/etc/passwd")  # a container has its image's own /etc instead of the host's
        for target in targets:
            finished = run_once(isolating_backend, fmu_dirs["Hostile"], hostile(9, target_file=target))
            probe = last_probe(succeeded(finished))
            assert probe == 0, target

    def test_writes_outside_do_not_reach_the_host(
        self, isolating_backend: SandboxBackend, fmu_dirs: dict[str, Path], tmp_path: Path
    ) -> None:
        target = tmp_path / "pwned.txt"
        probe = last_probe(
            succeeded(run_once(isolating_backend, fmu_dirs["Hostile"], hostile(10, target_file=str(target))))
        )
        assert probe == 10  # only the private /tmp was writable
        assert not target.exists()

    def test_fmu_is_read_only(self, isolating_backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        model_description = fmu_dirs["Hostile"] / "modelDescription.xml"
        before = model_description.read_bytes()
        spec = hostile(10, target_file="/job/fmu/modelDescription.xml")
        probe = last_probe(succeeded(run_once(isolating_backend, fmu_dirs["Hostile"], spec)))
        assert probe == 10
        assert model_description.read_bytes() == before

    def test_daemon_does_not_survive_close(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        finished = run_once(backend, fmu_dirs["Hostile"], hostile(11))  # asserts nothing is left
        assert last_probe(succeeded(finished)) > 0

    def test_the_supervisor_cannot_be_traced_or_written(self, backend: SandboxBackend,
                                                        fmu_dirs: dict[str, Path]) -> None:
        """The process that reports a run's exit and resource use is not dumpable: the model, the
        same user without CAP_SYS_PTRACE, can neither ptrace it nor open its memory."""
        finished = succeeded(run_once(backend, fmu_dirs["Hostile"], hostile(13)))
        probe = last_probe(finished)
        if backend.name in ISOLATING or os.getuid() != 0:
            assert probe == 0
        else:
            assert probe == 11  # the process backend runs the model as this host's root: nothing stops root
        assert finished.outcome.cpu_time_s is not None

    @pytest.mark.skipif(os.getuid() != 0, reason="only a root-mapped sandbox could write kernel settings")
    def test_kernel_settings_are_read_only(self, isolating_backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        core_pattern = Path("/proc/sys/kernel/core_pattern")
        before = core_pattern.read_text()
        try:
            spec = hostile(10, target_file=str(core_pattern))
            probe = last_probe(succeeded(run_once(isolating_backend, fmu_dirs["Hostile"], spec)))
        finally:
            after = core_pattern.read_text()
            if after != before:
                core_pattern.write_text(before)
        assert (probe, after) == (10, before)


class TestLifecycle:
    def test_sandbox_starts_before_its_job_is_known(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        sandbox = backend.start(DEFAULT_LIMITS)
        assert isinstance(sandbox, ChildProcessSandbox)
        try:
            assert sandbox.wait_ready(timeout=20.0)  # FMPy imported, no job yet
            assert list(sandbox.dirs.job.iterdir()) == []
            job = Job("run-1", fmu_dirs["VanDerPol"], RunSpec(stop_time=1.0), DEFAULT_LIMITS)
            outcome = sandbox.run(job)
            assert outcome.status == "succeeded", outcome
        finally:
            sandbox.close()

    def test_a_sandbox_runs_only_one_job(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        job = Job("run-1", fmu_dirs["VanDerPol"], RunSpec(stop_time=1.0), DEFAULT_LIMITS)
        with backend.start(DEFAULT_LIMITS) as sandbox:
            assert sandbox.run(job).status == "succeeded"
            with pytest.raises(SandboxError):
                sandbox.run(job)

    def test_a_closed_sandbox_refuses_jobs_and_closes_again(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path]
    ) -> None:
        sandbox = backend.start(DEFAULT_LIMITS)
        assert isinstance(sandbox, ChildProcessSandbox)
        sandbox.close()
        sandbox.close()
        with pytest.raises(SandboxError):
            sandbox.run(Job("run-1", fmu_dirs["VanDerPol"], RunSpec(), DEFAULT_LIMITS))
        assert processes_mentioning(sandbox.id) == []
        assert not sandbox.dirs.root.exists()

    def test_close_from_another_thread_aborts_the_run(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        sandbox = backend.start(HANG_LIMITS)
        assert isinstance(sandbox, ChildProcessSandbox)
        assert sandbox.wait_ready(20.0)
        timer = threading.Timer(1.0, sandbox.close)
        timer.start()
        started = time.monotonic()
        outcome = sandbox.run(Job("run-1", fmu_dirs["Hostile"], RunSpec.from_wire(hostile(4)), HANG_LIMITS))
        timer.join()
        assert (outcome.status, outcome.error_code) == ("failed", "sandbox_error")
        assert outcome.error_message == "sandbox was closed during the run"
        assert time.monotonic() - started < HANG_LIMITS.deadline_s
        assert_nothing_left(sandbox)

    def test_sandbox_that_died_before_its_job_is_a_platform_failure(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path]
    ) -> None:
        sandbox = backend.start(DEFAULT_LIMITS)
        assert isinstance(sandbox, ChildProcessSandbox)
        try:
            os.kill(sandbox.pid, signal.SIGKILL)
            time.sleep(0.2)
            outcome = sandbox.run(Job("run-1", fmu_dirs["VanDerPol"], RunSpec(), DEFAULT_LIMITS))
        finally:
            sandbox.close()
        assert (outcome.status, outcome.error_code) == ("failed", "sandbox_error")
        assert_nothing_left(sandbox)

    def test_dropped_sandbox_is_cleaned_up(self, backend: SandboxBackend) -> None:
        sandbox = backend.start(DEFAULT_LIMITS)
        assert isinstance(sandbox, ChildProcessSandbox)
        assert sandbox.wait_ready(20.0)
        sandbox_id, root = sandbox.id, sandbox.dirs.root
        del sandbox
        gc.collect()
        assert processes_mentioning(sandbox_id) == []
        assert not root.exists()

    def test_job_limits_must_match_the_sandbox_except_the_deadline(
        self, backend: SandboxBackend, fmu_dirs: dict[str, Path]
    ) -> None:
        with backend.start(DEFAULT_LIMITS) as sandbox:
            bigger = dataclasses.replace(DEFAULT_LIMITS, memory_bytes=DEFAULT_LIMITS.memory_bytes * 2)
            with pytest.raises(SandboxError):
                sandbox.run(Job("run-1", fmu_dirs["VanDerPol"], RunSpec(), bigger))
            shorter = dataclasses.replace(DEFAULT_LIMITS, deadline_s=15.0)
            job = Job("run-1", fmu_dirs["VanDerPol"], RunSpec(stop_time=1.0), shorter)
            assert sandbox.run(job).status == "succeeded"

    def test_unknown_spec_variable_is_model_error(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        outcome = run_once(backend, fmu_dirs["VanDerPol"], {"start_values": {"nope": 1.0}}).outcome
        assert (outcome.status, outcome.error_code) == ("failed", "model_error")

    def test_result_larger_than_the_output_limit(self, backend: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        limits = dataclasses.replace(DEFAULT_LIMITS, max_output_bytes=64 << 10)
        spec = {"stop_time": 20.0, "output_interval": 0.001}  # ~20k rows x 3 doubles
        outcome = run_once(backend, fmu_dirs["VanDerPol"], spec, limits).outcome
        assert (outcome.status, outcome.error_code) == ("failed", "output_too_large"), outcome


class TestWithoutCgroups:
    """The rlimit fallback, as on a laptop where our cgroup is not delegated to us."""

    @pytest.fixture(params=["bwrap", "bwrap-warm", "process"])
    def fallback(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SandboxBackend]:
        if request.param == "process":
            yield ProcessBackend(work_dir=tmp_path, use_cgroups=False)
            return
        if not bwrap_usable():
            pytest.skip("bubblewrap is not installed or cannot create namespaces here")
        bwrap = BubblewrapBackend(work_dir=tmp_path, use_cgroups=False)
        if request.param == "bwrap":
            yield bwrap
            return
        warm = ZygoteBackend(bwrap)
        try:
            yield warm
        finally:
            warm.close()

    def test_runs_succeed(self, fallback: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        finished = succeeded(run_once(fallback, fmu_dirs["VanDerPol"], {"stop_time": 2.0}))
        assert finished.sandbox.resources.kind == "rlimit"

    def test_hang_is_killed_at_the_deadline(self, fallback: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        outcome = run_once(fallback, fmu_dirs["Hostile"], hostile(3), HANG_LIMITS).outcome
        assert outcome.status == "timed_out"
        assert outcome.wall_time_s < HANG_LIMITS.deadline_s + KILL_SLACK_S

    def test_memory_hog_is_memory_limit(self, fallback: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        # RLIMIT_AS makes malloc fail; the hog then dereferences NULL, and its peak RSS tells why.
        outcome = run_once(fallback, fmu_dirs["Hostile"], hostile(5)).outcome
        assert (outcome.status, outcome.error_code, outcome.signal) == ("failed", "memory_limit", "SIGSEGV"), outcome

    def test_daemon_does_not_survive_close(self, fallback: SandboxBackend, fmu_dirs: dict[str, Path]) -> None:
        succeeded(run_once(fallback, fmu_dirs["Hostile"], hostile(11)))  # asserts nothing is left


class TestBackendChoice:
    def test_process_backend_warns_that_it_isolates_little(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        backend = create_backend("process", work_dir=tmp_path)
        assert backend.name == "process"
        assert "isolates only memory and time" in caplog.text

    def test_process_backend_is_refused_in_production(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="production"):
            create_backend("process", work_dir=tmp_path, production=True)

    def test_unknown_backend_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="unknown sandbox backend"):
            create_backend("chroot", work_dir=tmp_path)


def last_probe(finished: Finished) -> float:
    assert finished.table is not None
    value = finished.table.column("probe").to_pylist()[-1]
    assert isinstance(value, float)
    return value


def test_limits_defaults_match_the_interface() -> None:
    assert Limits() == Limits(1 << 30, 60.0, 32, 256 << 20, 1 << 20, None)


# A worker that starts a run of a model that never returns, then is killed with it in flight.
_DYING_HOST = """
import sys, threading
from pathlib import Path
from app.sandbox import Job, Limits, create_backend
from app.sandbox.runner import RunSpec
from app.sandbox.warm import ZygoteBackend
limits = Limits(memory_bytes=512 << 20, deadline_s=600.0)
work_dir = Path(sys.argv[2])
warm = sys.argv[1].endswith("-warm")
backend = create_backend(sys.argv[1].removesuffix("-warm"), work_dir=work_dir)
backend = ZygoteBackend(backend) if warm else backend
sandbox = backend.start(limits)
assert sandbox.wait_ready(60)
spec = RunSpec(fmi_type="CoSimulation", start_values={"mode": 3})
threading.Thread(target=sandbox.run, args=(Job("run-1", Path(sys.argv[3]), spec, limits),), daemon=True).start()
# A forked run's processes carry its zygote's command line.
print(sandbox.tree.zygote.id if warm else sandbox.id, flush=True)
threading.Event().wait()
"""


def test_a_job_does_not_outlive_its_killed_host(
    backend: SandboxBackend, fmu_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """Nobody keeps the deadline once the host is SIGKILLed: the sandbox ends its job by itself."""
    host = subprocess.Popen([sys.executable, "-c", _DYING_HOST, backend.name, str(backend.work_dir),
                             str(fmu_dirs["Hostile"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    sandbox_id = ""
    try:
        assert host.stdout is not None and host.stderr is not None
        sandbox_id = host.stdout.readline().strip()
        assert sandbox_id.startswith("sbx-"), f"the host did not start its sandbox: {host.stderr.read()[-2000:]}"
        time.sleep(1.0)  # the busy loop is running
        assert processes_mentioning(sandbox_id), "the job is not running"
        host.kill()
        host.wait()
        deadline = time.monotonic() + 15
        while processes_mentioning(sandbox_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_mentioning(sandbox_id) == []
    finally:
        host.kill()
        host.wait()
        if sandbox_id.startswith("sbx-"):  # never match every process
            for pid in processes_mentioning(sandbox_id):
                os.kill(pid, signal.SIGKILL)
        backend.remove_leftovers()  # the dead host's stopped container and dirs, as its next start-up would
