"""Pages answer in HTML, and a form post bounced back with a message commits nothing."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient

from lifeline.accounts import service as accounts
from lifeline.context import AppContext
from lifeline.deps import CurrentUser, SessionDep
from lifeline.errors import Conflict
from lifeline.web.routing import Bounce, PageRoute
from tests.support.factories import Factory
from tests.web.conftest import BrowserFactory, login_token


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


async def test_a_nul_in_any_form_field_is_a_form_error_naming_it_not_a_500(
    app: FastAPI, factory: Factory, browser: BrowserFactory
) -> None:
    team = await factory.team(junior="engineer")
    signed_out = await browser()
    login_page = await signed_out.client.get("/login")
    refused = await signed_out.client.post(
        "/login",
        data={
            "email": "who\x00@example.test",
            "password": "irrelevant",
            "csrf_token": login_token(login_page.text),
        },
    )
    assert refused.status_code == 422, refused.text
    assert "Check these fields: email." in refused.text

    tab = await browser(team["junior"])
    assert (await tab.post("/sessions", {"title": "t\x00"})).status_code == 422
    made = await tab.post("/sessions", {"title": "A fine title"})
    assert made.status_code == 303, made.text
    session_path = made.headers["location"].split("?")[0]
    cases = [
        ("/sessions", {"title": "ok", "message": "m\x00"}, "message"),
        (f"{session_path}/messages", {"content": "c\x00"}, "content"),
        (f"{session_path}/handoff", {"intent": "escalate", "note": "n\x00"}, "note"),
        ("/settings/tokens", {"name": "n\x00"}, "name"),
    ]
    for url, data, field in cases:
        response = await tab.post(url, data)
        assert response.status_code == 422, (url, response.text)
        assert f"Check these fields: {field}." in response.text
    # Nothing was written by any of them.
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver") as c:
        mine = await c.get("/api/v1/ai-sessions", headers=team["junior"].headers)
        tokens = await c.get("/api/v1/tokens", headers=team["junior"].headers)
    assert [s["title"] for s in mine.json()["items"]] == ["A fine title"]
    assert all("\x00" not in t["name"] for t in tokens.json()["items"])
