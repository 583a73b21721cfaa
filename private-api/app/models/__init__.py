"""SQLAlchemy models; importing this package registers every table on ``Base.metadata``."""

from app.models.base import Base
from app.models.billing import IdempotencyRecord, LedgerEntry, StripeEvent, UsageEvent
from app.models.fmu import Fmu
from app.models.run import Run
from app.models.sweep import Sweep
from app.models.user import ApiKey, User

__all__ = ["ApiKey", "Base", "Fmu", "IdempotencyRecord", "LedgerEntry", "Run", "StripeEvent", "Sweep",
           "UsageEvent", "User"]
