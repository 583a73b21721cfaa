from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.models import Base, JSONType, UTCDateTime, new_id, utcnow


class Fmu(Base):
    __tablename__ = "fmus"
    __table_args__ = (
        # Content addressing per owner: the same bytes uploaded twice are one FMU.
        Index("uq_fmus_user_sha256_live", "user_id", "sha256", unique=True,
              sqlite_where=text("deleted_at IS NULL"), postgresql_where=text("deleted_at IS NULL")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fmu"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # Bytes the extracted archive takes (its declared sizes, which extraction enforces); with
    # ``size`` what the FMU costs against the storage quota. None: uploaded before it was recorded.
    extracted_bytes: Mapped[int | None] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(255))
    fmi_version: Mapped[str] = mapped_column(String(8))
    model_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    generation_tool: Mapped[str | None] = mapped_column(String(255))
    guid: Mapped[str] = mapped_column(String(255))
    supports_model_exchange: Mapped[bool] = mapped_column(Boolean)
    supports_co_simulation: Mapped[bool] = mapped_column(Boolean)
    # Listings read these summary columns, never model_info (up to max_model_info_bytes).
    variable_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    default_experiment: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    platforms: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default=text("'[]'"))
    # The whole parsed modelDescription (app.fmi.model_description.ModelInfo) as JSON. Deferred:
    # loaded only when read, so no query of FMUs carries it by accident.
    model_info: Mapped[dict[str, Any]] = mapped_column(JSONType, deferred=True)
    # Whether the model's reset() restores it exactly (a sweep chunk then reuses one instance),
    # as checked by the runner whose digest is in reset_checked_by; None: not checked yet.
    reset_exact: Mapped[bool | None] = mapped_column(Boolean)
    reset_checked_by: Mapped[str | None] = mapped_column(String(64))
    # False: the model uses randomness or wall-clock time, so no run of it is served from the run cache.
    deterministic: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
