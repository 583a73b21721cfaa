"""Prices and limits, read from ``shared-specs/pricing_tiers.json`` (their single source)."""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel

from app.config import REPO_ROOT
from app.errors import ProblemError

# An installed package (an image) has no repository beside it: the image points here instead.
PRICING_FILE = Path(os.environ.get("FMU_GATEWAY_PRICING_FILE") or REPO_ROOT / "shared-specs" / "pricing_tiers.json")


class CostModel(BaseModel):
    run_base_credits: int
    included_cpu_seconds: float
    credits_per_cpu_second: float


class Tier(BaseModel):
    id: str
    name: str
    monthly_price_usd: float | None  # None: sold by contract, not through Checkout
    monthly_included_credits: int
    max_concurrent_runs: int
    max_run_seconds: float
    max_fmu_bytes: int
    storage_quota_bytes: int
    result_retention_days: int
    requests_per_minute: int
    max_sweep_children: int
    cache_hit_credits: int  # a run served from the run cache
    platform_fee_percent: int  # the platform's share of what this tier's users earn from shared models


class CreditPack(BaseModel):
    id: str
    name: str
    credits: int
    price_usd: float


class Pricing(BaseModel):
    version: int
    currency: str
    credit_value_usd: float
    cost_model: CostModel
    tiers: list[Tier]
    credit_packs: list[CreditPack]

    def tier(self, tier_id: str) -> Tier:
        for tier in self.tiers:
            if tier.id == tier_id:
                return tier
        raise UnknownPrice(f"No tier {tier_id!r}; tiers: {', '.join(t.id for t in self.tiers)}.")

    def pack(self, pack_id: str) -> CreditPack:
        for pack in self.credit_packs:
            if pack.id == pack_id:
                return pack
        raise UnknownPrice(f"No credit pack {pack_id!r}; packs: {', '.join(p.id for p in self.credit_packs)}.")


class UnknownPrice(ProblemError):
    status = 422
    code = "unknown_price"
    title = "Unknown tier or credit pack"


@lru_cache
def load_pricing(path: Path = PRICING_FILE) -> Pricing:
    return Pricing.model_validate_json(path.read_text())


def _cpu_charge(cpu_seconds: float) -> int:
    model = load_pricing().cost_model
    billable = max(0.0, cpu_seconds - model.included_cpu_seconds)
    # Rounded to 1 µs first so float noise (e.g. 5.000000001) does not cost a whole credit.
    return model.run_base_credits + math.ceil(round(billable * model.credits_per_cpu_second, 6))


def run_hold(timeout_s: float) -> int:
    """Credits held at submission: the cost of a run that uses one CPU for its whole timeout."""
    return _cpu_charge(timeout_s)


def run_cost(cpu_seconds: float | None, hold: int) -> int:
    """What a finished run is charged: its CPU time priced, never more than it held."""
    return min(hold, _cpu_charge(cpu_seconds or 0.0))


def cache_hit_price(tier_id: str) -> int:
    """What a run served from the run cache costs."""
    return load_pricing().tier(tier_id).cache_hit_credits


def platform_fee(owner_tier_id: str, gross: int) -> int:
    """The platform's share of ``gross`` credits a model's owner earns (rounded down: the owner's favour)."""
    return gross * load_pricing().tier(owner_tier_id).platform_fee_percent // 100
