"""The FMUs the benchmarks run: the project's own, built here, or OpenModelica's MassSpringSystem
from the ``gemseo-fmu`` package (fetched once into var/thirdparty-fmus)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "private-api" / "tests"), str(REPO_ROOT / "private-api" / "tests" / "api")]

from fmus.build import build_fmu
from thirdparty.fetch import fetch_thirdparty_fmus


def bench_fmu(name: str, work: Path) -> Path:
    if name == "MassSpringSystem":
        return fetch_thirdparty_fmus(REPO_ROOT / "var" / "thirdparty-fmus")["om_fmi2"]
    return build_fmu(name, work)
