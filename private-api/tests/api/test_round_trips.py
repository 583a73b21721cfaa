"""The lean single-run path: how many SQL statements one run costs, from submission (with ``?wait=``)
to its downloaded result, counted on the server's own engine. A real app in this process (its
lifespan, dispatcher and warm sandboxes), real SQLite, a real bwrap sandbox."""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

with warnings.catch_warnings():  # starlette's TestClient warns about the httpx it is built on
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from app.auth import service as auth_service
from app.config import Settings
from app.main import create_app
from app.migrate import upgrade

# Statements per run, submission to download, BEGINs and savepoints included (24 today): API-key
# checks 4; submit 10 (FMU, the run cache's look-up, insert, hold, the user's lock, the active-run
# count, and the claim: a worker of this process that is free takes the run in the same
# transaction, with nothing to read);
# finish 8 (the result fields returning the row, settle and release in one insert, the charge, the
# usage event); the download's read 2. The in-process hand-over writes nothing, and ``?wait=``
# answers from the worker's own outcome. A change that adds a round trip to every run says so here.
BUDGET = 24
# With an Idempotency-Key (the SDK always sends one): two reads in the submit transaction (a run
# under the key, another route's response under it), no write of a stored response.
KEYED_BUDGET = BUDGET + 2


BACKGROUND_THREADS = frozenset({"dispatch-housekeeper", "lease-renewer", "usage-reporter"})


def wait_for_a_free_worker(client: TestClient) -> None:
    """Until the worker has put the last run's sandbox away (it is booked until then)."""
    dispatcher = client.app.state.ctx.dispatcher  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not dispatcher.reserve():
        assert time.monotonic() < deadline, "a booked worker was never given back"
        time.sleep(0.01)
    dispatcher.cancel_reservation()


class StatementCounter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.on = False

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The run's own statements: the background loops' (relay, lease renewal) run on a timer.
        if self.on and threading.current_thread().name not in BACKGROUND_THREADS:
            with self.lock:
                self.counts[" ".join(statement.split()[:3])] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[TestClient, StatementCounter, str]]:
    settings = Settings(var_dir=tmp_path, workers=1, rate_limit_per_minute=0, redis_url="", broker_url="")
    upgrade(settings.resolved_database_url)
    app = create_app(settings)
    counter = StatementCounter()
    with TestClient(app) as client:
        ctx = app.state.ctx
        event.listen(ctx.db.engine, "before_cursor_execute", counter)
        with ctx.db.session(write=True) as session:
            user = auth_service.create_user(session, "lean@example.com", 1000)
            key = auth_service.issue_api_key(session, user, settings.secret_key.get_secret_value())
            session.commit()
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, counter, key


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "idempotency-key"])
def test_one_run_costs_few_database_round_trips(app_client: tuple[TestClient, StatementCounter, str],
                                                fmus: dict[str, Path], keyed: bool) -> None:
    client, counter, _ = app_client
    fmu = fmus["VanDerPol"]
    fmu_id = client.post("/v1/fmus", files={"file": (fmu.name, fmu.read_bytes())}).json()["id"]
    for i in range(3):  # warm: the FMU cache, the tenant's warm sandbox, every prepared path
        headers = {"Idempotency-Key": f"lean-{keyed}-{i}"} if keyed else {}
        wait_for_a_free_worker(client)
        counter.on = i == 2
        # Each run a new one: the run cache looks it up, finds nothing, and it is computed.
        spec = {"stop_time": 1.0 + i / 10}
        run = client.post(f"/v1/fmus/{fmu_id}/runs", params={"wait": 30}, json=spec, headers=headers)
        assert run.status_code == 200 and run.json()["status"] == "succeeded", run.text
    assert client.get(f"/v1/runs/{run.json()['id']}/result").status_code == 200
    counter.on = False
    budget = KEYED_BUDGET if keyed else BUDGET
    assert counter.total <= budget, f"{counter.total} statements: {dict(counter.counts)}"
    assert not any("idempotency_records" in statement and not statement.startswith("SELECT")
                   for statement in counter.counts), dict(counter.counts)


def test_a_free_worker_takes_the_run_in_its_submission_and_a_busy_one_leaves_it_queued(
        app_client: tuple[TestClient, StatementCounter, str], fmus: dict[str, Path]) -> None:
    client, _, _ = app_client  # one worker thread
    hostile = fmus["Hostile"]
    fmu_id = client.post("/v1/fmus", files={"file": (hostile.name, hostile.read_bytes())}).json()["id"]
    sleeper = {"start_values": {"mode": 4}, "timeout_s": 2}  # sleeps until its deadline
    first = client.post(f"/v1/fmus/{fmu_id}/runs", json=sleeper)
    assert first.status_code == 202 and first.json()["status"] == "running", first.text  # claimed on submission
    second = client.post(f"/v1/fmus/{fmu_id}/runs", json=sleeper)
    assert second.status_code == 202 and second.json()["status"] == "queued", second.text  # the worker is busy
    for run in (first, second):
        final = client.get(f"/v1/runs/{run.json()['id']}", params={"wait": 30}).json()
        assert final["status"] == "timed_out", final
        assert final["credits_charged"] <= final["credits_held"]
    wait_for_a_free_worker(client)  # every booking was given back


def test_a_run_claimed_in_its_submission_is_cancelled_at_once(
        app_client: tuple[TestClient, StatementCounter, str], fmus: dict[str, Path]) -> None:
    client, _, _ = app_client
    hostile = fmus["Hostile"]
    fmu_id = client.post("/v1/fmus", files={"file": (hostile.name, hostile.read_bytes())}).json()["id"]
    run = client.post(f"/v1/fmus/{fmu_id}/runs", json={"start_values": {"mode": 4}, "timeout_s": 60})
    assert run.json()["status"] == "running", run.text
    cancelled = client.post(f"/v1/runs/{run.json()['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    wait_for_a_free_worker(client)  # its sandbox was killed: the worker is free long before the 60 s deadline
    assert client.get(f"/v1/runs/{run.json()['id']}").json()["status"] == "cancelled"
