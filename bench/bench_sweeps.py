"""Sweep throughput: one sweep of short VanDerPol runs through an API process that only enqueues
and 1, 2, 4 ``fmu-gateway-admin worker`` processes (PostgreSQL, the machine's Redis), beside raw
FMPy on the same samples in a multiprocessing pool of as many processes. Prints runs/s and ratios.

    .venv/bin/python bench/bench_sweeps.py [--samples 200] [--workers 1 2 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "private-api" / "tests"), str(REPO_ROOT / "private-api" / "tests" / "api")]

import fmpy
from fmus.build import build_fmu
from redis_keys import REDIS_URL
from scipy.stats import qmc
from test_workers import cluster

SPEC: dict[str, Any] = {"stop_time": 1.0, "output_interval": 0.01, "timeout_s": 30}
RANGE = {"mu": (0.5, 3.0)}


def _raw(args: tuple[str, float]) -> None:
    path, mu = args
    fmpy.simulate_fmu(path, start_values={"mu": mu}, stop_time=SPEC["stop_time"],
                      output_interval=SPEC["output_interval"])


def raw_rate(path: Path, samples: int, processes: int) -> float:
    with warnings.catch_warnings():  # any sample count, as the gateway allows; balance is not the point here
        warnings.simplefilter("ignore", UserWarning)
        unit = qmc.Sobol(1, seed=1).random(samples)
    values = qmc.scale(unit, [RANGE["mu"][0]], [RANGE["mu"][1]])[:, 0]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_raw, [(str(path), 1.0)] * processes)  # imports done before the clock starts
        started = time.perf_counter()
        pool.map(_raw, [(str(path), float(v)) for v in values], chunksize=1)
        return samples / (time.perf_counter() - started)


def gateway_rate(path: Path, samples: int, workers: int, threads: int) -> float:
    with cluster(f"bench-sweep-{workers}w", REDIS_URL, workers=workers, FMU_GATEWAY_WORKERS=str(threads)) as c:
        client = c.gateway.client(c.gateway.create_user(credits=1_000_000, tier="enterprise"))
        fmu_id = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())}).json()["id"]
        warm = {"method": "list", "parameters": [{"mu": 1.0}] * (2 * workers * threads), **SPEC}
        sweep = client.post(f"/v1/fmus/{fmu_id}/sweeps", json=warm).json()  # every worker caches the FMU
        while client.get(f"/v1/sweeps/{sweep['id']}").json()["status"] != "finished":
            time.sleep(0.2)
        started = time.perf_counter()
        body = {"method": "sobol", "samples": samples, "seed": 1,
                "parameters": {"mu": {"min": RANGE["mu"][0], "max": RANGE["mu"][1]}}, **SPEC}
        sweep = client.post(f"/v1/fmus/{fmu_id}/sweeps", json=body).json()
        while (sweep := client.get(f"/v1/sweeps/{sweep['id']}").json())["status"] != "finished":
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        assert sweep["counts"]["succeeded"] == samples, sweep["counts"]
        return samples / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--threads", type=int, default=1, help="Sandboxes at once per worker process.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_fmu("VanDerPol", Path(tmp))
        print(f"sweep of {args.samples} VanDerPol runs (stop 1 s, output every 0.01 s), "
              f"{multiprocessing.cpu_count()} CPUs")
        print(f"{'processes':>9} | {'raw FMPy pool':>14} | {'gateway sweep':>14} | ratio")
        for n in args.workers:
            raw = raw_rate(path, args.samples, n * args.threads)
            gateway = gateway_rate(path, args.samples, n, args.threads)
            print(f"{n * args.threads:>9} | {raw:>9.1f} runs/s | {gateway:>9.1f} runs/s | {gateway / raw:.3f}x")


if __name__ == "__main__":
    main()
