"""Gateway vs raw FMPy on the same FMU, in the same process run; prints ratios.

    .venv/bin/python bench/bench_runs.py [--fmu VanDerPol|MassSpringSystem] [--runs 30] [--concurrent 40]
                                         [--workers 2] [--sandbox bwrap] [--no-reuse]

MassSpringSystem is OpenModelica's, from the ``gemseo-fmu`` package (fetched once into var/).

Latency: one run at a time, end to end as a user runs it: the SDK's ``simulate()`` (one request:
submit, wait, and the Arrow result in the answer) and its values as a NumPy array, against ``fmpy.simulate_fmu`` in this
process. Throughput: ``--concurrent`` runs submitted at once against raw FMPy in a multiprocessing
pool of ``--workers`` processes, with the CPU each run cost (the API process's own, and the rest of
the machine's: sandboxes and kernel). Breakdown: where a spaced run's time goes, from the client's
clock and the run's own timings.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fmpy
from fmu_gateway_sdk import FMUGatewayClient
from models import bench_fmu, bench_gateway

# The same spec for raw FMPy and the gateway; the third-party model runs on its own defaults.
SPECS: dict[str, dict[str, float]] = {
    "VanDerPol": {"stop_time": 10.0, "output_interval": 0.01},
    "MassSpringSystem": {},
}
SPEC: dict[str, float] = {}


def raw_run(path: str) -> None:
    fmpy.simulate_fmu(path, **SPEC)


# Per-run phases of the gateway runs (seconds), for the breakdown.
PHASES: dict[str, list[float]] = {}


def gateway_run(client: FMUGatewayClient, fmu_id: str, breakdown: bool = True) -> float:
    """What a user does: the SDK's ``simulate()`` (submit, wait and download in one request), then the values as
    FMPy would return them. Returns its seconds; the run's record (read afterwards, off the
    clock: ``simulate`` does not need it) gives the breakdown."""
    started = time.perf_counter()
    result = client.simulate(fmu_id, **SPEC, cache=False)  # executed, each one: the run cache is not measured
    result.to_numpy()
    elapsed = time.perf_counter() - started
    if not breakdown:
        return elapsed
    timings = result.run.timings
    for phase, seconds in (("client", elapsed), ("queued", timings.queued_s),
                           ("sandbox", timings.run_s), ("server", timings.total_s)):
        PHASES.setdefault(phase, []).append(seconds or 0.0)
    return elapsed


def print_breakdown(raw_ms: float, phases: dict[str, list[float]]) -> None:
    """Where a one-at-a-time run's time goes, median ms: what the client waits, what the server
    records (queued: submission to a sandbox; sandbox: the sandboxed run's wall time; server:
    submission to final), and what is left for HTTP, authentication and the database."""
    ms = {phase: statistics.median(samples) * 1000 for phase, samples in phases.items()}
    rows = [
        ("client: simulate(), values in hand", ms["client"]),
        ("  server: submission to final", ms["server"]),
        ("    queued (dispatch to a sandbox)", ms["queued"]),
        ("    sandboxed run (wall)", ms["sandbox"]),
        ("    of which raw FMPy would take", raw_ms),
        ("    settle, store, notify", ms["server"] - ms["queued"] - ms["sandbox"]),
        ("  HTTP (1 request), auth, hold, insert, download, decode", ms["client"] - ms["server"]),
    ]
    print("breakdown of the spaced gateway runs (median ms):")
    for label, value in rows:
        print(f"  {label:58}{value:8.1f}")


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle, since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of one process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def paired_median_ms(raw: Callable[[], object], gateway: Callable[[], float], runs: int,
                     pause_s: float = 0.0) -> tuple[float, float]:
    """Median ms of raw FMPy and of the gateway, run in turns (raw, gateway, raw, ...), each after
    ``pause_s``: this machine's speed drifts by tens of percent from one minute to the next, and
    taken in turns both see the same drift. The gateway's figure is its own clock (it returns
    seconds)."""
    raw()  # warm-up
    gateway()
    raw_s: list[float] = []
    gateway_s: list[float] = []
    for _ in range(runs):
        time.sleep(pause_s)
        started = time.perf_counter()
        raw()
        raw_s.append(time.perf_counter() - started)
        time.sleep(pause_s)
        gateway_s.append(gateway())
    return statistics.median(raw_s) * 1000, statistics.median(gateway_s) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmu", choices=sorted(SPECS), default="VanDerPol")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between spaced runs")
    parser.add_argument("--sandbox", choices=["bwrap", "docker", "process"], default="bwrap",
                        help="the gateway's sandbox backend (docker: needs an engine and `make build`)")
    parser.add_argument("--no-reuse", action="store_true", help="a new sandbox per run (FMU_GATEWAY_SANDBOX_REUSE)")
    args = parser.parse_args()
    SPEC.update(SPECS[args.fmu])

    work = Path(tempfile.mkdtemp(prefix="fmu-bench-"))
    fmu = bench_fmu(args.fmu, work)
    with bench_gateway(FMU_GATEWAY_WORKERS=str(args.workers), FMU_GATEWAY_SANDBOX=args.sandbox,
                       FMU_GATEWAY_SANDBOX_REUSE=str(not args.no_reuse).lower()) as gateway:
        # Enough concurrent runs and requests for the throughput burst: a bench measures, not throttles.
        api_key = gateway.create_user(credits=10_000_000, tier="enterprise")
        client = FMUGatewayClient(api_key, gateway.base_url, max_retries=0)
        fmu_id = client.fmus.upload(fmu).id

        raw_ms, gw_ms = paired_median_ms(lambda: raw_run(str(fmu)), lambda: gateway_run(client, fmu_id), args.runs)
        PHASES.clear()  # the breakdown is of the spaced runs, when the warm pool is full
        # Spaced runs: the warm pool has refilled before each one, as at a moderate load; raw FMPy
        # after the same pause (an idle second costs both their caches).
        raw_spaced_ms, gw_spaced_ms = paired_median_ms(lambda: raw_run(str(fmu)), lambda: gateway_run(client, fmu_id),
                                                       args.runs, pause_s=args.pause)
        spaced = dict(PHASES)
        PHASES.clear()

        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            pool.map(raw_run, [str(fmu)] * args.workers)
            busy, started = machine_busy_s(), time.perf_counter()
            pool.map(raw_run, [str(fmu)] * args.concurrent)
            raw_tput = args.concurrent / (time.perf_counter() - started)
            raw_cpu = (machine_busy_s() - busy) / args.concurrent
        # One client per user, as 200 users would have (and one connection each).
        clients = [FMUGatewayClient(api_key, gateway.base_url, max_retries=0) for _ in range(args.concurrent)]
        with ThreadPoolExecutor(args.concurrent) as threads:
            busy, server, own = machine_busy_s(), process_cpu_s(gateway.process.pid), process_cpu_s(os.getpid())
            started = time.perf_counter()
            list(threads.map(lambda user: gateway_run(user, fmu_id, breakdown=False), clients))
            gw_tput = args.concurrent / (time.perf_counter() - started)
            server = (process_cpu_s(gateway.process.pid) - server) / args.concurrent
            own = (process_cpu_s(os.getpid()) - own) / args.concurrent
            sandboxes = (machine_busy_s() - busy) / args.concurrent - server - own
        for user in clients:
            user.close()
    shutil.rmtree(work, ignore_errors=True)

    mode = "a new sandbox per run" if args.no_reuse else "warm sandboxes"
    print(f"FMU: {args.fmu} ({SPEC or 'model defaults'}); {args.workers} workers; {args.sandbox} sandbox, {mode}; "
          f"fmpy {fmpy.__version__}")
    print(f"{'':34}{'raw FMPy':>12}{'gateway':>12}{'ratio':>9}")
    print(f"{'latency, median of ' + str(args.runs) + ' runs (ms)':34}{raw_ms:12.1f}{gw_ms:12.1f}"
          f"{gw_ms / raw_ms:8.1f}x")
    print(f"{'  same, ' + str(args.pause) + ' s apart (ms)':34}{raw_spaced_ms:12.1f}{gw_spaced_ms:12.1f}"
          f"{gw_spaced_ms / raw_spaced_ms:8.1f}x")
    print(f"{'throughput, ' + str(args.concurrent) + ' runs (runs/s)':34}{raw_tput:12.1f}{gw_tput:12.1f}"
          f"{gw_tput / raw_tput:8.2f}x")
    print(f"CPU per run in that burst (ms): raw FMPy {raw_cpu * 1000:.1f}; gateway {(server + sandboxes) * 1000:.1f} = "
          f"API process {server * 1000:.1f} + sandboxes and kernel {sandboxes * 1000:.1f} "
          f"(the benchmark's clients: {own * 1000:.1f})")
    print_breakdown(raw_spaced_ms, spaced)


if __name__ == "__main__":
    main()
