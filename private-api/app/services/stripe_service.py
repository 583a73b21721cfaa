"""Stripe: usage reporting per run (Billing Meter Events through a database outbox)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import Run, UsageEvent

# The meter's event name in Stripe; each event carries the run's credits as its value.
METER_EVENT_NAME = "fmu_gateway_credits"


class StripeService:
    @staticmethod
    def charge_per_execution(session: Session, run: Run) -> None:
        """Record a finished run's usage in the outbox, in the transaction that settles it; the
        flusher reports it to Stripe with the run id as the meter event's identifier."""
        if run.credits_charged > 0:
            session.add(UsageEvent(user_id=run.user_id, identifier=run.id, event_name=METER_EVENT_NAME,
                                   value=run.credits_charged))
            session.flush()
