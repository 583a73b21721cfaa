"""Prometheus metrics: every series the service exports, in one place, and what ``GET /metrics``
answers.

Several processes write them (the API's workers, ``fmu-gateway-admin worker`` processes on the
same host): prometheus_client's multiprocess mode keeps each process's values in files under
``<var_dir>/metrics``, summed at each scrape. prometheus_client chooses where values live when it
is first imported, so this module names the directory before importing it; a worker on another
host serves its own (``FMU_GATEWAY_METRICS_PORT``). The queue's depth is read from the database
at each scrape: it is the same whichever process asks.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from app.config import get_settings

if TYPE_CHECKING:
    from app.db import Database
    from app.runs.models import Run


def _multiprocess_dir() -> Path:
    # From this process's settings, whatever the environment inherited: each var dir its own.
    directory = get_settings().var_dir / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    # Files of processes that are gone: their values reset (Prometheus reads a counter's reset as one).
    for stale in directory.glob("*_*.db"):
        pid = re.search(r"_(\d+)\.db$", stale.name)
        if pid and not _alive(int(pid.group(1))):
            with contextlib.suppress(OSError):
                stale.unlink()
    return directory


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_multiprocess_dir())

from prometheus_client import (  # noqa: E402  (after the directory is set: see the module docstring)
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from app.runs import repository as run_repository  # noqa: E402

# Runs last from well under a second to hours; the buckets span it.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

RUNS = Counter("fmu_gateway_runs", "Runs that ended, by final status.", ["status"])
RUN_DURATION = Histogram("fmu_gateway_run_duration_seconds", "Wall time of a run in its sandbox.",
                         buckets=DURATION_BUCKETS)
QUEUE_WAIT = Histogram("fmu_gateway_queue_wait_seconds", "From a run's submission to its start in a sandbox.",
                       buckets=DURATION_BUCKETS)
SANDBOX_START = Histogram("fmu_gateway_sandbox_start_seconds", "Time to have a sandbox ready for a run.",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
CREDITS_SETTLED = Counter("fmu_gateway_credits_settled", "Credits charged for runs.")
HTTP_REQUESTS = Counter("fmu_gateway_http_requests", "HTTP requests by route template and status.",
                        ["route", "status"])
CONTENT_TYPE = CONTENT_TYPE_LATEST


def runs_settled(runs: Iterable[tuple[Run, int]]) -> None:
    """Runs that ended and what each was charged (their settlement: each run once)."""
    for run, cost in runs:
        RUNS.labels(status=str(run.status)).inc()
        if cost > 0:
            CREDITS_SETTLED.inc(cost)
        if run.wall_time_s is not None:
            RUN_DURATION.observe(run.wall_time_s)
        if run.started_at is not None and run.created_at is not None:
            QUEUE_WAIT.observe(max(0.0, (run.started_at - run.created_at).total_seconds()))


# The series read from live state at each scrape (every other is a counter or histogram above).
QUEUE_DEPTH = "fmu_gateway_queue_depth"
STORAGE_FREE = "fmu_gateway_storage_free_bytes"


class QueueDepth(Collector):
    """``fmu_gateway_queue_depth{tenant}``: queued runs per user (the deepest 100), read at the scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(QUEUE_DEPTH, "Queued runs per tenant.", labels=["tenant"])
        with self.db.session() as session:
            for user_id, queued in run_repository.queued_per_user(session, limit=100):
                family.add_metric([user_id], queued)
        yield family


class StorageFree(Collector):
    """``fmu_gateway_storage_free_bytes``: what local blob storage has free, as admission sees it
    (``app.storage.space``); absent where storage has no such limit (S3)."""

    def __init__(self, free_bytes: Callable[[], int | None]) -> None:
        self.free_bytes = free_bytes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        free = self.free_bytes()
        if free is not None:
            yield GaugeMetricFamily(STORAGE_FREE, "Free bytes of local blob storage.", value=free)


def _summed() -> CollectorRegistry:
    """A registry of every process's values on this host, summed when collected."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def serve_worker_metrics(host: str, port: int) -> None:
    """A worker's own /metrics (its host's processes summed), on a daemon thread."""
    start_http_server(port, addr=host, registry=_summed())


def exposition(db: Database | None, free_bytes: Callable[[], int | None] | None = None) -> bytes:
    """Every process's values summed, the queue's depth where a database is given, and the blob
    storage's free bytes where ``free_bytes`` is."""
    registry = _summed()
    if db is not None:
        registry.register(QueueDepth(db))
    if free_bytes is not None:
        registry.register(StorageFree(free_bytes))
    return generate_latest(registry)
