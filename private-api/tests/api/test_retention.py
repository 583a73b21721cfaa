"""Result retention: a run's result and log are removed once its tier's ``result_retention_days``
have passed since it finished (storage and row alike); the run stays listed with
``result_expired_at``, and its result and log answer 410 ``result_expired``."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
from gateway_process import Gateway, running_gateway
from problems import assert_problem

from app.kit.models import utcnow
from app.runs.models import Run


def finished_run(gateway: Gateway, fmus: dict[str, Path], tier: str) -> tuple[httpx.Client, str]:
    client = gateway.client(gateway.create_user(credits=100, tier=tier))
    fmu = client.post("/v1/fmus", files={"file": ("v.fmu", fmus["VanDerPol"].read_bytes())}).json()["id"]
    run = client.post(f"/v1/fmus/{fmu}/runs", params={"wait": 60}, json={"stop_time": 1, "debug_logging": True}).json()
    assert run["status"] == "succeeded"
    assert client.get(f"/v1/runs/{run['id']}/result").status_code == 200
    assert client.get(f"/v1/runs/{run['id']}/log").text  # debug logging: a log to remove as well
    return client, run["id"]


def finished_days_ago(gateway: Gateway, days: float, *run_ids: str) -> None:
    # The gateway writes to the same file: wait for its write lock as it waits for ours.
    engine = sa.create_engine(f"sqlite:///{gateway.var_dir / 'fmu_gateway.db'}", connect_args={"timeout": 30})
    try:
        with engine.begin() as connection:
            connection.execute(sa.update(Run).where(Run.id.in_(run_ids))
                               .values(finished_at=utcnow() - timedelta(days=days)))
    finally:
        engine.dispose()


def stored(gateway: Gateway, run_id: str) -> set[str]:
    return {path.name for path in (gateway.var_dir / "storage" / "runs" / run_id).glob("*")}


def assert_expired(client: httpx.Client, gateway: Gateway, run_id: str) -> None:
    run = client.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded" and run["result_expired_at"] is not None
    assert run_id in {listed["id"] for listed in client.get("/v1/runs").json()["data"]}
    for path in (f"/v1/runs/{run_id}/result", f"/v1/runs/{run_id}/log"):
        assert_problem(client.get(path), 410, "result_expired")
    assert stored(gateway, run_id) == set()


def test_purge_removes_what_is_past_each_tiers_retention_and_nothing_else(fmus: dict[str, Path]) -> None:
    with running_gateway("retention", FMU_GATEWAY_RETENTION_INTERVAL_S="0") as gateway:
        free, old_free = finished_run(gateway, fmus, "free")  # kept 7 days
        pro, old_pro = finished_run(gateway, fmus, "pro")  # kept 30 days
        _, recent = finished_run(gateway, fmus, "free")
        assert stored(gateway, old_free) == {"result.arrow", "log.txt"}
        finished_days_ago(gateway, 10, old_free, old_pro)

        purged = gateway.admin("purge")
        assert purged.returncode == 0, purged.stderr
        assert "1 run(s) past retention" in purged.stdout, purged.stdout + purged.stderr
        assert_expired(free, gateway, old_free)
        assert pro.get(f"/v1/runs/{old_pro}").json()["result_expired_at"] is None
        assert pro.get(f"/v1/runs/{old_pro}/result").status_code == 200
        assert stored(gateway, recent) == {"result.arrow", "log.txt"}
        assert "0 run(s) past retention" in gateway.admin("purge").stdout


def test_every_process_purges_on_its_own_schedule(fmus: dict[str, Path]) -> None:
    with running_gateway("retention-auto", FMU_GATEWAY_RETENTION_INTERVAL_S="0.5",
                         FMU_GATEWAY_DISPATCH_POLL_S="0.2") as gateway:
        client, run_id = finished_run(gateway, fmus, "free")
        finished_days_ago(gateway, 8, run_id)
        deadline = time.monotonic() + 20
        while client.get(f"/v1/runs/{run_id}").json()["result_expired_at"] is None:
            assert time.monotonic() < deadline, "the housekeeper never purged it"
            time.sleep(0.2)
        assert_expired(client, gateway, run_id)
