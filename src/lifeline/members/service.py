"""Team membership changes that reach into hand-offs.

``accounts`` is the floor every domain imports, so it can't call up into ``handoffs``. A role
change or removal is made here instead: the account rules first (which lock the team and the
member's row), then, in the same transaction and under the same locks, whatever the member
can no longer hold goes back to the team's queue. A claim racing the change either commits
first (and is released here) or waits on the member's row and sees the new role.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts import service as accounts
from lifeline.accounts.models import Role, User, is_senior
from lifeline.handoffs import service as handoffs


async def update_member(
    *,
    db: AsyncSession,
    actor: User,
    user_id: str,
    role: Role | None,
    name: str | None,
    email_cap: int,
) -> User:
    """Rename or change a member's role; a viewer can't hold a pick-up (nor release or
    resolve it), so what they held goes back to the team."""
    target = await accounts.update_user(db=db, actor=actor, user_id=user_id, role=role, name=name)
    if not is_senior(target):
        await handoffs.release_claims_of(db=db, user=target, email_cap=email_cap)
    return target


async def remove_member(*, db: AsyncSession, actor: User, user_id: str, email_cap: int) -> User:
    """Remove a member: nobody gone can hold work, so what they had picked up returns to the
    team's queue."""
    target = await accounts.soft_delete_user(db=db, actor=actor, user_id=user_id)
    await handoffs.release_claims_of(db=db, user=target, email_cap=email_cap)
    return target
