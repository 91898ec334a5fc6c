"""Pages answer in HTML, and a form post bounced back with a message commits nothing."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI

from lifeline.accounts import service as accounts
from lifeline.context import AppContext
from lifeline.deps import CurrentUser, SessionDep
from lifeline.errors import Conflict
from lifeline.web.routing import Bounce, PageRoute
from tests.support.factories import Factory


def probe_router() -> APIRouter:
    router = APIRouter(route_class=PageRoute)

    @router.post("/probe/rename-then-bounce")
    async def rename_then_bounce(db: SessionDep, user: CurrentUser) -> None:
        await accounts.update_account(db=db, account_id=user.account_id, name="Renamed")
        raise Bounce("/settings", error="Someone else changed it first")

    @router.post("/probe/rename-then-conflict")
    async def rename_then_conflict(db: SessionDep, user: CurrentUser) -> None:
        await accounts.update_account(db=db, account_id=user.account_id, name="Renamed")
        raise Conflict("That changed meanwhile")

    return router


async def test_a_bounced_or_failed_form_post_rolls_its_writes_back(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    app.include_router(probe_router())
    team = await factory.team()
    bounced = await client.post("/probe/rename-then-bounce", headers=team.owner.headers)
    assert bounced.status_code == 303 and bounced.headers["location"] == "/settings"
    assert "lifeline_flash=" in bounced.headers["set-cookie"]
    failed = await client.post("/probe/rename-then-conflict", headers=team.owner.headers)
    assert failed.status_code == 409
    assert failed.headers["content-type"].startswith("text/html")
    assert "That changed meanwhile" in failed.text
    account = await client.get("/api/v1/account", headers=team.owner.headers)
    assert account.json()["name"] == team.account.name
