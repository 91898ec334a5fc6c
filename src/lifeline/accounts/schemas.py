"""Request and response bodies for accounts, users and tokens."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from lifeline.accounts import passwords
from lifeline.accounts.models import EmailPreference, Role
from lifeline.accounts.passwords import MAX_PASSWORD_LENGTH

MAX_EMAIL_LENGTH = 320
MAX_NAME_LENGTH = 200


def normalise_email(value: str) -> str:
    value = value.strip().lower()
    local, sep, domain = value.partition("@")
    if not sep or not local or "." not in domain or any(c.isspace() for c in value):
        raise ValueError("not a valid email address")
    return value


Email = Annotated[str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(normalise_email)]
# Invisible or layout-changing characters: control (CR, LF, tab…), format (bidi overrides and
# isolates, zero-width spaces and joiners, marks) and line/paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def clean_name(value: str) -> str:
    """A display name that can't pose as someone else: invisible and bidi characters removed,
    whitespace runs made one space. ValueError when nothing visible is left."""
    visible = "".join(
        " " if ch.isspace() else ch
        for ch in value
        if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
    )
    cleaned = " ".join(visible.split())
    if not cleaned:
        raise ValueError("must contain visible characters")
    return cleaned


Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(clean_name)]
Password = Annotated[
    str, Field(max_length=MAX_PASSWORD_LENGTH), AfterValidator(passwords.check_password)
]


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so nobody can smuggle in ``role`` or ``account_id``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # PostgreSQL can't store NUL, and no database can store a lone surrogate: a 422, not a 500.
        if isinstance(value, str) and not storable_text(value):
            raise ValueError("must not contain NUL or unpaired surrogate characters")
        return value


def storable_text(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class UserRef(BaseModel):
    id: str
    name: str


class AccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    # A shortcut into the escalation policy: when its second step (the reminder) fires.
    reminder_minutes: int | None


class AccountUpdate(StrictModel):
    name: Name | None = None
    reminder_minutes: int | None = Field(default=None, ge=1, le=1440)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    account_id: str
    email: str
    name: str
    role: Role
    email_notifications: EmailPreference
    created_at: datetime
    deleted_at: datetime | None = None


class MeRead(UserRead):
    account: AccountRead


class MeUpdate(StrictModel):
    name: Name | None = None
    email_notifications: EmailPreference | None = None
    password: Password | None = None
    current_password: str | None = Field(default=None, max_length=200)


class UserCreate(StrictModel):
    email: Email
    name: Name | None = None
    role: Role = Role.ENGINEER
    password: Password | None = None


class UserUpdate(StrictModel):
    role: Role | None = None
    name: Name | None = None


class UserCreated(BaseModel):
    user: UserRead
    token: str


class UserList(BaseModel):
    items: list[UserRead]
    next_cursor: str | None = None


class TokenCreate(StrictModel):
    name: Name = "API token"


class TokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenRead):
    token: str


class TokenList(BaseModel):
    items: list[TokenRead]
    next_cursor: str | None = None
