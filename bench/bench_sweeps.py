"""Sweep throughput: one Sobol sweep through the gateway beside raw FMPy on the same samples in a
``multiprocessing.Pool`` of as many processes, on an extracted FMU; prints runs/s and the ratio.

    .venv/bin/python bench/bench_sweeps.py [--fmu MassSpringSystem|VanDerPol] [--samples 1000]
                                           [--setup embedded workers] [--processes 2] [--rounds 3]

``embedded``: ``make run``'s defaults (SQLite, the API's own worker threads). ``workers``: an API
process that only enqueues, PostgreSQL, the machine's Redis and ``--processes`` worker processes,
on the settings an operator runs (not the tests' short leases and re-sends). MassSpringSystem is
OpenModelica's, from the ``gemseo-fmu`` package (fetched once into var/); its sweep varies three
of its start values.

This machine's speed drifts by tens of percent from one minute to the next, so raw FMPy and the
gateway take turns (``--rounds`` pairs on one gateway); each pair gives a ratio, and the median
ratio is the figure. Each side's CPU per run (the whole machine's, /proc/stat) shows where the
rate goes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "private-api" / "tests"), str(REPO_ROOT / "private-api" / "tests" / "api")]

import fmpy
import httpx
from fmu_gateway_sdk import FMUGatewayClient
from models import bench_fmu, bench_gateway
from redis_keys import REDIS_URL
from scipy.stats import qmc
from test_workers import cluster

# An operator's defaults (app.config) instead of the fault tests' short leases and quick re-sends,
# which would re-send every child still queued after 4 s.
OPERATOR_DEFAULTS = {"FMU_GATEWAY_RUN_LEASE_S": "30", "FMU_GATEWAY_DISPATCH_POLL_S": "2",
                     "FMU_GATEWAY_DISPATCH_REDELIVER_S": "120", "FMU_GATEWAY_WORKER_DRAIN_S": "30"}

# Per FMU: the spec both sides run, and the start values the sweep varies (min, max).
MODELS: dict[str, tuple[dict[str, Any], dict[str, tuple[float, float]]]] = {
    "MassSpringSystem": ({}, {"k1": (0.5, 2.0), "k2": (0.5, 2.0), "m1": (0.5, 2.0)}),
    "VanDerPol": ({"stop_time": 1.0, "output_interval": 0.01}, {"mu": (0.5, 3.0)}),
}
TIMEOUT_S = 30


def samples_of(ranges: dict[str, tuple[float, float]], n: int, seed: int) -> list[dict[str, float]]:
    with warnings.catch_warnings():  # any sample count, as the gateway allows; balance is not the point here
        warnings.simplefilter("ignore", UserWarning)
        unit = qmc.Sobol(len(ranges), seed=seed).random(n)
    scaled = qmc.scale(unit, [lo for lo, _ in ranges.values()], [hi for _, hi in ranges.values()])
    return [dict(zip(ranges, map(float, row), strict=True)) for row in scaled]


def _raw(args: tuple[str, dict[str, Any], dict[str, float]]) -> int:
    path, spec, start_values = args
    return len(fmpy.simulate_fmu(path, start_values=start_values, **spec))


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle, since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def raw_rate(extracted: Path, spec: dict[str, Any], samples: list[dict[str, float]],
             processes: int) -> tuple[float, float]:
    """A user's own FMPy: one simulate_fmu per sample, on the extracted FMU, in a process pool.
    Returns (runs/s, machine CPU-s per run)."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_raw, [(str(extracted), spec, samples[0])] * processes)  # imports done before the clock
        busy, started = machine_busy_s(), time.perf_counter()
        pool.map(_raw, [(str(extracted), spec, s) for s in samples], chunksize=1)
        elapsed = time.perf_counter() - started
        return len(samples) / elapsed, (machine_busy_s() - busy) / len(samples)


def upload_and_warm(client: httpx.Client, fmu: Path, spec: dict[str, Any], ranges: dict[str, tuple[float, float]],
                    warm_runs: int) -> str:
    fmu_id = str(client.post("/v1/fmus", files={"file": (fmu.name, fmu.read_bytes())}).json()["id"])
    lo = {name: low for name, (low, _) in ranges.items()}
    # Every sweep here is executed: the run cache would answer a repeated one without a sandbox.
    warm = {"method": "list", "parameters": [lo] * warm_runs, "timeout_s": TIMEOUT_S, "cache": False, **spec}
    finish(client, client.post(f"/v1/fmus/{fmu_id}/sweeps", json=warm).json()["id"])  # caches and sandboxes warm
    return fmu_id


def sweep_rate(client: httpx.Client, fmu_id: str, spec: dict[str, Any], ranges: dict[str, tuple[float, float]],
               samples: int, seed: int) -> tuple[float, float]:
    """One Sobol sweep through the gateway, followed as the SDK follows one (its Server-Sent
    Events): (runs/s, machine CPU-s per run)."""
    body = {"method": "sobol", "samples": samples, "seed": seed, "timeout_s": TIMEOUT_S, "cache": False, **spec,
            "parameters": {name: {"min": low, "max": high} for name, (low, high) in ranges.items()}}
    api_key = client.headers["Authorization"].removeprefix("Bearer ")
    with FMUGatewayClient(api_key, str(client.base_url), max_retries=0) as sdk:
        busy, started = machine_busy_s(), time.perf_counter()
        sweep = sdk.sweeps.wait(client.post(f"/v1/fmus/{fmu_id}/sweeps", json=body).json()["id"])
        elapsed = time.perf_counter() - started
    assert sweep.counts.succeeded == samples, sweep.counts
    return samples / elapsed, (machine_busy_s() - busy) / samples


def finish(client: httpx.Client, sweep_id: str) -> dict[str, Any]:
    while (sweep := client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "finished":
        time.sleep(0.05)
    return sweep


@contextmanager
def embedded(processes: int) -> Iterator[httpx.Client]:
    with bench_gateway(FMU_GATEWAY_WORKERS=str(processes)) as gateway:
        yield gateway.client(gateway.create_user(credits=10_000_000, tier="enterprise"))


@contextmanager
def workers(processes: int, threads: int | None = None) -> Iterator[httpx.Client]:
    overrides = {**OPERATOR_DEFAULTS, **({"FMU_GATEWAY_WORKERS": str(threads)} if threads else {})}
    with cluster(f"bench-sweep-{processes}w", REDIS_URL, workers=processes, **overrides) as c:
        yield c.gateway.client(c.gateway.create_user(credits=10_000_000, tier="enterprise"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmu", choices=sorted(MODELS), default="MassSpringSystem")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--setup", choices=["embedded", "workers"], nargs="+", default=["embedded", "workers"])
    parser.add_argument("--processes", type=int, default=2, help="raw pool size = gateway worker threads/processes")
    parser.add_argument("--worker-threads", type=int, default=None,
                        help="threads of each worker process (default: the worker's own, one per CPU)")
    parser.add_argument("--rounds", type=int, default=3, help="raw and gateway sweeps, in turns, per setup")
    args = parser.parse_args()
    spec, ranges = MODELS[args.fmu]
    with tempfile.TemporaryDirectory() as tmp:
        fmu = bench_fmu(args.fmu, Path(tmp))
        extracted = Path(fmpy.extract(str(fmu), unzipdir=str(Path(tmp) / "extracted")))
        print(f"Sobol sweep of {args.samples} {args.fmu} runs over {', '.join(ranges)} "
              f"({spec or 'model defaults'}); {multiprocessing.cpu_count()} CPUs; fmpy {fmpy.__version__}")
        print(f"{'setup':>9} | {'raw FMPy Pool(' + str(args.processes) + ')':>16} | {'gateway sweep':>14} | ratio"
              f" | CPU per run (ms): raw, gateway")
        for setup in args.setup:
            gateway = (embedded(args.processes) if setup == "embedded"
                       else workers(args.processes, args.worker_threads))
            ratios: list[float] = []
            with gateway as client:
                fmu_id = upload_and_warm(client, fmu, spec, ranges, warm_runs=4 * args.processes)
                for round_ in range(args.rounds):
                    samples = samples_of(ranges, args.samples, seed=1 + round_)  # what the sweep draws
                    raw, raw_cpu = raw_rate(extracted, spec, samples, args.processes)
                    rate, cpu = sweep_rate(client, fmu_id, spec, ranges, args.samples, seed=1 + round_)
                    ratios.append(rate / raw)
                    print(f"{setup:>9} | {raw:>11.1f} runs/s | {rate:>9.1f} runs/s | {rate / raw:.2f}x"
                          f" | {raw_cpu * 1000:.1f}, {cpu * 1000:.1f}", flush=True)
            print(f"{setup:>9}: median of {args.rounds} rounds {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
