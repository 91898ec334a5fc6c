"""When each step of a policy fires, counted from the escalation (or its last release)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from lifeline.policies.schemas import EscalationPolicy, cycle_minutes


@dataclass(frozen=True)
class StepRef:
    """One firing of one step: ``step`` 0-based in the policy, ``loop`` 0 for the first pass."""

    step: int
    loop: int

    @property
    def number(self) -> int:
        return self.step + 1


def step_at(policy: EscalationPolicy, origin: datetime, ref: StepRef) -> datetime:
    minutes = ref.loop * cycle_minutes(policy) + policy.steps[ref.step].after_minutes
    return origin + timedelta(minutes=minutes)


def following(policy: EscalationPolicy, ref: StepRef) -> StepRef | None:
    """The firing after ``ref``, or None once the last step of the last repeat is done."""
    if ref.step + 1 < len(policy.steps):
        return StepRef(ref.step + 1, ref.loop)
    if ref.loop < policy.repeat:
        return StepRef(0, ref.loop + 1)
    return None


def expires_at(policy: EscalationPolicy, origin: datetime) -> datetime | None:
    if policy.expire_after_minutes is None:
        return None
    return origin + timedelta(minutes=policy.expire_after_minutes)


def next_moment(policy: EscalationPolicy, origin: datetime, ref: StepRef | None) -> datetime | None:
    """When the schedule must next look at this escalation: a step or the expiry."""
    moments = [m for m in (expires_at(policy, origin),) if m is not None]
    if ref is not None:
        moments.append(step_at(policy, origin, ref))
    return min(moments) if moments else None


def latest_due(
    policy: EscalationPolicy, origin: datetime, ref: StepRef, now: datetime
) -> StepRef | None:
    """The last firing due at ``now`` from ``ref`` on: steps missed while no sweeper ran are
    folded into one wave (the latest), never sent as a burst."""
    due: StepRef | None = None
    current: StepRef | None = ref
    while current is not None and step_at(policy, origin, current) <= now:
        due = current
        current = following(policy, current)
    return due
