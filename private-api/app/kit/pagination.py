"""Cursor pagination over time-sortable ids (newest first); the cursor is the last id seen."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.errors import InvalidCursor

T = TypeVar("T")

# Every cursor we hand out: an id, or a sweep child's index; empty is the first page (?cursor=).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{0,64}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def checked_cursor(cursor: str) -> str:
    """Refuse what no page of ours could have returned, before it reaches SQL."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidCursor("The cursor is not one this API returned; pass a page's next_cursor unchanged.")
    return cursor


def paginate(session: Session, query: Select[T], id_column: InstrumentedAttribute[str],
             limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    if cursor:
        query = query.where(id_column < checked_cursor(cursor))
    rows: list[Any] = list(session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], getattr(rows[limit - 1], id_column.key)
    return rows, None
