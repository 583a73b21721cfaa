"""Pieces every schema shares: pages, problem documents, and the bounded types request fields are
built from, so each limit is declared once and published in the contract."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

T = TypeVar("T")

# Declared, not configurable: they are part of the published contract.
MAX_NAME_CHARS = 200
MAX_VARIABLE_NAME_CHARS = 1024
MAX_TEXT_VALUE_CHARS = 10_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def reject_unstorable(value: str) -> str:
    """PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8 at all."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


# Every request string is one of these: bounded, and storable (no NUL, no lone surrogates).
# The length constraint sits inside, so it is checked first and published as maxLength.
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS), AfterValidator(reject_unstorable)]
VariableName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_VARIABLE_NAME_CHARS),
                         AfterValidator(reject_unstorable)]
TextValue = Annotated[str, StringConstraints(max_length=MAX_TEXT_VALUE_CHARS), AfterValidator(reject_unstorable)]
# JSON's 1e400 and Python's json module's NaN/Infinity both arrive as non-finite floats.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]


def reject_unstorable_keys(value: object) -> object:
    """Checks a mapping's keys before pydantic does: its errors would quote a bad key verbatim,
    and a lone surrogate cannot be rendered into the problem document."""
    if isinstance(value, dict):
        for key in value:
            if isinstance(key, str):
                try:
                    reject_unstorable(key)
                except ValueError as exc:
                    raise ValueError(f"a name {exc}") from None
    return value


class Page(BaseModel, Generic[T]):
    """One page of a cursor-paginated list; pass ``next_cursor`` as ``?cursor=`` for the next."""

    data: list[T]
    has_more: bool
    next_cursor: str | None = Field(description="Opaque cursor of the next page, null on the last page.")


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code.")
    request_id: str | None = None
