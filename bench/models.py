"""What the benchmarks run: the FMUs (the project's own, built here, or OpenModelica's
MassSpringSystem from the ``gemseo-fmu`` package, fetched once into var/thirdparty-fmus) and a
gateway of ``make run`` defaults in a var dir of its own."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "private-api" / "tests"), str(REPO_ROOT / "private-api" / "tests" / "api")]

from fmus.build import build_fmu
from gateway_process import Gateway, start_gateway, stop_gateway
from thirdparty.fetch import fetch_thirdparty_fmus


def bench_fmu(name: str, work: Path) -> Path:
    if name == "MassSpringSystem":
        return fetch_thirdparty_fmus(REPO_ROOT / "var" / "thirdparty-fmus")["om_fmi2"]
    return build_fmu(name, work)


@contextmanager
def bench_gateway(**overrides: str) -> Iterator[Gateway]:
    """A gateway for one benchmark: its log's tail printed if the benchmark fails, its var dir removed."""
    var_dir = REPO_ROOT / "var" / f"bench-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(var_dir, **overrides)
    try:
        yield gateway
    except Exception:
        print(gateway.log_path.read_text()[-5000:], file=sys.stderr)
        raise
    finally:
        stop_gateway(gateway)
        shutil.rmtree(var_dir, ignore_errors=True)
