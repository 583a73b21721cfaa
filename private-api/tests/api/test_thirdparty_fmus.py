"""Real third-party FMUs (OpenModelica FMI 2.0, Reference-FMUs FMI 3.0) through the API give
the same values as fmpy.simulate_fmu on the same FMU and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fmpy
import httpx
import pytest
from gateway_process import REPO_ROOT
from test_runs import assert_same_as_fmpy, result_table, run
from thirdparty.fetch import fetch_thirdparty_fmus


@pytest.fixture(scope="module")
def thirdparty() -> dict[str, Path]:
    found = fetch_thirdparty_fmus(REPO_ROOT / "var" / "thirdparty-fmus")
    if not found:
        pytest.skip("third-party FMUs could not be downloaded from the package index")
    return found


CASES = [
    ("om_fmi2", "CoSimulation", {"stop_time": 1, "output_interval": 0.01}, {}),
    ("om_fmi2", "ModelExchange", {"stop_time": 1}, {"m1": 2.0, "k2": 3.0}),
    ("om_fmi2_ramp", "ModelExchange", {"stop_time": 1}, {"ramp.height": 2.0}),
    ("om_fmi2_ramp", "CoSimulation", {"stop_time": 1, "output_interval": 0.05}, {"ramp.height": 2.0}),
    ("fmi3", "CoSimulation", {"stop_time": 5, "output_interval": 0.01}, {"mu": 2.0}),
    ("fmi3", "ModelExchange", {"stop_time": 5}, {}),
    ("fmi3_bouncing_ball", "ModelExchange", {"stop_time": 3}, {"e": 0.5}),
]


@pytest.mark.parametrize(("name", "fmi_type", "settings", "start_values"), CASES)
def test_thirdparty_fmu_matches_fmpy(alice: httpx.Client, thirdparty: dict[str, Path], name: str,
                                     fmi_type: str, settings: dict[str, Any],
                                     start_values: dict[str, float]) -> None:
    if name not in thirdparty:
        pytest.skip(f"{name} was not downloaded")
    path = thirdparty[name]
    with path.open("rb") as handle:
        fmu = alice.post("/v1/fmus", files={"file": (path.name, handle)}).json()
    body = run(alice, fmu["id"], fmi_type=fmi_type, start_values=start_values, **settings)
    assert body["status"] == "succeeded", body
    reference = fmpy.simulate_fmu(str(path), fmi_type=fmi_type, start_values=start_values, **settings)
    assert_same_as_fmpy(result_table(alice, body["id"]), reference)
