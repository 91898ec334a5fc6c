"""/demo/mail: the demo's local mail sink, readable in the browser."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from lifeline.app import create_app
from lifeline.mailsink import MailSink
from tests.notifications.conftest import notification_settings, running_app, settle
from tests.support.factories import Factory, escalate, new_session
from tests.support.live import free_port
from tests.web.conftest import Browser


async def test_demo_mail_page_shows_a_member_their_accounts_mail_only(
    database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "mail"
    sink = MailSink(directory=directory, port=free_port())
    sink.start()
    try:
        settings = notification_settings(
            database_url,
            env="demo",
            smtp_host="127.0.0.1",
            smtp_port=sink.controller.port,
            mail_sink_dir=str(directory),
        )
        async with running_app(settings) as (ctx, client):
            factory = Factory(ctx.sessionmaker)
            team = await factory.team(junior="engineer", senior="admin")
            session = await new_session(client, team["junior"], title="Cache <serves> stale prices")
            handoff = await escalate(client, team["junior"], session["id"], note="see the trace")
            await settle(ctx, handoff["id"])
            # Another account's mail lands in the same sink.
            others = await factory.team(junior="engineer", senior="engineer")
            theirs = await new_session(client, others["junior"], title="Their private outage")
            await settle(ctx, (await escalate(client, others["junior"], theirs["id"]))["id"])

            anonymous = await client.get("/demo/mail")
            await Browser(client).sign_in(team["junior"].email, team["junior"].password)
            page = await client.get("/demo/mail")
            frame = re.search(r'<iframe class="mail-preview"[^>]* src="([^"]+)"', page.text)
            assert frame, page.text
            preview = await client.get(frame.group(1).replace("&amp;", "&"))
            unknown = await client.get("/demo/mail?html=../../etc/passwd")
    finally:
        sink.stop()

    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "2 messages" in html
    assert "[Lifeline] Escalated: Cache &lt;serves&gt; stale prices" in html
    assert "<serves>" not in html
    assert team["senior"].email in html and team.owner.email in html
    assert "see the trace" in html
    assert f"/sessions/{session['id']}" in html
    assert "Their private outage" not in html
    assert others["senior"].email not in html and others.owner.email not in html
    # Styled by the app's stylesheet: no inline <style> for the CSP to block.
    assert "<style" not in html and 'href="/static/app.css"' in html
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # The HTML version is its own sandboxed document, which may style itself inline.
    assert preview.status_code == 200 and "see the trace" in preview.text
    policy = preview.headers["content-security-policy"]
    assert "style-src 'unsafe-inline'" in policy and "sandbox" in policy
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert unknown.status_code == 404


async def test_demo_mail_page_exists_only_with_a_sink(client: httpx.AsyncClient) -> None:
    assert (await client.get("/demo/mail")).status_code == 404


async def test_demo_mail_page_exists_only_in_the_demo(database_url: str, tmp_path: Path) -> None:
    for env in ("production", "development", "test"):
        settings = notification_settings(database_url, env=env, mail_sink_dir=str(tmp_path))
        app = create_app(settings, plugins=[])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/demo/mail")).status_code == 404, env
