"""Sweep throughput: one Sobol sweep through the gateway beside raw FMPy on the same samples in a
``multiprocessing.Pool`` of as many processes, on an extracted FMU; prints runs/s and the ratio.

    .venv/bin/python bench/bench_sweeps.py [--fmu MassSpringSystem|VanDerPol] [--samples 1000]
                                           [--setup embedded workers] [--processes 2]

``embedded``: ``make run``'s defaults (SQLite, the API's own worker threads). ``workers``: an API
process that only enqueues, PostgreSQL, the machine's Redis and ``--processes`` worker processes
of one thread each. MassSpringSystem is OpenModelica's, from the ``gemseo-fmu`` package (fetched
once into var/); its sweep varies three of its start values.
"""

from __future__ import annotations

import argparse
import multiprocessing
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
from models import bench_fmu, bench_gateway
from redis_keys import REDIS_URL
from scipy.stats import qmc
from test_workers import cluster

# Per FMU: the spec both sides run, and the start values the sweep varies (min, max).
MODELS: dict[str, tuple[dict[str, Any], dict[str, tuple[float, float]]]] = {
    "MassSpringSystem": ({}, {"k1": (0.5, 2.0), "k2": (0.5, 2.0), "m1": (0.5, 2.0)}),
    "VanDerPol": ({"stop_time": 1.0, "output_interval": 0.01}, {"mu": (0.5, 3.0)}),
}
TIMEOUT_S = 30


def samples_of(ranges: dict[str, tuple[float, float]], n: int) -> list[dict[str, float]]:
    with warnings.catch_warnings():  # any sample count, as the gateway allows; balance is not the point here
        warnings.simplefilter("ignore", UserWarning)
        unit = qmc.Sobol(len(ranges), seed=1).random(n)
    scaled = qmc.scale(unit, [lo for lo, _ in ranges.values()], [hi for _, hi in ranges.values()])
    return [dict(zip(ranges, map(float, row), strict=True)) for row in scaled]


def _raw(args: tuple[str, dict[str, Any], dict[str, float]]) -> int:
    path, spec, start_values = args
    return len(fmpy.simulate_fmu(path, start_values=start_values, **spec))


def raw_rate(extracted: Path, spec: dict[str, Any], samples: list[dict[str, float]], processes: int) -> float:
    """A user's own FMPy: one simulate_fmu per sample, on the extracted FMU, in a process pool."""
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_raw, [(str(extracted), spec, samples[0])] * processes)  # imports done before the clock
        started = time.perf_counter()
        pool.map(_raw, [(str(extracted), spec, s) for s in samples], chunksize=1)
        return len(samples) / (time.perf_counter() - started)


def sweep_rate(client: httpx.Client, fmu: Path, spec: dict[str, Any], ranges: dict[str, tuple[float, float]],
               samples: int, warm_runs: int) -> float:
    fmu_id = client.post("/v1/fmus", files={"file": (fmu.name, fmu.read_bytes())}).json()["id"]
    lo = {name: low for name, (low, _) in ranges.items()}
    warm = {"method": "list", "parameters": [lo] * warm_runs, "timeout_s": TIMEOUT_S, **spec}
    finish(client, client.post(f"/v1/fmus/{fmu_id}/sweeps", json=warm).json()["id"])  # caches and sandboxes warm
    body = {"method": "sobol", "samples": samples, "seed": 1, "timeout_s": TIMEOUT_S, **spec,
            "parameters": {name: {"min": low, "max": high} for name, (low, high) in ranges.items()}}
    started = time.perf_counter()
    sweep = finish(client, client.post(f"/v1/fmus/{fmu_id}/sweeps", json=body).json()["id"])
    elapsed = time.perf_counter() - started
    assert sweep["counts"]["succeeded"] == samples, sweep["counts"]
    return samples / elapsed


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
    overrides = {"FMU_GATEWAY_WORKERS": str(threads)} if threads else {}
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
    args = parser.parse_args()
    spec, ranges = MODELS[args.fmu]
    samples = samples_of(ranges, args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        fmu = bench_fmu(args.fmu, Path(tmp))
        extracted = Path(fmpy.extract(str(fmu), unzipdir=str(Path(tmp) / "extracted")))
        print(f"Sobol sweep of {args.samples} {args.fmu} runs over {', '.join(ranges)} "
              f"({spec or 'model defaults'}); {multiprocessing.cpu_count()} CPUs; fmpy {fmpy.__version__}")
        print(f"{'setup':>9} | {'raw FMPy Pool(' + str(args.processes) + ')':>16} | {'gateway sweep':>14} | ratio")
        for setup in args.setup:
            raw = raw_rate(extracted, spec, samples, args.processes)
            gateway = (embedded(args.processes) if setup == "embedded"
                       else workers(args.processes, args.worker_threads))
            with gateway as client:
                rate = sweep_rate(client, fmu, spec, ranges, args.samples, warm_runs=4 * args.processes)
            print(f"{setup:>9} | {raw:>11.1f} runs/s | {rate:>9.1f} runs/s | {rate / raw:.2f}x")


if __name__ == "__main__":
    main()
