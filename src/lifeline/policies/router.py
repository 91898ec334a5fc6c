"""HTTP routes: the account's escalation policy (read by members, edited by admins and owners)."""

from __future__ import annotations

from fastapi import APIRouter

from lifeline.deps import AdminUser, CurrentUser, SessionDep
from lifeline.policies import service as policies
from lifeline.policies.schemas import EscalationPolicy

router = APIRouter(tags=["escalation policy"])


@router.get("/escalation-policy", response_model=EscalationPolicy)
async def read_policy(db: SessionDep, user: CurrentUser) -> EscalationPolicy:
    return await policies.get_policy(db=db, account_id=user.account_id)


@router.put("/escalation-policy", response_model=EscalationPolicy)
async def replace_policy(
    db: SessionDep, user: AdminUser, body: EscalationPolicy
) -> EscalationPolicy:
    return await policies.put_policy(
        db=db, account_id=user.account_id, actor_id=user.id, policy=body
    )
