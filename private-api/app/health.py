"""``/healthz`` (liveness: the process answers; it touches nothing else, so a database outage never
restarts it), ``/readyz`` (readiness: the database, blob storage, the broker when one is
configured, and a sandbox starting where this process executes runs) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from app import __version__, metrics
from app.auth.dependencies import Ctx
from app.context import AppContext
from app.errors import ProblemError
from app.sandbox.backends import NoSandboxes

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])

# A sandbox start costs a process tree: a probe every few seconds reuses the last answer this long.
SANDBOX_CHECK_TTL_S = 60.0
SANDBOX_READY_TIMEOUT_S = 30.0
Check = Literal["ok", "failing", "not_used"]


class Health(BaseModel):
    status: str
    version: str
    sandbox: str


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, Check] = Field(description="database, storage, broker, sandbox: each ok, or not_used here.")


class NotReady(ProblemError):
    status = 503
    code = "not_ready"
    title = "Not ready to serve"


@router.get("/healthz", response_model=Health)
async def healthz(ctx: Ctx) -> Health:
    return Health(status="ok", version=__version__, sandbox=ctx.settings.sandbox)


class MetricsForbidden(ProblemError):
    status = 403
    code = "metrics_forbidden"
    title = "Metrics are not served to this client"


@router.get("/metrics", include_in_schema=False)
def metrics_text(request: Request, ctx: Ctx) -> Response:
    """Prometheus text: to ``Authorization: Bearer <FMU_GATEWAY_METRICS_TOKEN>`` when a token is set,
    else to clients on this host only."""
    token = ctx.settings.metrics_token.get_secret_value()
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise MetricsForbidden("Send the metrics token as Authorization: Bearer.")
    elif request.client is None or not ipaddress.ip_address(request.client.host).is_loopback:
        raise MetricsForbidden("Without FMU_GATEWAY_METRICS_TOKEN, metrics are served on this host only.")
    return Response(metrics.exposition(ctx.db, ctx.free_space.free_bytes), media_type=metrics.CONTENT_TYPE)


@router.get("/readyz", response_model=Readiness)
def readyz(ctx: Ctx) -> Readiness:
    """200 when every dependency answers; 503 ``not_ready`` naming the ones that do not."""
    checks = {name: _run(name, probe) for name, probe in _probes(ctx).items()}
    if any(result == "failing" for result in checks.values()):
        failing = sorted(name for name, result in checks.items() if result == "failing")
        raise NotReady(f"Not ready: {', '.join(failing)} failing.", checks=checks, headers={"Retry-After": "5"})
    return Readiness(status="ready", checks=checks)


def _probes(ctx: AppContext) -> dict[str, Callable[[], Check]]:
    def database() -> Check:
        with ctx.db.session() as session:
            session.execute(text("SELECT 1"))
        return "ok"

    def storage() -> Check:
        ctx.storage.check()
        return "ok"

    def broker() -> Check:
        return "ok" if ctx.dispatcher.check() else "not_used"

    return {"database": database, "storage": storage, "broker": broker,
            "sandbox": lambda: _sandbox_check(ctx)}


def _run(name: str, probe: Callable[[], Check]) -> Check:
    try:
        return probe()
    except Exception as exc:
        log.warning("readiness: %s failing: %s: %s", name, type(exc).__name__, exc)
        return "failing"


_sandbox_lock = threading.Lock()
_sandbox_checked: dict[int, tuple[float, Check]] = {}


def _sandbox_check(ctx: AppContext) -> Check:
    """Whether a sandbox of this process's backend starts, as last seen within SANDBOX_CHECK_TTL_S."""
    backend = ctx.runner.sandboxes.backend
    if isinstance(backend, NoSandboxes):
        return "not_used"
    with _sandbox_lock:  # concurrent probes wait for one start
        seen = _sandbox_checked.get(id(ctx))
        if seen is not None and time.monotonic() - seen[0] < SANDBOX_CHECK_TTL_S:
            return seen[1]
        result: Check = "failing"
        try:
            with backend.start(ctx.runner.sandboxes.limits) as sandbox:
                result = "ok" if sandbox.wait_ready(SANDBOX_READY_TIMEOUT_S) else "failing"
        except Exception as exc:
            log.warning("readiness: no sandbox starts: %s: %s", type(exc).__name__, exc)
        _sandbox_checked[id(ctx)] = (time.monotonic(), result)
        return result
