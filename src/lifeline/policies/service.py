"""Reading and editing an account's escalation policy. Callers own the transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import Role, User
from lifeline.db import utcnow
from lifeline.errors import Unprocessable
from lifeline.policies.models import EscalationPolicyRecord
from lifeline.policies.schemas import EscalationPolicy, PolicyStep, default_policy


async def get_policy(*, db: AsyncSession, account_id: str) -> EscalationPolicy:
    """The account's policy; one never edited is the default."""
    stored = await db.scalar(
        select(EscalationPolicyRecord.policy).where(EscalationPolicyRecord.account_id == account_id)
    )
    if stored is None:
        return default_policy()
    return EscalationPolicy.model_validate(stored)


async def _check_users(*, db: AsyncSession, account_id: str, policy: EscalationPolicy) -> None:
    """Every user a step names is an active engineer, admin or owner of this account."""
    named = {u for step in policy.steps for u in step.notify.users}
    if not named:
        return
    rows = await db.execute(
        select(User.id, User.role).where(
            User.id.in_(named), User.account_id == account_id, User.deleted_at.is_(None)
        )
    )
    roles = {user_id: role for user_id, role in rows}
    for i, step in enumerate(policy.steps):
        for j, user_id in enumerate(step.notify.users):
            field = f"steps.{i}.notify.users.{j}"
            if user_id not in roles:
                raise Unprocessable(f"{field}: {user_id} is not a member of this account")
            if roles[user_id] == Role.VIEWER:
                raise Unprocessable(f"{field}: {user_id} is a viewer; viewers are never notified")


async def put_policy(
    *, db: AsyncSession, account_id: str, actor_id: str | None, policy: EscalationPolicy
) -> EscalationPolicy:
    """Replace the policy. Escalations already raised keep the snapshot they were raised with."""
    await _check_users(db=db, account_id=account_id, policy=policy)
    record = await db.get(EscalationPolicyRecord, account_id)
    stored = policy.model_dump(mode="json")
    if record is None:
        db.add(
            EscalationPolicyRecord(
                account_id=account_id, policy=stored, updated_at=utcnow(), updated_by=actor_id
            )
        )
    else:
        record.policy = stored
        record.updated_at = utcnow()
        record.updated_by = actor_id
    await db.flush()
    return policy


def reminder_minutes(policy: EscalationPolicy) -> int | None:
    """The shortcut older clients know: when the second step (the reminder) fires."""
    return policy.steps[1].after_minutes if len(policy.steps) > 1 else None


async def set_reminder_minutes(
    *, db: AsyncSession, account_id: str, actor_id: str | None, minutes: int
) -> EscalationPolicy:
    """Move the reminder step (the second) to ``minutes``; a one-step policy gains one,
    telling the same people on the same channels as the first."""
    policy = await get_policy(db=db, account_id=account_id)
    steps = [s.model_dump() for s in policy.steps]
    if len(steps) > 1:
        steps[1]["after_minutes"] = minutes
    else:
        steps.append({**steps[0], "after_minutes": minutes})
    try:
        changed = EscalationPolicy.model_validate({**policy.model_dump(), "steps": steps})
    except ValueError as exc:
        raise Unprocessable(
            "reminder_minutes: the policy's later steps come before it; edit the policy"
        ) from exc
    return await put_policy(db=db, account_id=account_id, actor_id=actor_id, policy=changed)


__all__ = [
    "PolicyStep",
    "get_policy",
    "put_policy",
    "reminder_minutes",
    "set_reminder_minutes",
]
