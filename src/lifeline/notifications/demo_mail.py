"""``/demo/mail``: what the demo's local mail sink caught, so nobody needs a mail server to look."""

from __future__ import annotations

from pathlib import Path

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from lifeline.config import Settings
from lifeline.mailsink import read_mail

router = APIRouter(tags=["demo"], include_in_schema=False)

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("lifeline.notifications", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


@router.get("/demo/mail", response_class=HTMLResponse)
def demo_mail(request: Request) -> HTMLResponse:
    # A plain def: FastAPI runs it in a thread, so reading the files never blocks the loop.
    settings: Settings = request.app.state.settings
    directory = Path(settings.mail_sink_dir or ".")
    caught = read_mail(directory, limit=100)
    page = _templates.get_template("demo_mail.html").render(mails=caught, directory=directory)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
