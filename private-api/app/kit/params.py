"""Path and query parameters the routes share, bounded where they enter: an id or cursor that
cannot be one is 422 validation_error before any query (PostgreSQL refuses NUL in text: a 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query

from app.kit.pagination import CURSOR_PATTERN

# Our ids are ``prefix_`` + 26 Crockford characters; this admits every id we issue and nothing unstorable.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

ResourceId = Annotated[str, Path(pattern=ID_PATTERN, description="The resource's id.")]
IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]
Cursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=100)]
# Routes that keep the key on what they create (runs, sweeps): ``app.idempotency.owns_idempotency_key``.
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255,
    description="Retries with the same key return what the first request created, never a second one.")]
