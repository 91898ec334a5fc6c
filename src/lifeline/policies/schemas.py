"""The policy's wire shape (fixed): steps, repeat, expiry, claim reminder, auto-release."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from lifeline.accounts.models import Role

# A week: far beyond any sensible escalation, small enough that times never overflow.
MAX_MINUTES = 7 * 24 * 60
MAX_STEPS = 20
MAX_USERS_PER_STEP = 100
DEFAULT_REMINDER_MINUTES = 10
DEFAULT_CLAIM_REMINDER_MINUTES = 240

Minutes = Annotated[int, Field(ge=0, le=MAX_MINUTES)]
PositiveMinutes = Annotated[int, Field(ge=1, le=MAX_MINUTES)]
ChannelName = Literal["push", "email"]
# User ids are UUIDs; anything else can't name a member.
USER_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Notify(_Strict):
    roles: list[Role] = Field(default_factory=list, max_length=4)
    users: list[Annotated[str, Field(pattern=USER_ID)]] = Field(
        default_factory=list, max_length=MAX_USERS_PER_STEP
    )

    @field_validator("roles")
    @classmethod
    def _no_viewers(cls, roles: list[Role]) -> list[Role]:
        if Role.VIEWER in roles:
            raise ValueError("viewers are never notified of escalations")
        return list(dict.fromkeys(roles))

    @field_validator("users")
    @classmethod
    def _unique_users(cls, users: list[str]) -> list[str]:
        return list(dict.fromkeys(users))


class PolicyStep(_Strict):
    after_minutes: Minutes
    notify: Notify
    channels: list[ChannelName] = Field(min_length=1, max_length=2)

    @field_validator("channels")
    @classmethod
    def _unique_channels(cls, channels: list[str]) -> list[str]:
        return list(dict.fromkeys(channels))


class EscalationPolicy(_Strict):
    """A PUT carries the whole policy; omitted optional fields take their defaults."""

    steps: list[PolicyStep] = Field(min_length=1, max_length=MAX_STEPS)
    repeat: int = Field(default=0, ge=0, le=9)
    expire_after_minutes: PositiveMinutes | None = None
    claim_reminder_minutes: PositiveMinutes | None = DEFAULT_CLAIM_REMINDER_MINUTES
    auto_release_minutes: PositiveMinutes | None = None

    @field_validator("steps")
    @classmethod
    def _ordered(cls, steps: list[PolicyStep]) -> list[PolicyStep]:
        for number, (before, after) in enumerate(itertools.pairwise(steps), start=2):
            if after.after_minutes < before.after_minutes:
                raise ValueError(
                    f"step {number}'s after_minutes ({after.after_minutes}) is less than "
                    f"step {number - 1}'s ({before.after_minutes}): steps must not go back in time"
                )
        for number, step in enumerate(steps, start=1):
            if not step.notify.roles and not step.notify.users:
                raise ValueError(f"step {number} notifies nobody: give roles or users")
        return steps

    @field_validator("repeat")
    @classmethod
    def _repeatable(cls, repeat: int, info: ValidationInfo) -> int:
        steps: list[PolicyStep] | None = info.data.get("steps")
        if repeat and steps and _cycle([s.after_minutes for s in steps]) == 0:
            raise ValueError("steps that all fire at 0 minutes can't repeat")
        return repeat


def cycle_minutes(policy: EscalationPolicy) -> int:
    """How long one pass of the steps lasts before a repeat starts over from the first.

    A repeat begins as long after the last step as the last step came after the one before
    it (for a single step, its own ``after_minutes``).
    """
    return _cycle([s.after_minutes for s in policy.steps])


def _cycle(offsets: list[int]) -> int:
    gap = offsets[-1] - offsets[-2] if len(offsets) > 1 else offsets[0]
    return offsets[-1] + gap - offsets[0]


def default_policy(reminder_minutes: int = DEFAULT_REMINDER_MINUTES) -> EscalationPolicy:
    """Today's behaviour: every engineer, admin and owner at once, one reminder later."""
    everyone = Notify(roles=[Role.ENGINEER, Role.ADMIN, Role.OWNER])
    return EscalationPolicy(
        steps=[
            PolicyStep(after_minutes=0, notify=everyone, channels=["push", "email"]),
            PolicyStep(after_minutes=reminder_minutes, notify=everyone, channels=["push", "email"]),
        ]
    )
