"""Load test: N concurrent clients of several tenants against a gateway of its own on 127.0.0.1,
for a bounded time, then checks that the books balance.

    .venv/bin/python bench/load.py [--mode embedded cluster] [--clients 20] [--duration 60]
                                   [--tenants 4] [--drain-timeout 180] [--seed 1]

``embedded``: what ``make run`` serves (SQLite, local storage, bubblewrap, the API executes runs).
``cluster``: a temporary PostgreSQL database, a Redis key prefix of its own, an API that only
enqueues and 2 ``fmu-gateway-admin worker`` processes. Both report usage to a fake Stripe on
loopback (tests/stripe_fake), where every tenant bought a credit pack, so usage is really sent.

Each client loops without pause over a weighted mix: FMU uploads, single runs, polls of its runs
and sweeps, result and log downloads of its finished runs, listings, and sweeps of 10-50 children.
A client keeps at most 3 single runs and 1 sweep unfinished, so the queue stays bounded and every
run can finish within the drain. Prints requests/s, per route template count, p50/p99 and errors
(5xx, connection errors, unexpected 4xx; 429 and 402/409 apart), the queue depth over time, then
waits until every run is final and checks: every run final and succeeded, each tenant's ledger sums
to its balance, one hold per submission and one settle per run, every charged run's usage sent to
Stripe once. Exits non-zero on any error or failed check.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "private-api" / "tests"), str(REPO_ROOT / "private-api" / "tests" / "api")]

import httpx
import pytest
import sqlalchemy as sa
from databases import temporary_database
from gateway_process import (
    Gateway,
    WorkerProcess,
    start_gateway,
    start_worker,
    stop_gateway,
    stop_worker,
)
from redis_keys import REDIS_URL, temporary_redis_prefix
from rich.console import Console
from rich.table import Table
from rich.text import Text
from stripe_fake.server import FakeStripe

SAMPLES = REPO_ROOT / "var" / "samples"
FINAL = ("succeeded", "failed", "timed_out", "cancelled")
FINAL_SWEEP = ("finished", "cancelled")
RUN_TIMEOUT_S = 30  # holds 4 credits a run: the balance covers any mix
CREDITS = 1_000_000
MAX_PENDING_RUNS = 3
SWEEP_CHILDREN = (10, 50)
OUTCOMES = ("5xx", "conn", "4xx", "429", "402/409")

console = Console(highlight=False, width=160)  # tables unwrapped in make's log too


@dataclass
class RouteStats:
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class Stats:
    """Every request of the clients: latency and outcome per route template."""

    routes: dict[str, RouteStats] = field(default_factory=lambda: defaultdict(RouteStats))
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, seconds: float, outcome: str | None, detail: str = "") -> None:
        with self.lock:
            stats = self.routes[route]
            stats.latencies.append(seconds)
            if outcome is not None:
                stats.outcomes[outcome] += 1
                if len(self.failures) < 20:
                    self.failures.append(f"{route}: {outcome} {detail}")

    def requests(self) -> int:
        return sum(len(s.latencies) for s in self.routes.values())

    def errors(self) -> int:
        return sum(sum(s.outcomes.values()) for s in self.routes.values())


def outcome_of(status: int, expected: tuple[int, ...]) -> str | None:
    """None for an expected answer, else the error column it counts in."""
    if status in expected:
        return None
    if status >= 500:
        return "5xx"
    if status == 429:
        return "429"
    if status in (402, 409):
        return "402/409"
    return "4xx"


@dataclass
class Tenant:
    email: str
    api_key: str
    fmu_id: str


@dataclass
class Submissions:
    """What the clients submitted, to reconcile with the database afterwards."""

    runs: list[str] = field(default_factory=list)
    sweeps: dict[str, int] = field(default_factory=dict)  # id -> children
    not_succeeded: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LoadClient:
    """One client: its own connection, its tenant's key, its own unfinished runs and sweep."""

    def __init__(self, base_url: str, tenant: Tenant, fmus: dict[str, bytes], stats: Stats,
                 submissions: Submissions, seed: int) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {tenant.api_key}"},
                                 timeout=60)
        self.tenant = tenant
        self.fmus = fmus
        self.stats = stats
        self.submissions = submissions
        self.rng = random.Random(seed)
        self.pending: list[str] = []
        self.finished: list[str] = []
        self.sweep: str | None = None

    def call(self, method: str, route: str, url: str, expected: tuple[int, ...] = (200,),
             **kwargs: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            self.stats.record(route, time.perf_counter() - started, "conn", f"{type(exc).__name__}: {exc}")
            return None
        outcome = outcome_of(response.status_code, expected)
        detail = f"{response.status_code} {response.text[:300]}" if outcome else ""
        self.stats.record(route, time.perf_counter() - started, outcome, detail)
        return None if outcome else response

    def run_until(self, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                self.next_action()()
        finally:
            self.http.close()

    def next_action(self) -> Callable[[], None]:
        options: list[tuple[int, Callable[[], None]]] = [(15, self.list_something), (3, self.upload)]
        if len(self.pending) < MAX_PENDING_RUNS:
            options.append((30, self.submit_run))
        if self.pending:
            options.append((20, self.poll_run))
        if self.finished:
            options.append((20, self.download))
        options.append((5, self.submit_sweep) if self.sweep is None else (8, self.poll_sweep))
        weights = [weight for weight, _ in options]
        return self.rng.choices([action for _, action in options], weights)[0]

    def upload(self) -> None:
        name = self.rng.choice(sorted(self.fmus))
        self.call("POST", "POST /v1/fmus", "/v1/fmus", (200, 201),
                  files={"file": (f"{name}.fmu", self.fmus[name])})

    def spec(self) -> dict[str, Any]:
        # Executed, each one: a repeat answered by the run cache would be 200, and no load.
        return {"stop_time": self.rng.choice((1.0, 2.0, 5.0)), "output_interval": 0.01,
                "start_values": {"mu": round(self.rng.uniform(0.5, 3.0), 3)}, "timeout_s": RUN_TIMEOUT_S,
                "cache": False}

    def submit_run(self) -> None:
        response = self.call("POST", "POST /v1/fmus/{fmu_id}/runs", f"/v1/fmus/{self.tenant.fmu_id}/runs",
                             (202,), json=self.spec())
        if response is not None:
            run_id = str(response.json()["id"])
            self.pending.append(run_id)
            with self.submissions.lock:
                self.submissions.runs.append(run_id)

    def poll_run(self) -> None:
        run_id = self.pending.pop(0)
        response = self.call("GET", "GET /v1/runs/{run_id}", f"/v1/runs/{run_id}", (200, 202))  # 202: not final
        status = response.json()["status"] if response is not None else None
        if status == "succeeded":
            self.finished.append(run_id)
        elif status in FINAL:
            with self.submissions.lock:
                self.submissions.not_succeeded[str(status)] += 1
        else:
            self.pending.append(run_id)

    def download(self) -> None:
        run_id = self.finished.pop(0)
        self.call("GET", "GET /v1/runs/{run_id}/result", f"/v1/runs/{run_id}/result")
        self.call("GET", "GET /v1/runs/{run_id}/log", f"/v1/runs/{run_id}/log")

    def list_something(self) -> None:
        path = self.rng.choice(("/v1/runs", "/v1/fmus", "/v1/sweeps"))
        self.call("GET", f"GET {path}", path, params={"limit": 20})

    def submit_sweep(self) -> None:
        children = self.rng.randint(*SWEEP_CHILDREN)
        body = {"stop_time": 1.0, "output_interval": 0.01, "timeout_s": RUN_TIMEOUT_S, "method": "lhs",
                "parameters": {"mu": {"min": 0.5, "max": 3.0}}, "samples": children,
                "seed": self.rng.randrange(1 << 31)}
        response = self.call("POST", "POST /v1/fmus/{fmu_id}/sweeps", f"/v1/fmus/{self.tenant.fmu_id}/sweeps",
                             (202,), json=body)
        if response is not None:
            self.sweep = str(response.json()["id"])
            with self.submissions.lock:
                self.submissions.sweeps[self.sweep] = children

    def poll_sweep(self) -> None:
        response = self.call("GET", "GET /v1/sweeps/{sweep_id}", f"/v1/sweeps/{self.sweep}")
        if response is not None and response.json()["status"] in FINAL_SWEEP:
            self.sweep = None


class QueueDepthMonitor:
    """Samples ``fmu_gateway_queue_depth`` (summed over tenants) from GET /metrics once a second."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.samples: list[tuple[float, int]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="queue-depth", daemon=True)
        self._started = time.monotonic()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            while not self._stop.wait(1.0):
                try:
                    response = http.get("/metrics")
                    response.raise_for_status()
                except httpx.HTTPError as exc:
                    self.failures.append(f"GET /metrics: {exc}")
                    continue
                depth = sum(int(float(line.rsplit(" ", 1)[1])) for line in response.text.splitlines()
                            if line.startswith("fmu_gateway_queue_depth{"))
                self.samples.append((time.monotonic() - self._started, depth))


@dataclass
class Deployment:
    """A gateway (and its workers) under test, with what the checks need to read."""

    gateway: Gateway
    workers: list[WorkerProcess]
    database_url: str
    stripe: FakeStripe
    describe: str

    def logs(self) -> dict[str, Path]:
        return {"api": self.gateway.log_path} | {f"worker {i + 1}": w.log_path for i, w in enumerate(self.workers)}


def stripe_env(stripe: FakeStripe) -> dict[str, str]:
    # Flushed every second, so the outbox is empty soon after the last run.
    return {"FMU_GATEWAY_STRIPE_API_KEY": stripe.api_key, "FMU_GATEWAY_STRIPE_API_BASE": stripe.url,
            "FMU_GATEWAY_STRIPE_WEBHOOK_SECRET": stripe.webhook_secret, "FMU_GATEWAY_USAGE_FLUSH_INTERVAL_S": "1",
            "FMU_GATEWAY_USAGE_FLUSH_BATCH": "500", "FMU_GATEWAY_RATE_LIMIT_PER_MINUTE": "0"}


@contextmanager
def embedded(root: Path, stripe: FakeStripe) -> Iterator[Deployment]:
    workers = str(os.cpu_count() or 1)  # make run's default
    gateway = start_gateway(root, FMU_GATEWAY_WORKERS=workers, **stripe_env(stripe))
    try:
        yield Deployment(gateway, [], f"sqlite:///{root / 'fmu_gateway.db'}", stripe,
                         f"API on SQLite executing runs on {workers} threads, bwrap sandboxes, local storage")
    finally:
        stop_gateway(gateway)


@contextmanager
def cluster(root: Path, stripe: FakeStripe, workers: int = 2) -> Iterator[Deployment]:
    with temporary_database("postgresql", root) as database_url, temporary_redis_prefix("load") as prefix:
        env = {"FMU_GATEWAY_DATABASE_URL": database_url, "FMU_GATEWAY_BROKER_URL": REDIS_URL,
               "FMU_GATEWAY_REDIS_URL": REDIS_URL, "FMU_GATEWAY_REDIS_KEY_PREFIX": prefix,
               "FMU_GATEWAY_STORAGE_DIR": str(root / "storage"), **stripe_env(stripe)}
        gateway = start_gateway(root / "api", **env)
        started: list[WorkerProcess] = []
        try:
            for index in range(workers):
                started.append(start_worker(root / f"worker-{index + 1}", **env))
            yield Deployment(gateway, started, database_url, stripe,
                             f"API enqueueing only, {workers} workers x {gateway.env['FMU_GATEWAY_WORKERS']} threads, "
                             f"PostgreSQL {database_url.rsplit('/', 1)[1]}, Redis prefix {prefix}")
        finally:
            for worker in started:
                stop_worker(worker)
            stop_gateway(gateway)


def new_tenant(deployment: Deployment, index: int, fmu: bytes) -> Tenant:
    """An enterprise user (no concurrent-run cap in reach) with credits, a Stripe customer that
    bought a pack through Checkout and the fake's webhook, and the VanDerPol FMU, warmed by a run."""
    gateway, stripe = deployment.gateway, deployment.stripe
    email = f"load-{index}-{uuid.uuid4().hex[:6]}@example.com"
    api_key = gateway.create_user(credits=CREDITS, tier="enterprise", email=email)
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as http:
        checkout = http.post("/v1/billing/checkout", json={"pack": "pack_1k"})
        checkout.raise_for_status()
        delivery = stripe.delivery(stripe.complete_checkout(checkout.json()["id"]))
        http.post("/v1/billing/webhooks/stripe", content=delivery.body, headers=delivery.headers).raise_for_status()
        upload = http.post("/v1/fmus", files={"file": ("VanDerPol.fmu", fmu)})
        upload.raise_for_status()
        fmu_id = str(upload.json()["id"])
        http.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 60}, json={"stop_time": 1.0}).raise_for_status()
    return Tenant(email, api_key, fmu_id)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_requests(stats: Stats, elapsed: float) -> None:
    requests = stats.requests()
    console.print(f"requests: {requests} in {elapsed:.1f} s = [bold]{requests / elapsed:.1f} req/s[/], "
                  f"errors {stats.errors()}")
    table = Table("route", "count", "req/s", "p50 ms", "p99 ms", *OUTCOMES)
    for route in sorted(stats.routes, key=lambda r: (r.split(" ", 1)[1], r)):
        s = stats.routes[route]
        table.add_row(route, str(len(s.latencies)), f"{len(s.latencies) / elapsed:.1f}",
                      f"{percentile(s.latencies, 0.5) * 1000:.1f}", f"{percentile(s.latencies, 0.99) * 1000:.1f}",
                      *(str(s.outcomes[o]) for o in OUTCOMES))
    console.print(table)
    for failure in stats.failures:
        console.print(f"  {failure}", style="red", markup=False)


def print_queue_depth(monitor: QueueDepthMonitor, load_s: float) -> None:
    during = [depth for t, depth in monitor.samples if t <= load_s]
    if during:
        every = " ".join(str(depth) for _, depth in monitor.samples[4::5])
        console.print(f"queue depth (queued runs of all tenants, every 5 s from the start, drain included): {every}")
        console.print(f"queue depth under load: max {max(during)}, mean {sum(during) / len(during):.0f}")
    for failure in monitor.failures[:5]:
        console.print(f"  {failure}", style="red", markup=False)


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, ok: bool, what: str) -> None:
        self.failed += not ok
        console.print(Text.assemble("  ", ("PASS", "green") if ok else ("FAIL", "red"), " ", what))


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def ledger_sum(http: httpx.Client) -> int:
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = http.get("/v1/billing/ledger", params=params)
        page.raise_for_status()
        body = page.json()
        total += sum(int(entry["amount"]) for entry in body["data"])
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return total


def check_books(deployment: Deployment, tenants: list[Tenant], submissions: Submissions,
                drain_timeout: float, load_started: float) -> int:
    """Waits (bounded) for every run to be final and the outbox to be sent, then reconciles."""
    engine = sa.create_engine(deployment.database_url)
    checks = Checks()

    def scalar(sql: str, **params: Any) -> int:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql), params).scalar_one())

    def rows(sql: str) -> list[Any]:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql)))

    try:
        open_runs = "SELECT count(*) FROM runs WHERE status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled')"
        drained = wait_for(lambda: scalar(open_runs) == 0, drain_timeout)
        executed_s = time.monotonic() - load_started
        statuses = dict(rows("SELECT status, count(*) FROM runs GROUP BY status"))
        total = sum(statuses.values())
        children = sum(submissions.sweeps.values())
        console.print(f"runs: {len(submissions.runs)} single + {len(submissions.sweeps)} sweeps ({children} children) "
                      f"submitted under load, {len(tenants)} warm-up; {total} runs in {executed_s:.0f} s from the "
                      f"start of the load to the last final = {total / executed_s:.1f} runs/s")
        console.print("checks:")
        checks.check(drained, f"every run final within {drain_timeout:.0f} s after the load: {statuses}")
        checks.check(total == len(submissions.runs) + children + len(tenants),
                     f"every submission stored: {total} runs = {len(submissions.runs)} + {children} + {len(tenants)}")
        checks.check(set(statuses) <= {"succeeded"} and not submissions.not_succeeded, "every run succeeded")

        unbalanced = []
        for tenant in tenants:
            with httpx.Client(base_url=deployment.gateway.base_url, timeout=60,
                              headers={"Authorization": f"Bearer {tenant.api_key}"}) as http:
                balance = http.get("/v1/billing/balance").json()
                if ledger_sum(http) != balance["credits"]:
                    unbalanced.append(tenant.email)
        checks.check(not unbalanced, f"ledger (GET /v1/billing/ledger) sums to the balance for all {len(tenants)} "
                                     f"tenants{f' except {unbalanced}' if unbalanced else ''}")
        users = rows("SELECT u.email, u.credits, COALESCE(SUM(l.amount), 0) FROM users u "
                     "LEFT JOIN ledger_entries l ON l.user_id = u.id GROUP BY u.id, u.email, u.credits")
        checks.check(all(credits == summed for _, credits, summed in users),
                     f"database: every user's ledger entries sum to users.credits ({len(users)} users)")

        keys = Counter(str(key).split(":", 1)[0] for (key,) in rows("SELECT idempotency_key FROM ledger_entries"))
        settles = Counter(run_id for (run_id,) in rows("SELECT run_id FROM ledger_entries WHERE kind = 'settle'"))
        final_ids = [run_id for (run_id,) in rows(
            "SELECT id FROM runs WHERE status IN ('succeeded', 'failed', 'timed_out', 'cancelled')")]
        checks.check(keys["hold"] == len(submissions.runs) + len(submissions.sweeps) + len(tenants),
                     f"one hold per run and per sweep: {keys['hold']}")
        checks.check(all(settles[run_id] == 1 for run_id in final_ids) and len(settles) == len(final_ids),
                     f"exactly one settle per final run: {sum(settles.values())} for {len(final_ids)}")

        pending = "SELECT count(*) FROM usage_events WHERE status = 'pending'"
        sent_all = wait_for(lambda: scalar(pending) == 0, 60)
        charged = {run_id: credits for run_id, credits in rows("SELECT id, credits_charged FROM runs "
                                                               "WHERE credits_charged > 0")}
        events = rows("SELECT identifier, status, value FROM usage_events")
        by_status = Counter(status for _, status, _ in events)
        checks.check(sent_all and set(by_status) <= {"sent"},
                     f"usage outbox flushed: {dict(by_status)} (pending ones waited for up to 60 s)")
        checks.check({identifier: value for identifier, _, value in events} == charged and len(events) == len(charged),
                     f"one usage event per charged run, of its cost: {len(events)} events, {len(charged)} charged runs")
        meter = deployment.stripe.meter_identifiers()
        meter_values = sum(int(e["payload"]["value"]) for e in deployment.stripe.meter_events)
        checks.check(sorted(meter) == sorted(charged) and meter_values == sum(charged.values()),
                     f"Stripe (fake) got each once: {len(meter)} meter events, {meter_values} credits "
                     f"= {sum(charged.values())} charged")
    finally:
        engine.dispose()

    logs = {name: path.read_text(errors="replace").splitlines() for name, path in deployment.logs().items()}
    bad_lines = [f"{name}: {line}" for name, lines in logs.items() for line in lines
                 if "Traceback" in line or " ERROR " in line or " CRITICAL " in line]
    checks.check(not bad_lines, "no error or traceback in the gateway's and workers' logs")
    for line in bad_lines[:10]:
        console.print(f"    {line[:300]}", style="red", markup=False)
    # Warnings fail nothing, but under load they are worth a look.
    warnings = [f"{name}: {line}" for name, lines in logs.items() for line in lines if " WARNING " in line]
    if warnings:
        console.print(f"  {len(warnings)} warning(s) in the logs, the first ones:")
        for line in warnings[:5]:
            console.print(f"    {line[:300]}", style="yellow", markup=False)
    alive = deployment.gateway.alive() and all(w.alive() for w in deployment.workers)
    checks.check(alive, "the gateway and its workers are still up")
    return checks.failed


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def drive(mode: str, root: Path, args: argparse.Namespace, fmus: dict[str, bytes]) -> bool:
    setup_started = time.monotonic()
    with ExitStack() as stack:
        stripe = stack.enter_context(FakeStripe())
        deployment = stack.enter_context((embedded if mode == "embedded" else cluster)(root, stripe))
        with ThreadPoolExecutor(args.tenants) as pool:  # each takes seconds of admin commands and a first run
            tenants = list(pool.map(lambda i: new_tenant(deployment, i, fmus["VanDerPol"]), range(args.tenants)))
        console.print(f"set up in {time.monotonic() - setup_started:.0f} s: {deployment.describe}")
        stats, submissions = Stats(), Submissions()
        clients = [LoadClient(deployment.gateway.base_url, tenants[i % len(tenants)], fmus, stats, submissions,
                              args.seed + i) for i in range(args.clients)]
        with QueueDepthMonitor(deployment.gateway.base_url) as monitor:
            busy_before, own_before = cpu_busy(), os.times()
            started = time.monotonic()
            threads = [threading.Thread(target=c.run_until, args=(started + args.duration,), name=f"client-{i}")
                       for i, c in enumerate(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            busy_after, own_after = cpu_busy(), os.times()
            print_requests(stats, elapsed)
            # On a small machine the clients compete with the gateway for the CPU: say how much they took.
            own_cpu = own_after.user + own_after.system - own_before.user - own_before.system
            busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
            console.print(f"CPU under load: machine {busy:.0%} busy ({os.cpu_count()} cores); the load clients "
                          f"{own_cpu / elapsed:.2f} cores of it")
            failed = check_books(deployment, tenants, submissions, args.drain_timeout, started)
        print_queue_depth(monitor, elapsed)
        errors = stats.errors() + len(monitor.failures)
        ok = errors == 0 and failed == 0
        console.print(f"{mode}: {'[green]OK[/]' if ok else '[red]FAILED[/]'} "
                      f"({errors} request errors, {failed} failed checks)")
        if not ok:
            for name, path in deployment.logs().items():
                console.print(f"--- {name} log: {path} (last lines)")
                console.print("\n".join(path.read_text(errors="replace").splitlines()[-15:]), markup=False)
        return ok


def load_mode(mode: str, args: argparse.Namespace, fmus: dict[str, bytes]) -> bool:
    """One mode on a var dir of its own: removed when it passed, kept for its logs otherwise."""
    root = REPO_ROOT / "var" / f"load-{mode}-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    console.rule(f"{mode}: {args.clients} clients, {args.tenants} tenants, {args.duration:.0f} s")
    ok = False
    try:
        ok = drive(mode, root, args, fmus)
    # Set-up failures; the test helpers skip (pytest.skip) when PostgreSQL or Redis cannot be reached.
    except (RuntimeError, AssertionError, OSError, httpx.HTTPError, sa.exc.SQLAlchemyError,
            pytest.skip.Exception) as exc:
        console.print(f"{mode}: FAILED: {type(exc).__name__}: {exc}", style="red", markup=False)
    finally:
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            console.print(f"kept {root} for its logs", markup=False)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", nargs="+", choices=("embedded", "cluster"), default=["embedded", "cluster"])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load per mode.")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--drain-timeout", type=float, default=180.0,
                        help="Most seconds to wait after the load for every run to be final.")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fmus = {name: (SAMPLES / f"{name}.fmu").read_bytes() for name in ("VanDerPol", "Feedthrough")}
    results = {mode: load_mode(mode, args, fmus) for mode in args.mode}
    console.print("load: " + ", ".join(f"{mode} {'OK' if ok else 'FAILED'}" for mode, ok in results.items()))
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
