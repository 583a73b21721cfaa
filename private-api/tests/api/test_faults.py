"""Faults an operator meets, each on real services with the settings a deployment runs with (the
defaults: no short leases or quick re-sends here), and each ending the same way: every run final
with a reason, every run settled once, no hold left, every ledger summing to its balance, never a
500, and the service back at work by itself within RECOVERY_S of the fault ending.

PostgreSQL is cut off behind a TCP proxy (every connection dropped, new ones refused: what a restart
looks like to its clients) so the suite's own database keeps serving; Redis is a redis-server of the
test's own, restarted for real without persistence. Full storage is tests/api/test_storage_full.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from databases import temporary_database
from gateway_process import REPO_ROOT, Gateway, start_gateway, stop_gateway, stop_worker
from redis_keys import REDIS_URL, temporary_redis_prefix
from tcp_proxy import TcpProxy
from test_workers import (
    FINAL,
    Cluster,
    assert_every_child_settled_once,
    own_redis,
    start_sweep,
    submit,
    upload,
    wait_final,
    wait_status,
    wait_sweep,
    wait_until_succeeded,
)

from app.config import Settings

pytestmark = pytest.mark.timeout(300)

RECOVERY_S = 15.0


def default(field: str) -> str:
    return str(Settings.model_fields[field].default)


# What recovery depends on, as deployed (test_workers.py shortens these to test the mechanisms).
AS_DEPLOYED = {
    "FMU_GATEWAY_RUN_LEASE_S": default("run_lease_s"),
    "FMU_GATEWAY_DISPATCH_POLL_S": default("dispatch_poll_s"),
    "FMU_GATEWAY_DISPATCH_REDELIVER_S": default("dispatch_redeliver_s"),
    "FMU_GATEWAY_RATE_LIMIT_PER_MINUTE": "0",
    "FMU_GATEWAY_WORKER_DRAIN_S": "2",
}
# Hostile mode 4 sleeps in fmi2DoStep from t = 0.5: a child that holds its worker until its deadline.
SLEEPING = {"stop_time": 1, "output_interval": 0.1, "timeout_s": 1, "fmi_type": "CoSimulation"}


@contextmanager
def deployment(name: str, broker_url: str, workers: int = 2,
               proxy_database: bool = False) -> Iterator[tuple[Cluster, TcpProxy | None]]:
    """An API and ``workers`` workers on PostgreSQL and Redis, every process reaching PostgreSQL
    through one proxy when ``proxy_database``."""
    root = REPO_ROOT / "var" / f"test-{name}-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    proxy = None
    started: list[Any] = []
    try:
        with temporary_database("postgresql", root) as database_url, temporary_redis_prefix(name) as prefix:
            url = sa.engine.make_url(database_url)
            if proxy_database:
                proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
                database_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            env = {"FMU_GATEWAY_DATABASE_URL": database_url, "FMU_GATEWAY_BROKER_URL": broker_url,
                   "FMU_GATEWAY_REDIS_KEY_PREFIX": prefix, "FMU_GATEWAY_STORAGE_DIR": str(root / "storage"),
                   **AS_DEPLOYED}
            gateway = start_gateway(root / "api", **env)
            c = Cluster(gateway, started, env, database_url, root)
            try:
                with ThreadPoolExecutor(max(1, workers)) as pool:
                    list(pool.map(lambda _: c.add_worker(), range(workers)))
                yield c, proxy
            finally:
                if proxy is not None and proxy.is_cut:
                    proxy.restore()
                with ThreadPoolExecutor(max(1, len(started))) as pool:
                    list(pool.map(stop_worker, started))
                stop_gateway(c.gateway)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def rows(database_url: str, query: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(query), params))
    finally:
        engine.dispose()


def within(seconds: float, condition: Callable[[], bool], what: str) -> float:
    """Seconds until ``condition()`` held; fails if it did not within ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - started


def assert_runs_settled_once(client: httpx.Client, run_ids: list[str]) -> None:
    """Every run final with a reason, settled once; the user holds nothing and the ledger sums to the balance."""
    runs = wait_final(client, run_ids, timeout=120)
    for run in runs.values():
        assert run["status"] in ("succeeded", "timed_out") or run["error"]["code"], run
    total, cursor, settles = 0, None, 0
    while True:
        page = client.get("/v1/billing/ledger", params={"limit": 100, "cursor": cursor}).json()
        total += sum(entry["amount"] for entry in page["data"])
        settles += sum(entry["kind"] == "settle" for entry in page["data"])
        if (cursor := page["next_cursor"]) is None:
            break
    assert settles == len(run_ids)
    balance = client.get("/v1/billing/balance").json()
    assert balance["held_credits"] == 0
    assert total == balance["credits"]


def test_postgresql_restarted_mid_sweep_and_mid_run(fmus: dict[str, Path]) -> None:
    with deployment("fault-pg", REDIS_URL, proxy_database=True) as (c, proxy):
        assert proxy is not None
        sweeper = c.gateway.client(c.gateway.create_user(credits=5000, tier="pro"))
        single = c.gateway.client(c.gateway.create_user(credits=1000, tier="pro"))
        sweep_id = start_sweep(sweeper, upload(sweeper, fmus["VanDerPol"]), 40, stop_time=5)
        vdp = upload(single, fmus["VanDerPol"])
        run_ids = [submit(single, upload(single, fmus["Hostile"]), start_values={"mode": 4}, timeout_s=4)]
        wait_status(single, run_ids[0], "running")
        wait_until_succeeded(sweeper, sweep_id, 2)

        proxy.cut()
        answers = set()
        outage_ends = time.monotonic() + 6
        while time.monotonic() < outage_ends:
            response = single.get(f"/v1/runs/{run_ids[0]}")
            answers.add(response.status_code)
            assert response.status_code != 503 or response.headers["retry-after"]
            time.sleep(0.5)
        assert answers == {503}, answers
        proxy.restore()

        back = time.monotonic()
        run_ids.append(submit(single, vdp, stop_time=1))
        within(RECOVERY_S, lambda: single.get(f"/v1/runs/{run_ids[-1]}").json()["status"] in FINAL,
               "a run submitted after the outage ended")
        print(f"postgresql back: a new run final after {time.monotonic() - back:.1f} s")
        assert_every_child_settled_once(sweeper, wait_sweep(sweeper, sweep_id, timeout=120))
        assert_runs_settled_once(single, run_ids)
        assert " 500 " not in c.gateway.log_path.read_text()


def test_redis_restarted_mid_sweep_its_queue_is_rebuilt(fmus: dict[str, Path]) -> None:
    with own_redis() as (url, control), deployment("fault-redis", url) as (c, _):
        client = c.gateway.client(c.gateway.create_user(credits=5000, tier="pro"))
        sweep_id = start_sweep(client, upload(client, fmus["VanDerPol"]), 200, stop_time=1)
        wait_until_succeeded(client, sweep_id, 4)
        logs = [c.gateway.log_path, *(worker.log_path for worker in c.workers)]

        def resends() -> int:  # the first start of a process on a fresh Redis sends everything too
            return sum(path.read_text().count("sending every queued run again") for path in logs)

        before = resends()
        control.down()  # without persistence: every message still in Redis is gone
        time.sleep(1)
        control.up()

        def rebuilt() -> bool:
            return resends() > before

        back = time.monotonic()
        print(f"redis back: queue rebuilt after {within(RECOVERY_S, rebuilt, 'the lost queue rebuilt'):.1f} s")
        sweep = wait_sweep(client, sweep_id, timeout=120)
        # Most of the sweep's 25 messages were in Redis: without the rebuild, the children they stood
        # for would wait for the relay's re-send, 120 s after they were handed over.
        finished = time.monotonic() - back
        print(f"redis back: the 200-child sweep finished {finished:.1f} s later")
        assert finished < 60
        assert_every_child_settled_once(client, sweep)


def test_a_worker_killed_holding_a_chunk_its_children_run_again_within_seconds(fmus: dict[str, Path]) -> None:
    with deployment("fault-worker", REDIS_URL) as (c, _):
        client = c.gateway.client(c.gateway.create_user(credits=5000, tier="pro"))
        fmu_id = upload(client, fmus["Hostile"])
        response = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={
            "method": "grid", "parameters": {"mode": [4], "port": list(range(8000, 8030))}, **SLEEPING})
        assert response.status_code == 202, response.text
        sweep_id = response.json()["id"]
        victim = c.workers[0]
        owner_prefix = f"%:{victim.process.pid}:%"

        def held() -> list[str]:
            return [row.id for row in rows(c.database_url, "SELECT id FROM runs WHERE sweep_id = :s AND "
                                           "status = 'running' AND lease_owner LIKE :o", s=sweep_id, o=owner_prefix)]

        within(60, lambda: bool(held()), "the victim holding children")
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        lost = held()
        assert lost
        taken = within(RECOVERY_S, lambda: not held(), "the dead worker's children taken back")
        print(f"worker killed holding {len(lost)} children: queued again after {taken:.1f} s")
        sweep = wait_sweep(client, sweep_id, timeout=120)
        assert_every_child_settled_once(client, sweep)
        attempts = {row.id: row.attempts for row in rows(c.database_url, "SELECT id, attempts FROM runs "
                                                              "WHERE sweep_id = :s", s=sweep_id)}
        assert all(attempts[run_id] == 2 for run_id in lost), attempts


def restart(gateway: Gateway) -> Gateway:
    """The same API again, where its clients expect it, after it was SIGKILLed."""
    os.kill(gateway.process.pid, signal.SIGKILL)
    gateway.process.wait()
    overrides = {k: v for k, v in gateway.env.items() if k.startswith("FMU_GATEWAY_")}
    return start_gateway(gateway.var_dir, port=int(gateway.base_url.rsplit(":", 1)[1]), **overrides)


def test_the_api_killed_mid_sweep_with_workers_loses_nothing(fmus: dict[str, Path]) -> None:
    with deployment("fault-api", REDIS_URL) as (c, _):
        key = c.gateway.create_user(credits=5000, tier="pro")
        client = c.gateway.client(key)
        fmu_id = upload(client, fmus["VanDerPol"])
        sweep_id = start_sweep(client, fmu_id, 120, stop_time=1)
        killed = time.monotonic()
        c.gateway = restart(c.gateway)  # the workers go on: the database is their queue's truth
        client = c.gateway.client(key)
        sweep = wait_sweep(client, sweep_id, timeout=120)
        # Not the relay's re-send of lost messages (dispatch_redeliver_s, 120 s): the workers' relay
        # sends what the dead API had not, 2 s after the sweep's creation.
        assert time.monotonic() - killed < 60
        print(f"api killed mid-sweep: the sweep finished {time.monotonic() - killed:.1f} s after the kill")
        assert_every_child_settled_once(client, sweep)


def test_the_embedded_api_killed_mid_sweep_resumes_within_seconds_of_its_restart(fmus: dict[str, Path]) -> None:
    var_dir = REPO_ROOT / "var" / f"test-fault-embedded-{uuid.uuid4().hex[:8]}"
    database_url = f"sqlite:///{var_dir / 'fmu_gateway.db'}"
    gateway = start_gateway(var_dir, FMU_GATEWAY_DATABASE_URL=database_url, **AS_DEPLOYED)
    try:
        key = gateway.create_user(credits=5000, tier="pro")
        client = gateway.client(key)
        fmu_id = upload(client, fmus["Hostile"])
        response = client.post(f"/v1/fmus/{fmu_id}/sweeps", json={
            "method": "grid", "parameters": {"mode": [4], "port": list(range(8000, 8020))}, **SLEEPING})
        assert response.status_code == 202, response.text
        sweep_id = response.json()["id"]
        within(30, lambda: client.get(f"/v1/sweeps/{sweep_id}").json()["counts"]["running"] > 0, "the sweep running")
        gateway = restart(gateway)
        client = gateway.client(key)

        def orphans() -> int:
            """Children the dead process was running, and nobody else yet."""
            return int(rows(database_url, "SELECT count(*) FROM runs WHERE sweep_id = :s AND status = 'running' "
                            "AND lease_owner NOT LIKE :o", s=sweep_id, o=f"%:{gateway.process.pid}:%")[0][0])

        taken = within(RECOVERY_S, lambda: orphans() == 0, "the dead process's children taken back")
        print(f"embedded api killed mid-sweep: its children queued again {taken:.1f} s after its restart")
        assert_every_child_settled_once(client, wait_sweep(client, sweep_id, timeout=120))
    finally:
        stop_gateway(gateway)
        shutil.rmtree(var_dir, ignore_errors=True)
