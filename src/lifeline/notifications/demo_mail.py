"""``/demo/mail``: what the demo's local mail sink caught, so nobody needs a mail server to look.

Only in the demo, only to a signed-in member, and only the mail sent to their own account's
members: the sink holds every account's mail, which is nobody else's business.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import jinja2
from fastapi import APIRouter, HTTPException, Request
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


# An email's own HTML styles itself inline (as mail clients need): it is shown in a sandboxed
# frame of this origin that may use inline styles and nothing else.
MAIL_HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)


def serves_demo_mail(settings: Settings) -> bool:
    """The page exists in the demo only, and only with a sink to read."""
    return settings.env == "demo" and bool(settings.mail_sink_dir)


@router.get("/demo/mail", response_class=HTMLResponse)
async def demo_mail(
    request: Request, db: SessionDep, principal: WebPrincipal, html: str | None = None
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    directory = Path(settings.mail_sink_dir or ".")
    members = (
        await db.scalars(select(User.email).where(User.account_id == principal.user.account_id))
    ).all()
    # Reading the files off the event loop.
    caught = await asyncio.to_thread(read_mail, directory, 100, recipients=members)
    if html is not None:
        # Only one of the messages listed here (the reader's account's), found by its file name.
        mail = next((m for m in caught if m.name == html), None)
        if mail is None or not mail.html:
            raise HTTPException(404, "No such message")
        return HTMLResponse(
            mail.html,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": f"{MAIL_HTML_CSP}; sandbox",
                "X-Frame-Options": "SAMEORIGIN",
            },
        )
    page = _templates.get_template("demo_mail.html").render(mails=caught, directory=directory)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
