"""``/demo/mail``: what the demo's local mail sink caught, so nobody needs a mail server to look."""

from __future__ import annotations

from pathlib import Path

import jinja2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from lifeline.config import Settings
from lifeline.mailsink import read_mail

router = APIRouter(tags=["demo"], include_in_schema=False)

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


@router.get("/demo/mail", response_class=HTMLResponse)
def demo_mail(request: Request, html: str | None = None) -> HTMLResponse:
    # A plain def: FastAPI runs it in a thread, so reading the files never blocks the loop.
    settings: Settings = request.app.state.settings
    directory = Path(settings.mail_sink_dir or ".")
    caught = read_mail(directory, limit=100)
    if html is not None:
        # Only one of the messages listed here, found by its file name.
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
