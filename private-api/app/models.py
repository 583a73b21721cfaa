"""Every table of the service: importing this module registers each domain's models on ``Base.metadata``
(Alembic and the test databases need them all; code imports a model from its domain)."""

from app.auth.models import ApiKey, User
from app.billing.models import IdempotencyRecord, LedgerEntry, StripeEvent, UsageEvent
from app.fmus.models import Fmu
from app.kit.models import Base
from app.runs.models import Run
from app.sharing.models import FmuGrant
from app.sweeps.models import Sweep

__all__ = ["ApiKey", "Base", "Fmu", "FmuGrant", "IdempotencyRecord", "LedgerEntry", "Run", "StripeEvent",
           "Sweep", "UsageEvent", "User"]
