from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.kit.models import Base, JSONType, UTCDateTime, new_id, utcnow

# What an API key may do; a key without a scope gets 403 insufficient_scope for that action.
SCOPES = ("fmus:read", "fmus:write", "runs:read", "runs:write", "billing:read", "billing:write",
          "keys:read", "keys:write")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("credits >= 0", name="credits_non_negative"),
        CheckConstraint("debt_credits >= 0", name="debt_non_negative"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("usr"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # How others see this user where it shares a model (``shared_by``); None: "a user", never the email.
    display_name: Mapped[str | None] = mapped_column(String(100))
    # The cached balance: always the sum of the user's ledger entries (app.billing.credits).
    credits: Mapped[int] = mapped_column(Integer, default=0)
    # Credits clawed back by a refund or dispute after they were spent; repaid by the next grants.
    debt_credits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A tier id from shared-specs/pricing_tiers.json; set by Stripe subscription events.
    tier: Mapped[str] = mapped_column(String(32), default="free", server_default="free")
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="user")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # HMAC-SHA256 of the full key under the server's secret; the key itself is never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=lambda: list(SCOPES))
    # The key that created this one (None: created by an operator).
    created_by_key_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="api_keys")
