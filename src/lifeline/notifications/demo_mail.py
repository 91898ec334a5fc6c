"""``/demo/mail``: what the demo's local mail sink caught, so nobody needs a mail server to look.

Only in the demo, only to a signed-in member, and only the mail sent to their own account's
members: the sink holds every account's mail, which is nobody else's business.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from lifeline.accounts.models import User
from lifeline.config import Settings
from lifeline.deps import SessionDep
from lifeline.mailsink import read_mail
from lifeline.web.auth import WebPrincipal
from lifeline.web.routing import PageRoute

router = APIRouter(tags=["demo"], include_in_schema=False, route_class=PageRoute)

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("lifeline.notifications", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def serves_demo_mail(settings: Settings) -> bool:
    """The page exists in the demo only, and only with a sink to read."""
    return settings.env == "demo" and bool(settings.mail_sink_dir)


@router.get("/demo/mail", response_class=HTMLResponse)
async def demo_mail(request: Request, db: SessionDep, principal: WebPrincipal) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    directory = Path(settings.mail_sink_dir or ".")
    members = (
        await db.scalars(select(User.email).where(User.account_id == principal.user.account_id))
    ).all()
    # Reading the files off the event loop.
    caught = await asyncio.to_thread(read_mail, directory, 100, recipients=members)
    page = _templates.get_template("demo_mail.html").render(mails=caught, directory=directory)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
