"""Grants: an FMU's owner lets another user run it, at a price per run, without its bytes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.models import Base, UTCDateTime, new_id, utcnow


class FmuGrant(Base):
    """The right of whoever signs in with ``email`` to see and run ``fmu_id`` (never to read its
    files), paying its owner ``price_credits_per_run`` for each run that succeeds. Revoked grants
    stay, for the owner's usage figures and the runs that name them."""

    __tablename__ = "fmu_grants"
    __table_args__ = (
        # One live grant per model and grantee; revoked ones may pile up.
        Index("uq_fmu_grants_fmu_email_live", "fmu_id", "email", unique=True,
              sqlite_where=text("revoked_at IS NULL"), postgresql_where=text("revoked_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("grt"))
    fmu_id: Mapped[str] = mapped_column(ForeignKey("fmus.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Lower-cased: the grantee is whoever has (or later signs up with) this address.
    email: Mapped[str] = mapped_column(String(320), index=True)
    price_credits_per_run: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
