"""Prices and limits, read from ``shared-specs/pricing_tiers.json`` (their single source)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.config import REPO_ROOT

PRICING_FILE = REPO_ROOT / "shared-specs" / "pricing_tiers.json"


@lru_cache
def load_pricing(path: Path = PRICING_FILE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run_hold_credits() -> int:
    """Credits held when a run is submitted: its worst-case cost."""
    return int(load_pricing()["cost_model"]["run_base_credits"])
