"""Gateway vs raw FMPy on the same FMU, in the same process run; prints ratios.

    .venv/bin/python bench/bench_runs.py [--fmu VanDerPol|MassSpringSystem] [--runs 30] [--concurrent 40]
                                         [--workers 2] [--sandbox bwrap] [--no-reuse]

MassSpringSystem is OpenModelica's, from the ``gemseo-fmu`` package (fetched once into var/).

Latency: one run at a time, end to end through HTTP (submit with ?wait=, then download the
Arrow result) against ``fmpy.simulate_fmu`` in this process. Throughput: ``--concurrent``
runs submitted at once against raw FMPy in a multiprocessing pool of ``--workers`` processes.
Breakdown: where a spaced run's time goes, from the client's clock and the run's own timings.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "private-api" / "tests"), str(REPO_ROOT / "private-api" / "tests" / "api")]

import fmpy
import httpx
from gateway_process import start_gateway, stop_gateway
from models import bench_fmu

# The same spec for raw FMPy and the gateway; the third-party model runs on its own defaults.
SPECS: dict[str, dict[str, float]] = {
    "VanDerPol": {"stop_time": 10.0, "output_interval": 0.01},
    "MassSpringSystem": {},
}
SPEC: dict[str, float] = {}


def raw_run(path: str) -> int:
    return len(fmpy.simulate_fmu(path, **SPEC))


# Per-run phases of the gateway runs (seconds), for the breakdown.
PHASES: dict[str, list[float]] = {}


def gateway_run(client: httpx.Client, fmu_id: str) -> int:
    started = time.perf_counter()
    run = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 120}, json=SPEC).json()
    answered = time.perf_counter()
    assert run["status"] == "succeeded", run
    size = len(client.get(f"/v1/runs/{run['id']}/result").content)
    timings = run["timings"]
    for phase, seconds in (("answer", answered - started), ("download", time.perf_counter() - answered),
                           ("queued", timings["queued_s"]), ("sandbox", timings["run_s"]),
                           ("server", timings["total_s"])):
        PHASES.setdefault(phase, []).append(seconds)
    return size


def print_breakdown(raw_ms: float, phases: dict[str, list[float]]) -> None:
    """Where a one-at-a-time run's time goes, median ms: what the client waits, what the server
    records (queued: submission to a sandbox; sandbox: the sandboxed run's wall time; server:
    submission to final), and what is left for HTTP, authentication and the database."""
    ms = {phase: statistics.median(samples) * 1000 for phase, samples in phases.items()}
    rows = [
        ("client: submit until the answer", ms["answer"]),
        ("  server: submission to final", ms["server"]),
        ("    queued (dispatch to a sandbox)", ms["queued"]),
        ("    sandboxed run (wall)", ms["sandbox"]),
        ("    of which raw FMPy would take", raw_ms),
        ("    settle, store, notify", ms["server"] - ms["queued"] - ms["sandbox"]),
        ("  HTTP, auth, hold, insert, wake-up", ms["answer"] - ms["server"]),
        ("client: result download", ms["download"]),
    ]
    print("breakdown of the spaced gateway runs (median ms):")
    for label, value in rows:
        print(f"  {label:40}{value:10.1f}")


def median_ms(fn: object, runs: int, pause_s: float = 0.0) -> float:
    assert callable(fn)
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        time.sleep(pause_s)
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


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
    var_dir = REPO_ROOT / "var" / f"bench-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(var_dir, FMU_GATEWAY_WORKERS=str(args.workers), FMU_GATEWAY_SANDBOX=args.sandbox,
                            FMU_GATEWAY_SANDBOX_REUSE=str(not args.no_reuse).lower())
    try:
        # Enough concurrent runs and requests for the throughput burst: a bench measures, not throttles.
        client = gateway.client(gateway.create_user(credits=10_000_000, tier="enterprise"))
        fmu_id = client.post("/v1/fmus", files={"file": (fmu.name, fmu.read_bytes())}).json()["id"]

        raw_ms = median_ms(lambda: raw_run(str(fmu)), args.runs)
        gw_ms = median_ms(lambda: gateway_run(client, fmu_id), args.runs)
        PHASES.clear()  # the breakdown is of the spaced runs, when the warm pool is full
        # Spaced runs: the warm pool has refilled before each one, as at a moderate load.
        gw_spaced_ms = median_ms(lambda: gateway_run(client, fmu_id), args.runs, pause_s=args.pause)
        spaced = dict(PHASES)
        PHASES.clear()

        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            pool.map(raw_run, [str(fmu)] * args.workers)
            started = time.perf_counter()
            pool.map(raw_run, [str(fmu)] * args.concurrent)
            raw_tput = args.concurrent / (time.perf_counter() - started)
        with ThreadPoolExecutor(args.concurrent) as threads:
            started = time.perf_counter()
            list(threads.map(lambda _: gateway_run(client, fmu_id), range(args.concurrent)))
            gw_tput = args.concurrent / (time.perf_counter() - started)
    except Exception:
        print(gateway.log_path.read_text()[-5000:], file=sys.stderr)
        raise
    finally:
        stop_gateway(gateway)
        shutil.rmtree(var_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    mode = "a new sandbox per run" if args.no_reuse else "warm sandboxes"
    print(f"FMU: {args.fmu} ({SPEC or 'model defaults'}); {args.workers} workers; {args.sandbox} sandbox, {mode}; "
          f"fmpy {fmpy.__version__}")
    print(f"{'':34}{'raw FMPy':>12}{'gateway':>12}{'ratio':>9}")
    print(f"{'latency, median of ' + str(args.runs) + ' runs (ms)':34}{raw_ms:12.1f}{gw_ms:12.1f}"
          f"{gw_ms / raw_ms:8.1f}x")
    print(f"{'  same, ' + str(args.pause) + ' s apart (ms)':34}{raw_ms:12.1f}{gw_spaced_ms:12.1f}"
          f"{gw_spaced_ms / raw_ms:8.1f}x")
    print(f"{'throughput, ' + str(args.concurrent) + ' runs (runs/s)':34}{raw_tput:12.1f}{gw_tput:12.1f}"
          f"{gw_tput / raw_tput:8.2f}x")
    print_breakdown(raw_ms, spaced)


if __name__ == "__main__":
    main()
