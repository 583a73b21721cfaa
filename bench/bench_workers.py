"""Run throughput through Dramatiq workers: a batch of short VanDerPol runs submitted to an API
process that only enqueues, executed by 1, 2, ... ``fmu-gateway-admin worker`` processes
(PostgreSQL, the machine's Redis). Prints runs/s per worker count.

    .venv/bin/python bench/bench_workers.py [--runs 200] [--workers 1 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "private-api" / "tests"), str(REPO_ROOT / "private-api" / "tests" / "api")]

import httpx
from fmus.build import build_fmu
from redis_keys import REDIS_URL
from test_workers import FINAL, cluster

SPEC = {"stop_time": 1.0, "output_interval": 0.01, "cache": False}  # executed, each one


def measure(path: Path, runs: int, workers: int, threads: int) -> float:
    with cluster(f"bench-{workers}w", REDIS_URL, workers=workers, FMU_GATEWAY_WORKERS=str(threads)) as c:
        client = c.gateway.client(c.gateway.create_user(credits=100_000, tier="enterprise"))
        fmu_id = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())}).json()["id"]
        client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json=SPEC)  # warm the workers' FMU caches
        client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json=SPEC)
        started = time.perf_counter()

        def submit(_: int) -> str:
            with httpx.Client(base_url=c.gateway.base_url, headers=client.headers, timeout=60) as own:
                return str(own.post(f"/v1/fmus/{fmu_id}/runs", json=SPEC).json()["id"])

        with ThreadPoolExecutor(8) as pool:
            run_ids = list(pool.map(submit, range(runs)))
        for run_id in run_ids:
            while (run := client.get(f"/v1/runs/{run_id}", params={"wait": 30}).json())["status"] not in FINAL:
                pass
            assert run["status"] == "succeeded", run
        return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2, help="Threads (sandboxes) per worker process.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_fmu("VanDerPol", Path(tmp))
        results = {n: measure(path, args.runs, n, args.threads) for n in args.workers}
    base = results[args.workers[0]]
    for n, rate in results.items():
        print(f"{n} worker(s) x {args.threads} thread(s): {rate:6.1f} runs/s  ({rate / base:.2f}x)")


if __name__ == "__main__":
    main()
