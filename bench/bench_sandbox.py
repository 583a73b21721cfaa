"""The sandbox layer alone against raw FMPy: how many single runs per second warm sandboxes give
with no HTTP, database or queue in front of them; prints the ratio to a raw FMPy pool.

    .venv/bin/python bench/bench_sandbox.py [--fmu MassSpringSystem|VanDerPol] [--runs 400] [--threads 2]

What a worker does for each single run, from ``--threads`` threads at once: a sandbox forked from
the tenant's warm zygote (``SandboxPool.acquire``), the job run, the result left in place, the
sandbox closed, against ``fmpy.simulate_fmu`` in a ``multiprocessing.Pool`` of as many processes.
This is the ceiling of the gateway's concurrent single runs (the "200 concurrent runs" of
``bench_runs.py``) on this machine: an API that cost nothing would reach it, not pass it. The CPU
per run is split between this process (the host side: dirs, cgroups, pipes, the outcome) and the
rest of the machine (the zygote, each run's processes, the kernel).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import fmpy
from app.sandbox import Job, Limits, create_backend
from app.sandbox.pool import SandboxPool
from app.sandbox.runner import RunSpec
from app.sandbox.warm import Reuse
from bench_runs import machine_busy_s
from models import bench_fmu

SPECS = {"VanDerPol": {"stop_time": 10.0, "output_interval": 0.01}, "MassSpringSystem": {}}


def raw_run(path: str, spec: dict[str, float]) -> None:
    fmpy.simulate_fmu(path, **spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmu", choices=sorted(SPECS), default="MassSpringSystem")
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec = SPECS[args.fmu]

    work = Path(tempfile.mkdtemp(prefix="fmu-bench-"))
    try:
        fmu = bench_fmu(args.fmu, work)
        fmu_dir = work / "extracted"
        with zipfile.ZipFile(fmu) as archive:
            archive.extractall(fmu_dir)
        os.chmod(work, 0o755)  # the sandbox's user reads the extracted FMU, as the FMU cache's
        limits = Limits(deadline_s=60.0)
        pool = SandboxPool(create_backend("bwrap", work_dir=work / "sandboxes"), limits, 1, Reuse(max_runs=10**9))
        pool.start()
        try:
            ratios = [measure(pool, limits, fmu, fmu_dir, spec, args) for _ in range(args.rounds)]
        finally:
            pool.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios.sort()
    print(f"sandbox layer alone vs raw FMPy Pool({args.threads}), {args.fmu}: median of {args.rounds} rounds "
          f"{ratios[len(ratios) // 2]:.2f}x")


def measure(pool: SandboxPool, limits: Limits, fmu: Path, fmu_dir: Path, spec: dict[str, float],
            args: argparse.Namespace) -> float:
    """One round: raw FMPy, then the sandboxes, the same number of runs; prints both, returns the ratio."""
    with multiprocessing.get_context("fork").Pool(args.threads) as raw:
        raw.starmap(raw_run, [(str(fmu), spec)] * args.threads)
        busy, started = machine_busy_s(), time.perf_counter()
        raw.starmap(raw_run, [(str(fmu), spec)] * args.runs)
        raw_rate = args.runs / (time.perf_counter() - started)
        raw_cpu = (machine_busy_s() - busy) / args.runs

    def one() -> None:
        sandbox = pool.acquire(limits, "bench")
        try:
            outcome = sandbox.run(Job("bench", fmu_dir, RunSpec.from_wire(spec), limits))
            assert outcome.status == "succeeded", outcome
        finally:
            sandbox.remove_files()
            sandbox.close(wait=False)

    def loop(count: int) -> None:
        for _ in range(count):
            one()

    for _ in range(10):  # the tenant's zygote started, its first runs forked
        one()
    time.sleep(0.5)
    per_thread = args.runs // args.threads
    threads = [threading.Thread(target=loop, args=(per_thread,)) for _ in range(args.threads)]
    host, busy, started = os.times(), machine_busy_s(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    time.sleep(0.5)  # closed sandboxes end in the background: their CPU counts too
    runs = per_thread * args.threads
    now = os.times()
    host_cpu = (now.user + now.system - host.user - host.system) / runs
    all_cpu = (machine_busy_s() - busy) / runs
    rate = runs / elapsed
    print(f"raw FMPy {raw_rate:6.1f} runs/s, {raw_cpu * 1000:5.1f} ms CPU per run | sandboxes {rate:6.1f} runs/s, "
          f"{all_cpu * 1000:5.1f} ms CPU per run (host side {host_cpu * 1000:.1f}, sandboxes and kernel "
          f"{(all_cpu - host_cpu) * 1000:.1f}) | {rate / raw_rate:.2f}x")
    return rate / raw_rate


if __name__ == "__main__":
    main()
