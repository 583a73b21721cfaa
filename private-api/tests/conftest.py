"""Fixtures shared by every test: the project's own FMUs, compiled once per session with gcc."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

from databases import BACKENDS, temporary_database  # noqa: E402
from fmus.build import build_all  # noqa: E402
from s3_server import S3Server, running_s3_server  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402


@pytest.fixture(scope="session")
def fmus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of the compiled test FMUs by name (VanDerPol, Feedthrough, Hostile, BouncingBall3)."""
    return build_all(tmp_path_factory.mktemp("fmus"))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1, started once; tests make buckets of their own on it."""
    with running_s3_server() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database: SQLite, then PostgreSQL."""
    with temporary_database(request.param, tmp_path) as url:
        upgrade(url)
        database = Database(Settings(var_dir=tmp_path, database_url=url))
        try:
            yield database
        finally:
            database.dispose()


# FMPy's native logger proxy keeps one process-wide pointer to the Python logger of the last
# simulate_fmu(); once that call returns, the callback is freed and the pointer dangles, and an FMU
# instantiated later with FMPy's default callbacks logs through it (a segfault when the memory
# was reused). Sandboxes never meet this (a run per process, or one simulate at a time); tests
# that use FMPy in this process do: after each, the pointer goes back to a callback that lives.
_FMPY_LOGGER: list[object] = []  # the callback, once made: it must live as long as the process


@pytest.fixture(autouse=True)
def _fmpy_logger_proxy_stays_valid() -> Iterator[None]:
    yield
    if "fmpy.fmi2" not in sys.modules:
        return
    from ctypes import byref

    from fmpy import fmi2
    from fmpy.logging import addLoggerProxy

    if not _FMPY_LOGGER:
        _FMPY_LOGGER.append(fmi2.fmi2CallbackLoggerTYPE(fmi2.printLogMessage))
    callbacks = fmi2.fmi2CallbackFunctions()
    callbacks.logger = _FMPY_LOGGER[0]  # the proxy takes it from here and puts itself in its place
    addLoggerProxy(byref(callbacks))
