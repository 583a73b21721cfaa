"""Logs as a log pipeline reads them (``FMU_GATEWAY_LOG_FORMAT=json``): one JSON object a line, the
request, user, run and sweep ids bound where known; and no secret, key or token in them, whatever
the requests carried (canaries: every credential this gateway saw)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gateway_process import JWT_SECRET, SECRET_KEY, running_gateway

METRICS_TOKEN = "metrics-canary-7f3a9c"


def test_json_lines_carry_the_ids_and_never_a_secret(fmus: dict[str, Path]) -> None:
    with running_gateway("logs", FMU_GATEWAY_LOG_FORMAT="json", FMU_GATEWAY_METRICS_TOKEN=METRICS_TOKEN) as gateway:
        key = gateway.create_user(credits=100)
        client = gateway.client(key)
        token = client.post("/v1/auth/token").json()["access_token"]
        second_key = client.post("/v1/api-keys", json={"name": "ci"}).json()["secret"]
        wrong_key = "fmu_test_" + "c4nary" * 6
        for credential in (wrong_key, "not-a-key canary-garbage", token + "x"):
            assert gateway.client(credential).get("/v1/fmus").status_code == 401
        fmu = client.post("/v1/fmus", files={"file": ("v.fmu", fmus["VanDerPol"].read_bytes())}).json()["id"]
        run = client.post(f"/v1/fmus/{fmu}/runs", params={"wait": 60}, json={"stop_time": 1},
                          headers={"X-Request-ID": "trace-logs-1"}).json()
        assert run["status"] == "succeeded"
        sweep = client.post(f"/v1/fmus/{fmu}/sweeps", json={
            "method": "list", "parameters": [{"mu": 1.0}, {"mu": 2.0}], "stop_time": 1}).json()
        assert gateway.client(None).get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) \
            .status_code == 200
        gateway.client(None).get("/metrics", headers={"Authorization": "Bearer wrong-canary"})
        deadline = time.monotonic() + 60
        while client.get(f"/v1/sweeps/{sweep['id']}").json()["status"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.1)

        text = gateway.log_path.read_text()
    records: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "uvicorn.access" for r in records)
    # A run's records name it; the request that made it is traced by the id the client sent.
    assert any(r.get("run_id") == run["id"] and "sandbox" in r["message"] for r in records)
    assert any(r.get("sweep_id") == sweep["id"] for r in records)
    # The request's access line carries the id the client sent and who sent it.
    [submitted] = [r for r in records if r.get("request_id") == "trace-logs-1"]
    assert submitted["logger"] == "uvicorn.access" and f"/v1/fmus/{fmu}/runs" in submitted["message"]
    assert submitted.get("user_id", "").startswith("usr_")
    for secret in (key, second_key, token, wrong_key, "canary-garbage", SECRET_KEY, JWT_SECRET, METRICS_TOKEN,
                   "wrong-canary"):
        assert secret not in text, f"a secret is in the logs: {secret[:12]}…"
