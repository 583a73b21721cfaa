from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints, model_validator

from app.auth.models import SCOPES, ApiKey
from app.kit.schemas import Name, reject_unstorable

_SCOPES_DOC = f"Known scopes: {', '.join(SCOPES)}."
# Unknown ones are refused by name (unknown_scope), so they must be printable and short.
Scope = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(reject_unstorable)]
Scopes = Annotated[list[Scope], Field(min_length=1, max_length=4 * len(SCOPES))]


def _in_utc(value: datetime) -> datetime:
    # 9999-12-31T23:59:59-14:00 is a valid timestamp whose UTC time is past datetime.max.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must lie before year 10000 in UTC") from None


ExpiryTime = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class ApiKeyOut(BaseModel):
    """An API key as listed: never its secret."""

    id: str
    object: Literal["api_key"] = "api_key"
    name: str | None
    prefix: str = Field(description="The key's first characters, to recognise it.")
    live: bool = Field(description="fmu_live_ (true) or fmu_test_ (false).")
    scopes: list[str]
    created_at: datetime
    created_by_key_id: str | None = Field(description="The key that created this one; null: an operator.")
    last_used_at: datetime | None = Field(description="When the key (or a token of it) was last used, "
                                                      "to the minute.")
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(id=key.id, name=key.name, prefix=key.prefix, live=key.prefix.startswith("fmu_live_"),
                   scopes=key.scopes, created_at=key.created_at, created_by_key_id=key.created_by_key_id,
                   last_used_at=key.last_used_at, expires_at=key.expires_at, revoked_at=key.revoked_at)


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The API key itself. Shown only in this response: store it now.")


class CreateApiKey(BaseModel):
    name: Name | None = None
    scopes: Scopes | None = Field(default=None, description=(
        "At most the calling credential's scopes (403 scope_escalation otherwise); default: all of them. "
        + _SCOPES_DOC))
    live: bool | None = Field(default=None, description="An fmu_live_ key; default: the calling key's kind.")
    expires_at: ExpiryTime | None = Field(default=None, description=(
        "When the key stops working; default: never, or when the calling key expires if it does."))
    expires_in_s: int | None = Field(default=None, ge=1, le=10 * 366 * 86400,
                                     description="Alternative to expires_at: seconds from now.")

    @model_validator(mode="after")
    def _one_expiry(self) -> CreateApiKey:
        if self.expires_at is not None and self.expires_in_s is not None:
            raise ValueError("give expires_at or expires_in_s, not both")
        return self


class TokenRequest(BaseModel):
    scopes: Scopes | None = Field(default=None, description=(
        "Narrow the token to these of the key's scopes; default: all of the key's scopes. " + _SCOPES_DOC))


class AccessTokenOut(BaseModel):
    access_token: str = Field(description="Send as 'Authorization: Bearer <access_token>'.")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
    expires_at: datetime
    scopes: list[str]
