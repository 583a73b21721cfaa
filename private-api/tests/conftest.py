"""Fixtures shared by every test: the project's own FMUs, compiled once per session with gcc."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

from fmus.build import build_all  # noqa: E402


@pytest.fixture(scope="session")
def fmus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of the compiled test FMUs by name (VanDerPol, Feedthrough, Hostile, BouncingBall3)."""
    return build_all(tmp_path_factory.mktemp("fmus"))
