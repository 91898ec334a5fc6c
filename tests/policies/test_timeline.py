"""When each step fires: repeats, folding missed steps into one, the expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lifeline.policies.schemas import EscalationPolicy, cycle_minutes
from lifeline.policies.timeline import StepRef, following, latest_due, next_moment, step_at

ORIGIN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def policy(*offsets: int, repeat: int = 0, expire: int | None = None) -> EscalationPolicy:
    return EscalationPolicy.model_validate(
        {
            "steps": [
                {"after_minutes": m, "notify": {"roles": ["engineer"]}, "channels": ["push"]}
                for m in offsets
            ],
            "repeat": repeat,
            "expire_after_minutes": expire,
        }
    )


def test_a_repeat_starts_one_last_interval_after_the_last_step() -> None:
    p = policy(0, 5, 15, repeat=2)
    assert cycle_minutes(p) == 25
    ref: StepRef | None = StepRef(0, 0)
    fired = []
    while ref is not None:
        fired.append(int((step_at(p, ORIGIN, ref) - ORIGIN).total_seconds() // 60))
        ref = following(p, ref)
    assert fired == [0, 5, 15, 25, 30, 40, 50, 55, 65]
    assert cycle_minutes(policy(5, repeat=1)) == 5


def test_missed_steps_fold_into_the_latest_one() -> None:
    p = policy(0, 5, 15, repeat=1)
    assert latest_due(p, ORIGIN, StepRef(1, 0), ORIGIN + timedelta(minutes=4)) is None
    assert latest_due(p, ORIGIN, StepRef(1, 0), ORIGIN + timedelta(minutes=31)) == StepRef(1, 1)


def test_the_next_moment_is_the_earlier_of_the_step_and_the_expiry() -> None:
    p = policy(0, 60, expire=30)
    assert next_moment(p, ORIGIN, StepRef(1, 0)) == ORIGIN + timedelta(minutes=30)
    assert next_moment(p, ORIGIN, None) == ORIGIN + timedelta(minutes=30)
    assert next_moment(policy(0, 10), ORIGIN, None) is None
