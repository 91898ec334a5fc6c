"""The email channel against real SMTP servers: content, header safety, STARTTLS and auth."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import update

from lifeline.accounts.models import User
from lifeline.ai_sessions.models import AISession
from lifeline.context import AppContext
from lifeline.notifications.channels.email import header_safe
from tests.notifications.conftest import deliveries, notification_settings, running_app, settle
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder, smtp_recorder

INJECTION = "\r\nBcc: victim@evil.example\r\nX-Injected: yes"


async def test_email_is_multipart_text_and_html_with_the_note_transcript_and_link(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(
        client,
        team["junior"],
        title="Deadlock in the <payments> migration",
        messages=[
            {"role": "user", "content": "It deadlocks one run in five."},
            {"role": "assistant", "content": "Lock order differs: <ledger> then accounts."},
        ],
    )
    handoff = await escalate(client, team["junior"], session["id"], note="Tried lock ordering")
    await settle(ctx, handoff["id"])

    [mail] = smtp.to(team["senior"].email)
    msg = mail.message
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "[Lifeline] Escalated: Deadlock in the <payments> migration"
    assert msg["To"] == f"{team['senior'].name} <{team['senior'].email}>"
    assert msg["From"] == "Lifeline <lifeline@localhost>"
    assert msg["Auto-Submitted"] == "auto-generated"
    row = next(
        r
        for r in await deliveries(ctx, handoff["id"])
        if r.recipient_user_id == team["senior"].id and r.channel == "email"
    )
    assert mail.message_id == row.message_id
    link = f"http://testserver/sessions/{session['id']}"
    for body in (mail.text, mail.html):
        assert team["junior"].name in body
        assert "Tried lock ordering" in body
        assert "It deadlocks one run in five." in body
        assert link in body
    assert "Lock order differs: <ledger> then accounts." in mail.text
    assert "Lock order differs: &lt;ledger&gt; then accounts." in mail.html
    assert "<payments>" not in mail.html


async def test_header_injection_attempts_in_names_titles_and_notes_come_out_inert(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"], title="Deadlock")
    async with ctx.sessionmaker() as db, db.begin():
        for key in ("junior", "senior"):
            await db.execute(
                update(User).where(User.id == team[key].id).values(name=f"Mallory{INJECTION}")
            )
        await db.execute(
            update(AISession)
            .where(AISession.id == session["id"])
            .values(title=f"Deadlock{INJECTION}\r\n\r\n<body>")
        )
    handoff = await escalate(client, team["junior"], session["id"], note=f"help{INJECTION}")
    await settle(ctx, handoff["id"])

    assert sorted(r for m in smtp.messages for r in m.rcpt_tos) == sorted(
        [team.owner.email, team["senior"].email]
    )  # nobody at evil.example
    for mail in smtp.messages:
        assert mail.message["Bcc"] is None and mail.message["X-Injected"] is None
        assert b"\r\nBcc:" not in mail.raw.split(b"\r\n\r\n", 1)[0]
        assert mail.message["Subject"] == (
            "[Lifeline] Escalated: Deadlock Bcc: victim@evil.example X-Injected: yes <body>"
        )
    [senior_mail] = smtp.to(team["senior"].email)
    assert senior_mail.message["To"].addresses[0].addr_spec == team["senior"].email
    assert "\n" not in senior_mail.message["To"].addresses[0].display_name
    # In bodies it is only text.
    assert "Bcc: victim@evil.example" in senior_mail.text


def test_header_safe_flattens_every_line_break_and_control_character() -> None:
    assert header_safe("a\r\nb\nc\rd\x0be\x0cf\x85g\u2028h\u2029i\x00j") == "a b c d e f g h i j"
    assert header_safe("x" * 500).endswith("…") and len(header_safe("x" * 500)) == 200


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: can't make a certificate for the STARTTLS server")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    yield cert, key


class _Credentials:
    def __init__(self, username: str, password: str) -> None:
        self.expected = (username.encode(), password.encode())
        self.logins: list[bytes] = []

    def __call__(
        self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login, data.password) == self.expected:
            self.logins.append(data.login)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@pytest.mark.parametrize("password", ["s3cret", "wrong"])
async def test_starttls_and_auth_as_configured(
    database_url: str,
    certificate: tuple[Path, Path],
    password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cert, key = certificate
    # The client trusts our throwaway certificate the way it would trust a real one.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    credentials = _Credentials("lifeline", "s3cret")
    with smtp_recorder(
        tls_context=tls, require_starttls=True, auth_required=True, authenticator=credentials
    ) as server:
        settings = notification_settings(
            database_url,
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_starttls=True,
            smtp_username="lifeline",
            smtp_password=password,
        )
        async with running_app(settings) as (ctx, client):
            team = await Factory(ctx.sessionmaker).team(junior="engineer")
            session = await new_session(client, team["junior"])
            handoff = await escalate(client, team["junior"], session["id"])
            await ctx.tasks.drain()
            [email] = [r for r in await deliveries(ctx, handoff["id"]) if r.channel == "email"]

    if password == "s3cret":
        assert email.status == "sent"
        assert [m.rcpt_tos for m in server.messages] == [(team.owner.email,)]
        assert credentials.logins == [b"lifeline"]
    else:
        assert email.status == "pending" and "SMTPAuthenticationError" in (email.last_error or "")
        assert server.messages == []


async def test_required_starttls_is_never_skipped_for_a_server_without_it(
    database_url: str,
) -> None:
    with smtp_recorder() as plain:
        settings = notification_settings(
            database_url, smtp_host=plain.host, smtp_port=plain.port, smtp_starttls=True
        )
        async with running_app(settings) as (ctx, client):
            team = await Factory(ctx.sessionmaker).team(junior="engineer")
            session = await new_session(client, team["junior"])
            handoff = await escalate(client, team["junior"], session["id"])
            await ctx.tasks.drain()
            [email] = [r for r in await deliveries(ctx, handoff["id"]) if r.channel == "email"]
    assert email.status == "pending" and "STARTTLS" in (email.last_error or "")
    assert plain.messages == []  # nothing went out in the clear
