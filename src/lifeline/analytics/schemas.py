"""The escalation report as the API returns it."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from lifeline.accounts.schemas import UserRef
from lifeline.handoffs.schemas import SessionRef

CSV_COLUMNS = (
    "date",
    "escalations",
    "claimed",
    "resolved",
    "p50_time_to_claim_seconds",
    "p50_time_to_resolve_seconds",
    "expired",
    "claimed_at_step_1",
    "claimed_at_step_2",
    "claimed_at_step_3_or_later",
)


class WindowRead(BaseModel):
    since: datetime = Field(description="inclusive start, in the report's time zone")
    until: datetime = Field(description="exclusive end, in the report's time zone")
    tz: str


class Totals(BaseModel):
    escalations: int = Field(description="escalations created in the window")
    parks: int = Field(description="parks created in the window (a count only)")
    claimed: int = Field(description="escalations whose current claim was made in the window")
    resolved: int = Field(description="escalations resolved in the window")
    cancelled: int = Field(description="escalations cancelled in the window")
    expired: int = Field(
        description="escalations that expired (nobody picked them up) in the window"
    )
    open: int = Field(description="escalations created in the window and still waiting now")


class DurationStats(BaseModel):
    p50: float | None
    p90: float | None
    max: float | None


class BacklogItem(BaseModel):
    handoff_id: str
    session: SessionRef
    escalator: UserRef
    created_at: datetime
    age_seconds: int
    status: str


class DayRow(BaseModel):
    date: date
    escalations: int
    claimed: int
    resolved: int
    p50_time_to_claim_seconds: float | None
    p50_time_to_resolve_seconds: float | None
    expired: int = 0
    # Of ``claimed``: picked up once step 1 of the policy had gone out (or before it), once
    # step 2 had, once step 3 or a later one had.
    claimed_at_step_1: int = 0
    claimed_at_step_2: int = 0
    claimed_at_step_3_or_later: int = 0


class StepCount(BaseModel):
    step: int = Field(
        description="the last policy step that had gone out when it was picked up (1-based; "
        "0: picked up before the first)"
    )
    claimed: int


class ClaimerCount(BaseModel):
    user: UserRef
    claimed: int


class EscalatorCount(BaseModel):
    user: UserRef
    escalations: int


class EscalationReport(BaseModel):
    window: WindowRead
    bucket: str = "day"
    totals: Totals
    time_to_claim_seconds: DurationStats
    backlog: list[BacklogItem] = Field(description="open escalations now, oldest first, capped")
    backlog_total: int = Field(description="all open escalations now, beyond the cap too")
    by_day: list[DayRow]
    by_claimer: list[ClaimerCount]
    claimed_by_step: list[StepCount] = Field(
        description="the claimed escalations by the policy step they were picked up at"
    )
    by_escalator: list[EscalatorCount]
    sessions_created: int
    sessions_escalated: int
    escalation_rate: float | None = Field(
        description="sessions_escalated / sessions_created; null when none were created"
    )
