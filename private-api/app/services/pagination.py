"""Cursor pagination over time-sortable ids (newest first); the cursor is the last id seen."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")


def paginate(session: Session, query: Select[T], id_column: InstrumentedAttribute[str],
             limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    if cursor:
        query = query.where(id_column < cursor)
    rows: list[Any] = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], getattr(rows[limit - 1], id_column.key)
    return rows, None
