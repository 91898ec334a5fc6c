"""An escalation's timeline for the session page: which step of its policy fired when, to whom,
on which channels, and what the schedule will do next."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.handoffs.models import Handoff, Intent
from lifeline.notifications.models import Delivery
from lifeline.policies.models import EscalationSchedule, SchedulePhase

# One escalation's waves are a handful; this bounds a pathological one.
ROWS_MAX = 2_000


@dataclass
class TimelineEntry:
    label: str
    at: datetime
    recipients: dict[str, set[str]] = field(default_factory=dict)

    @property
    def people(self) -> list[tuple[str, list[str]]]:
        return [(name, sorted(channels)) for name, channels in sorted(self.recipients.items())]


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]
    next_label: str | None
    next_at: datetime | None


def wave_label(event_key: str) -> str:
    """What one wave was, from its event key (``{handoff}:{wave}``)."""
    wave = event_key.split(":", 1)[1] if ":" in event_key else event_key
    kind, _, rest = wave.partition(":")
    if kind == "escalated":
        return "Step 1, at the escalation"
    if kind == "released":
        return f"Step 1 again, back in the queue (release {rest})"
    if kind == "step":
        round_, loop, number = ([*rest.split("."), "0", "0", "?"])[:3]
        label = f"Step {number}"
        if loop != "0":
            label += f", repeat {loop}"
        if round_ != "0":
            label += f", after release {round_}"
        return label
    if kind == "claim_reminder":
        return "“Still on it?” to whoever picked it up"
    if kind == "expired":
        return "Expired: the escalator was told"
    if kind == "reminder":
        return f"Reminder {rest}"
    return wave


async def escalation_timeline(*, db: AsyncSession, handoff: Handoff) -> Timeline | None:
    if handoff.intent != Intent.ESCALATE:
        return None
    rows = (
        await db.execute(
            select(Delivery.event_key, Delivery.created_at, Delivery.channel, User.name)
            .join(User, User.id == Delivery.recipient_user_id)
            .where(Delivery.handoff_id == handoff.id, Delivery.account_id == handoff.account_id)
            .order_by(Delivery.created_at, Delivery.id)
            .limit(ROWS_MAX)
        )
    ).all()
    entries: dict[str, TimelineEntry] = {}
    for event_key, created_at, channel, name in rows:
        entry = entries.setdefault(event_key, TimelineEntry(wave_label(event_key), created_at))
        entry.recipients.setdefault(name, set()).add(channel)
    upcoming = await db.scalar(
        select(EscalationSchedule).where(EscalationSchedule.handoff_id == handoff.id)
    )
    next_label = None
    if upcoming is not None:
        if upcoming.phase == SchedulePhase.CLAIMED:
            next_label = "Check on the pick-up (reminder or auto-release)"
        elif upcoming.step >= len((handoff.policy or {}).get("steps", [])):
            next_label = "Expiry, if nobody picks it up"
        else:
            next_label = f"Step {upcoming.step + 1}"
            if upcoming.loop:
                next_label += f", repeat {upcoming.loop}"
    return Timeline(
        entries=list(entries.values()),
        next_label=next_label,
        next_at=upcoming.next_step_at if upcoming is not None else None,
    )
