"""Wall time of one tiny VanDerPol co-simulation: raw FMPy in-process vs each sandbox backend.

Not a test (pytest does not collect it). Run from private-api/:

    ../.venv/bin/python tests/sandbox/measure_latency.py [--repeat 10]

"cold" is start() + run() + close() as a worker without a warm pool does it; "warm" is run()
alone on a sandbox whose runner had already imported FMPy, as a warm pool would hand it out.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import fmpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fmus.build import build_fmu

from app.sandbox import Job, Limits, SandboxBackend, create_backend
from app.sandbox.child import ChildProcessSandbox
from app.sandbox.runner import RunSpec

SPEC = {"fmi_type": "CoSimulation", "stop_time": 1.0, "output_interval": 0.01}
LIMITS = Limits(deadline_s=30.0)


def time_ms(action: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def cold_run(backend: SandboxBackend, fmu_dir: Path) -> None:
    with backend.start(LIMITS) as sandbox:
        outcome = sandbox.run(Job("bench", fmu_dir, RunSpec(**SPEC), LIMITS))
        assert outcome.status == "succeeded", outcome


def warm_runs(backend: SandboxBackend, fmu_dir: Path, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        sandbox = backend.start(LIMITS)
        assert isinstance(sandbox, ChildProcessSandbox)
        try:
            assert sandbox.wait_ready(30.0)
            started = time.perf_counter()
            outcome = sandbox.run(Job("bench", fmu_dir, RunSpec(**SPEC), LIMITS))
            samples.append((time.perf_counter() - started) * 1000)
            assert outcome.status == "succeeded", outcome
        finally:
            sandbox.close()
    return samples


def report(label: str, samples: list[float]) -> None:
    print(f"{label:<34} median {statistics.median(samples):7.1f} ms   min {min(samples):7.1f} ms   n={len(samples)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fmu_dir = Path(tmp) / "VanDerPol"
        with zipfile.ZipFile(build_fmu("VanDerPol", Path(tmp))) as archive:
            archive.extractall(fmu_dir)
        fmpy.simulate_fmu(str(fmu_dir), **SPEC)  # load the shared library once, like a warm worker
        raw = time_ms(lambda: fmpy.simulate_fmu(str(fmu_dir), **SPEC), args.repeat)
        report("raw fmpy.simulate_fmu (in-process)", raw)
        for name in ("process", "bwrap", "docker"):
            backend = create_backend(name, work_dir=Path(tmp) / "sandboxes")
            cold_run(backend, fmu_dir)  # page cache, cgroup hierarchy
            cold = time_ms(functools.partial(cold_run, backend, fmu_dir), args.repeat)
            report(f"{name}: start()+run()+close()", cold)
            report(f"{name}: run() on a warm sandbox", warm_runs(backend, fmu_dir, args.repeat))


if __name__ == "__main__":
    main()
