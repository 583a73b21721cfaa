"""Server memory over many runs: the API process's RSS, sampled as runs go by; prints its growth.

    .venv/bin/python bench/bench_memory.py [--runs 10000] [--clients 8] [--fmu MassSpringSystem]

Runs go through the SDK's ``simulate()`` from ``--clients`` threads against ``make run`` defaults
(embedded workers, bwrap, warm sandboxes, SQLite). The first 500 runs warm the server up (imports,
caches, the tenant's warm sandbox); growth is measured from there. The target (issue "Speed"): at
most 50 MB over 10,000 runs. Raw FMPy is timed in the same process run for the throughput ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fmpy
from fmu_gateway_sdk import FMUGatewayClient
from models import bench_fmu, bench_gateway

WARM_UP_RUNS = 500


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raw_run(path: str) -> None:
    fmpy.simulate_fmu(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmu", choices=["VanDerPol", "MassSpringSystem"], default="MassSpringSystem")
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--every", type=int, default=1000, help="runs between RSS samples")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fmu-bench-"))
    fmu = bench_fmu(args.fmu, work)
    samples: list[tuple[int, int]] = []
    with bench_gateway() as gateway:
        api_key = gateway.create_user(credits=100_000_000, tier="enterprise")
        client = FMUGatewayClient(api_key, gateway.base_url, max_retries=0)
        fmu_id = client.fmus.upload(fmu).id
        pid = gateway.process.pid

        def run(_: int) -> None:
            client.simulate(fmu_id, cache=False)  # executed, each one, not answered from the run cache

        with ThreadPoolExecutor(args.clients) as threads:
            list(threads.map(run, range(WARM_UP_RUNS)))
            samples.append((0, rss_bytes(pid)))
            started = time.perf_counter()
            done = 0
            while done < args.runs:
                batch = min(args.every, args.runs - done)
                list(threads.map(run, range(batch)))
                done += batch
                samples.append((done, rss_bytes(pid)))
                print(f"  {done:>6} runs: server RSS {samples[-1][1] / 2**20:7.1f} MiB", flush=True)
            gw_tput = args.runs / (time.perf_counter() - started)

        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(raw_run, [str(fmu)] * 2)
            started = time.perf_counter()
            pool.map(raw_run, [str(fmu)] * 500)
            raw_tput = 500 / (time.perf_counter() - started)
    shutil.rmtree(work, ignore_errors=True)

    base, last = samples[0][1], samples[-1][1]
    peak = max(rss for _, rss in samples)
    print(f"FMU: {args.fmu}; {args.runs} runs after {WARM_UP_RUNS} to warm up, {args.clients} clients; "
          f"fmpy {fmpy.__version__}")
    print(f"server RSS after warm-up {base / 2**20:.1f} MiB, after {args.runs} runs {last / 2**20:.1f} MiB, "
          f"peak {peak / 2**20:.1f} MiB: growth {(last - base) / 2**20:+.1f} MiB (target <= 50)")
    print(f"throughput meanwhile {gw_tput:.1f} runs/s; raw FMPy Pool(2) {raw_tput:.1f} runs/s "
          f"({gw_tput / raw_tput:.2f}x)")


if __name__ == "__main__":
    main()
