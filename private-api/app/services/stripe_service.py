"""Stripe integration point. Usage reporting per run is recorded here; payments, checkout and
meter events arrive with the billing work (see docs/monetization.md)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class StripeService:
    def charge_per_execution(self, run_id: str, credits: int) -> None:
        """Record a run's usage. Until Stripe metering is configured this only logs it."""
        log.info("usage: run %s charged %d credit(s)", run_id, credits)
