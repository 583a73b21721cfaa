"""Dramatiq on Redis end to end: an API process that only enqueues, real worker processes
(``fmu-gateway-admin worker``), PostgreSQL as the source of truth.

Runs spread over the workers; a worker killed with SIGKILL mid-run loses nothing and charges
nothing twice; a cancel reaches a sandbox in a worker; a Redis that is down or restarted only
delays runs. Outages are played on a redis-server of the test's own, never the machine's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from databases import temporary_database
from gateway_process import (
    REPO_ROOT,
    Gateway,
    WorkerProcess,
    free_port,
    running_gateway,
    start_gateway,
    start_worker,
    stop_gateway,
    stop_worker,
)
from redis_keys import REDIS_URL, temporary_redis_prefix
from required import unavailable
from tcp_proxy import TcpProxy

from app.sandbox.resources import (
    CGROUP_PREFIX,
    SANDBOX_ID_ENV,
    parse_mountinfo,
    parse_proc_cgroup,
    processes_with_environ,
)

# Short leases and quick relays, so recovery happens within seconds.
FAST = {
    "FMU_GATEWAY_RUN_LEASE_S": "2",
    "FMU_GATEWAY_DISPATCH_POLL_S": "0.5",
    "FMU_GATEWAY_DISPATCH_REDELIVER_S": "4",
    "FMU_GATEWAY_WORKER_DRAIN_S": "2",
    "FMU_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
}
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@dataclass
class Cluster:
    gateway: Gateway
    workers: list[WorkerProcess]
    env: dict[str, str]
    database_url: str
    root: Path

    def add_worker(self) -> WorkerProcess:
        worker = start_worker(self.root / f"worker-{uuid.uuid4().hex[:6]}", **self.env)
        self.workers.append(worker)
        return worker

    def rows(self, run_ids: list[str]) -> dict[str, Any]:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                result = conn.execute(sa.text(
                    "SELECT id, status, attempts, lease_owner, error_code FROM runs WHERE id = ANY(:ids)"),
                    {"ids": run_ids})
                return {row.id: row for row in result}
        finally:
            engine.dispose()


@contextmanager
def cluster(name: str, broker_url: str, workers: int = 2, **overrides: str) -> Iterator[Cluster]:
    root = REPO_ROOT / "var" / f"test-{name}-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    started: list[WorkerProcess] = []
    gateway = None
    try:
        with temporary_database("postgresql", root) as database_url, temporary_redis_prefix(name) as prefix:
            env = {"FMU_GATEWAY_DATABASE_URL": database_url, "FMU_GATEWAY_BROKER_URL": broker_url,
                   "FMU_GATEWAY_REDIS_KEY_PREFIX": prefix, "FMU_GATEWAY_STORAGE_DIR": str(root / "storage"),
                   **FAST, **overrides}
            gateway = start_gateway(root / "api", **env)
            result = Cluster(gateway, started, env, database_url, root)
            try:
                with ThreadPoolExecutor(max(1, workers)) as pool:  # each start takes seconds
                    list(pool.map(lambda _: result.add_worker(), range(workers)))
                yield result
            finally:
                with ThreadPoolExecutor(max(1, len(started))) as pool:
                    list(pool.map(stop_worker, started))
                stop_gateway(gateway)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def own_redis() -> Iterator[tuple[str, Any]]:
    """A redis-server of our own on a free port: (url, restart(down_s)) ."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if shutil.which("redis-server") is None:
        unavailable("redis", "redis-server is not installed")

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return process
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        process.wait(timeout=10)

    state = {"process": start()}

    class Control:
        def down(self) -> None:
            stop(state["process"])

        def up(self) -> None:
            state["process"] = start()

    try:
        yield f"redis://127.0.0.1:{port}/0", Control()
    finally:
        if state["process"].poll() is None:
            stop(state["process"])


def upload(client: httpx.Client, path: Path) -> str:
    response = client.post("/v1/fmus", files={"file": (path.name, path.read_bytes())})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def submit(client: httpx.Client, fmu_id: str, **body: Any) -> str:
    # Each one executed by a worker: the run cache would answer a repeat without one.
    response = client.post(f"/v1/fmus/{fmu_id}/runs", json={**body, "cache": False})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_final(client: httpx.Client, run_ids: list[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    runs: dict[str, dict[str, Any]] = {}
    for run_id in run_ids:
        while True:
            run = client.get(f"/v1/runs/{run_id}", params={"wait": 5}).json()
            if run["status"] in FINAL:
                runs[run_id] = run
                break
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
    return runs


def wait_status(client: httpx.Client, run_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/runs/{run_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"run {run_id} never became {status}"
        time.sleep(0.05)


def ledger(client: httpx.Client, run_id: str) -> list[str]:
    entries = client.get("/v1/billing/ledger", params={"run_id": run_id, "limit": 100}).json()["data"]
    return sorted(entry["kind"] for entry in entries)


def owner_of(c: Cluster, run_id: str) -> WorkerProcess:
    owner = c.rows([run_id])[run_id].lease_owner
    pid = int(owner.split(":")[1])
    return next(w for w in c.workers if w.process.pid == pid)


def sandbox_processes(worker: WorkerProcess, run_id: str) -> list[int]:
    """The processes of the sandbox executing ``run_id`` (named in the worker's log; none before
    the worker has logged it: a claimed run gets its sandbox a moment later)."""
    line = next((line for line in worker.log().splitlines() if f"run {run_id}: sandbox " in line), None)
    if line is None:
        return []
    sandbox_id = line.rsplit(" ", 1)[1]
    # A cold sandbox's processes carry its id in their environment; a run forked from a warm
    # sandbox carries its zygote's, and is found in the cgroups the worker made for it.
    return sorted(processes_with_environ(f"{SANDBOX_ID_ENV}={sandbox_id}".encode())
                  | cgroup_processes(worker.process.pid, CGROUP_PREFIX + sandbox_id))


def cgroup_processes(owner: int, name: str) -> set[int]:
    """Processes in the cgroups called `name` below `owner`'s own (gone cgroups have none)."""
    mounts = parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    own = parse_proc_cgroup(Path(f"/proc/{owner}/cgroup").read_text())
    found: set[int] = set()
    for controller, mount in mounts.items():
        if controller in own:
            with contextlib.suppress(FileNotFoundError):
                procs = mount / own[controller].lstrip("/") / name / "cgroup.procs"
                found.update(int(pid) for pid in procs.read_text().split())
    return found


def test_runs_spread_over_two_workers_and_are_charged_once(fmus: dict[str, Path]) -> None:
    with cluster("workers", REDIS_URL) as c:
        client = c.gateway.client(c.gateway.create_user(credits=1000, tier="pro"))
        fmu = upload(client, fmus["VanDerPol"])
        run_ids = [submit(client, fmu, stop_time=2 + i % 3) for i in range(24)]
        runs = wait_final(client, run_ids)
        assert {run["status"] for run in runs.values()} == {"succeeded"}
        rows = c.rows(run_ids)
        owners = {row.lease_owner for row in rows.values()}
        assert len(owners) == 2, owners
        assert {int(owner.split(":")[1]) for owner in owners} == {w.process.pid for w in c.workers}
        assert {row.attempts for row in rows.values()} == {1}
        for run_id in run_ids[:5]:
            assert ledger(client, run_id) == ["hold", "release", "settle"]
        # The API process only enqueues.
        assert "sandbox" not in c.gateway.log_path.read_text()


def test_cancel_kills_the_sandbox_in_a_worker_and_releases_the_hold_once(fmus: dict[str, Path]) -> None:
    with cluster("workers-cancel", REDIS_URL, workers=1) as c:
        client = c.gateway.client(c.gateway.create_user(credits=1000, tier="pro"))
        fmu = upload(client, fmus["Hostile"])
        run_id = submit(client, fmu, start_values={"mode": 4}, timeout_s=120)
        wait_status(client, run_id, "running")
        worker = owner_of(c, run_id)
        deadline = time.monotonic() + 10
        while not sandbox_processes(worker, run_id):
            assert time.monotonic() < deadline, "no sandbox process for the run"
            time.sleep(0.05)
        cancelled = client.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        deadline = time.monotonic() + 5
        while sandbox_processes(worker, run_id):
            assert time.monotonic() < deadline, "the cancelled run's sandbox is still running"
            time.sleep(0.05)
        time.sleep(1.5)  # the worker's own ending of the run must not touch it
        run = client.get(f"/v1/runs/{run_id}").json()
        assert run["status"] == "cancelled"
        assert ledger(client, run_id) == ["hold", "release", "settle"]
        balance = client.get("/v1/billing/balance").json()
        assert balance["credits"] == 1000 - run["credits_charged"]
        assert balance["held_credits"] == 0


def test_a_worker_killed_mid_run_loses_nothing_and_charges_once(fmus: dict[str, Path]) -> None:
    with cluster("workers-kill", REDIS_URL) as c:
        client = c.gateway.client(c.gateway.create_user(credits=1000, tier="pro"))
        fmu = upload(client, fmus["Hostile"])
        vdp = upload(client, fmus["VanDerPol"])
        victim_run = submit(client, fmu, start_values={"mode": 4}, timeout_s=4)
        wait_status(client, victim_run, "running")
        victim = owner_of(c, victim_run)
        # Other work around it: queued behind, or running on the worker about to die.
        others = [submit(client, vdp, stop_time=5) for _ in range(10)]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        runs = wait_final(client, [victim_run, *others])
        assert runs[victim_run]["status"] == "timed_out", runs[victim_run]
        assert {runs[r]["status"] for r in others} == {"succeeded"}
        rows = c.rows([victim_run, *others])
        assert rows[victim_run].attempts == 2
        survivor = next(w for w in c.workers if w is not victim)
        assert rows[victim_run].lease_owner.split(":")[1] == str(survivor.process.pid)
        for run_id in [victim_run, *others]:
            kinds = ledger(client, run_id)
            assert kinds.count("settle") == 1 and kinds.count("hold") == 1, (run_id, kinds)
        assert client.get("/v1/billing/balance").json()["held_credits"] == 0


def test_a_run_lost_too_often_fails_with_worker_lost_and_is_refunded(fmus: dict[str, Path]) -> None:
    with cluster("workers-lost", REDIS_URL, workers=1, FMU_GATEWAY_RUN_MAX_ATTEMPTS="1") as c:
        client = c.gateway.client(c.gateway.create_user(credits=1000, tier="pro"))
        fmu = upload(client, fmus["Hostile"])
        run_id = submit(client, fmu, start_values={"mode": 4}, timeout_s=60)
        wait_status(client, run_id, "running")
        os.kill(c.workers[0].process.pid, signal.SIGKILL)
        c.workers[0].process.wait()
        # No worker is left: the API process's reaper ends it.
        run = wait_final(client, [run_id], timeout=30)[run_id]
        assert run["status"] == "failed"
        assert run["error"]["code"] == "worker_lost"
        assert run["credits_charged"] == 0
        assert ledger(client, run_id) == ["hold", "refund", "settle"]
        assert client.get("/v1/billing/balance").json()["credits"] == 1000


def test_a_run_submitted_while_redis_is_down_completes_once_it_is_back(fmus: dict[str, Path]) -> None:
    with own_redis() as (url, control), cluster("workers-outage", url, workers=1) as c:
        client = c.gateway.client(c.gateway.create_user(credits=1000, tier="pro"))
        fmu = upload(client, fmus["VanDerPol"])
        control.down()
        run_ids = [submit(client, fmu, stop_time=1) for _ in range(3)]
        time.sleep(2)
        assert {client.get(f"/v1/runs/{r}").json()["status"] for r in run_ids} == {"queued"}
        assert {row.status for row in c.rows(run_ids).values()} == {"queued"}
        control.up()
        runs = wait_final(client, run_ids, timeout=60)
        assert {run["status"] for run in runs.values()} == {"succeeded"}


def test_redis_restarted_mid_batch_every_run_completes(fmus: dict[str, Path]) -> None:
    with own_redis() as (url, control), cluster("workers-restart", url) as c:
        # 40 runs queued at once: above the pro tier's 32 concurrent runs.
        client = c.gateway.client(c.gateway.create_user(credits=5000, tier="team"))
        fmu = upload(client, fmus["VanDerPol"])
        run_ids = [submit(client, fmu, stop_time=10) for _ in range(40)]
        deadline = time.monotonic() + 60
        while sum(row.status == "succeeded" for row in c.rows(run_ids).values()) < 5:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # Without persistence: every message still in Redis is gone.
        control.down()
        time.sleep(1)
        control.up()
        runs = wait_final(client, run_ids, timeout=120)
        assert {run["status"] for run in runs.values()} == {"succeeded"}
        for run_id in run_ids:
            assert ledger(client, run_id).count("settle") == 1


def start_sweep(client: httpx.Client, fmu_id: str, children: int, **spec: Any) -> str:
    response = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={
        "method": "grid", "parameters": {"mu": [0.5 + 0.05 * i for i in range(children)]}, **spec})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def wait_sweep(client: httpx.Client, sweep_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (sweep := client.get(f"/v1/sweeps/{sweep_id}").json())["status"] != "finished":
        assert time.monotonic() < deadline, sweep["counts"]
        time.sleep(0.2)
    result: dict[str, Any] = sweep
    return result


def ledger_kinds(client: httpx.Client) -> tuple[dict[str, int], int]:
    """Entries per kind over the user's whole ledger, and their sum."""
    kinds: dict[str, int] = {}
    total, cursor = 0, None
    while True:
        page = client.get("/v1/billing/ledger", params={"limit": 100, "cursor": cursor}).json()
        for entry in page["data"]:
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
            total += entry["amount"]
        if (cursor := page["next_cursor"]) is None:
            return kinds, total


def assert_every_child_settled_once(client: httpx.Client, sweep: dict[str, Any]) -> None:
    counts = sweep["counts"]
    assert counts["queued"] == counts["running"] == 0, counts
    children: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get(f"/v1/sweeps/{sweep['id']}/runs", params={"limit": 100, "cursor": cursor}).json()
        children += page["data"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert len(children) == sweep["total"]
    for child in children:
        assert child["status"] in ("succeeded", "timed_out") or child["error"]["code"], child
    kinds, total = ledger_kinds(client)
    assert kinds["settle"] == sweep["total"] and kinds["hold"] == 1, kinds
    balance = client.get("/v1/billing/balance").json()
    assert balance["held_credits"] == 0
    assert total == balance["credits"]


def wait_until_succeeded(client: httpx.Client, sweep_id: str, at_least: int, timeout: float = 120) -> None:
    """Until `at_least` children succeeded: the sweep is well under way on the workers."""
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/sweeps/{sweep_id}").json()["counts"]["succeeded"] < at_least:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_worker_killed_during_a_sweep_leaves_no_child_stuck_or_charged_twice(fmus: dict[str, Path]) -> None:
    with cluster("workers-sweep-kill", REDIS_URL) as c:
        client = c.gateway.client(c.gateway.create_user(credits=5000, tier="pro"))
        fmu = upload(client, fmus["VanDerPol"])
        sweep_id = start_sweep(client, fmu, 30, stop_time=5)
        wait_until_succeeded(client, sweep_id, 4)
        victim = c.workers[0]
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        sweep = wait_sweep(client, sweep_id)
        assert sweep["counts"]["succeeded"] == 30, sweep["counts"]
        assert_every_child_settled_once(client, sweep)


def test_redis_restarted_mid_sweep_the_sweep_completes(fmus: dict[str, Path]) -> None:
    with own_redis() as (url, control), cluster("workers-sweep-redis", url) as c:
        client = c.gateway.client(c.gateway.create_user(credits=5000, tier="pro"))
        fmu = upload(client, fmus["VanDerPol"])
        sweep_id = start_sweep(client, fmu, 30, stop_time=5)
        wait_until_succeeded(client, sweep_id, 4)
        control.down()  # without persistence: every message still in Redis is gone
        time.sleep(1)
        control.up()
        sweep = wait_sweep(client, sweep_id)
        assert sweep["counts"]["succeeded"] == 30, sweep["counts"]
        assert_every_child_settled_once(client, sweep)


def test_api_that_only_enqueues_needs_no_sandbox_engine(tmp_path: Path) -> None:
    """An API in front of workers starts and accepts runs without the Docker engine its workers use."""
    with temporary_redis_prefix("api-only") as prefix, running_gateway(
        "api-only", FMU_GATEWAY_BROKER_URL=REDIS_URL, FMU_GATEWAY_REDIS_KEY_PREFIX=prefix,
        FMU_GATEWAY_SANDBOX="docker", FMU_GATEWAY_DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock",
    ) as gateway:
        health = httpx.get(f"{gateway.base_url}/healthz", timeout=10).json()
        assert (health["status"], health["sandbox"]) == ("ok", "docker")


def test_a_worker_serves_the_metrics_of_the_runs_it_executed(fmus: dict[str, Path]) -> None:
    with cluster("worker-metrics", REDIS_URL, workers=0) as c:
        port = free_port()
        c.workers.append(start_worker(c.root / "worker-metrics", **c.env, FMU_GATEWAY_METRICS_PORT=str(port)))
        client = c.gateway.client(c.gateway.create_user(credits=1000))
        fmu = upload(client, fmus["VanDerPol"])
        runs = wait_final(client, [submit(client, fmu, stop_time=1) for _ in range(2)])
        assert {run["status"] for run in runs.values()} == {"succeeded"}
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'fmu_gateway_runs_total{status="succeeded"} 2.0' in text
        assert "fmu_gateway_sandbox_start_seconds_count 2.0" in text


def test_a_message_met_by_a_database_outage_waits_for_it_and_is_never_dropped(fmus: dict[str, Path]) -> None:
    # The relay's re-send far away (120 s): only the message itself can bring the runs back in time.
    with cluster("db-outage", REDIS_URL, workers=0, FMU_GATEWAY_DISPATCH_REDELIVER_S="120") as c:
        url = sa.engine.make_url(c.database_url)
        proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
        try:
            proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            worker = start_worker(c.root / "worker-outage", **{**c.env, "FMU_GATEWAY_DATABASE_URL": proxied})
            c.workers.append(worker)
            client = c.gateway.client(c.gateway.create_user(credits=1000, tier="pro"))
            fmu = upload(client, fmus["VanDerPol"])
            proxy.cut()  # the worker's database is gone; the API's is not
            run_ids = [submit(client, fmu, stop_time=1) for _ in range(3)]
            time.sleep(3)  # the worker has their messages, and no database
            assert {client.get(f"/v1/runs/{r}").json()["status"] for r in run_ids} == {"queued"}
            proxy.restore()
            back = time.monotonic()
            runs = wait_final(client, run_ids, timeout=60)
            assert time.monotonic() - back < 15
            assert {run["status"] for run in runs.values()} == {"succeeded"}
            assert "waits for the database" in worker.log()
            assert "Failed to process message" not in worker.log()
        finally:
            with contextlib.suppress(AssertionError):
                proxy.cut()
