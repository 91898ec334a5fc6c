"""``lifeline demo``: a seeded account on the embedded database, a local mail sink, a server."""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import logs, migrate
from lifeline.accounts import service as accounts
from lifeline.accounts.models import Account, Role, User
from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import AISession, Message, SessionStatus
from lifeline.ai_sessions.schemas import MessageCreate
from lifeline.config import DEMO_SECRET_KEY, Settings, get_settings
from lifeline.db import create_engine, create_sessionmaker, unit_of_work, utcnow
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent

DEMO_PASSWORD = "lifeline-demo"
DEMO_DB = "sqlite+aiosqlite:///./lifeline.db"
MAIL_DIR = Path(".demo-mail")


@dataclass(frozen=True)
class DemoPerson:
    key: str
    name: str
    email: str
    role: Role


PEOPLE = [
    DemoPerson("owner", "Olivia Owner", "owner@demo.lifeline.test", Role.OWNER),
    DemoPerson("senior1", "Sam Senior", "sam@demo.lifeline.test", Role.ADMIN),
    DemoPerson("senior2", "Riley Reviewer", "riley@demo.lifeline.test", Role.ENGINEER),
    DemoPerson("junior", "Jamie Junior", "jamie@demo.lifeline.test", Role.ENGINEER),
    DemoPerson("viewer", "Vic Viewer", "vic@demo.lifeline.test", Role.VIEWER),
]

TRANSCRIPTS = [
    (
        "Flaky deadlock in the payments migration",
        [
            ("user", "The migration deadlocks about one run in five on CI. Here is the trace."),
            ("assistant", "Two transactions take the ledger and accounts locks in opposite order."),
            ("user", "Reordering didn't help; the ORM flushes accounts first regardless."),
            ("assistant", "Then flush explicitly, or take both locks with SELECT … FOR UPDATE."),
        ],
    ),
    (
        "Kubernetes readiness probe keeps killing the API",
        [
            ("user", "Pods restart under load; readiness fails after 30 s."),
            ("assistant", "The probe hits /readyz which opens a DB connection; the pool is full."),
        ],
    ),
    (
        "Why does the cache return stale prices?",
        [
            ("user", "Prices update in the DB but the API serves old ones for minutes."),
            ("assistant", "The invalidation publishes before the transaction commits."),
        ],
    ),
    (
        "Refactor of the auth middleware",
        [
            ("user", "Planning to split the middleware into token and cookie paths."),
        ],
    ),
]


def claude_mcp_add_line(base: str, token: str) -> str:
    """The ready-made command that points Claude Code at this server's MCP endpoint."""
    return (
        f"claude mcp add --transport http lifeline {base.rstrip('/')}/mcp/ "
        f'--header "Authorization: Bearer {token}"'
    )


def _echo(message: str) -> None:
    typer.echo(message, err=True)


async def _seed(db: AsyncSession, *, email_cap: int) -> dict[str, User]:
    existing = await db.scalar(select(User).where(User.email == PEOPLE[0].email))
    if existing is not None:
        _echo("  demo account already seeded; reusing it")
        rows = (await db.scalars(select(User).where(User.account_id == existing.account_id))).all()
        by_email = {u.email: u for u in rows}
        return {p.key: by_email[p.email] for p in PEOPLE if p.email in by_email}

    _echo("  creating the account and five people")
    account = Account(name="Acme Robotics (demo)")
    db.add(account)
    await db.flush()
    people: dict[str, User] = {}
    for person in PEOPLE:
        people[person.key] = await accounts.create_user(
            db=db,
            account_id=account.id,
            email=person.email,
            name=person.name,
            role=person.role,
            password=DEMO_PASSWORD,
        )

    _echo("  writing 30 days of escalation history")
    rng = random.Random(7)
    now = utcnow()
    seniors = [people["owner"], people["senior1"], people["senior2"]]
    for day in range(30, 0, -1):
        for n in range(rng.randint(0, 3)):
            author = rng.choice([people["junior"], people["senior2"]])
            created = now - timedelta(days=day, hours=rng.randint(0, 8), minutes=n * 7)
            session = AISession(
                account_id=account.id,
                created_by=author.id,
                title=f"Past issue #{day}-{n}",
                status=SessionStatus.RESOLVED,
                created_at=created,
                updated_at=created,
                escalated_at=created,
            )
            db.add(session)
            await db.flush()
            db.add(
                Message(
                    session_id=session.id,
                    account_id=account.id,
                    role="user",
                    author_user_id=author.id,
                    content="Stuck on this one.",
                    created_at=created,
                )
            )
            claimer = rng.choice([s for s in seniors if s.id != author.id])
            claimed = created + timedelta(seconds=rng.randint(30, 1800))
            db.add(
                Handoff(
                    session_id=session.id,
                    account_id=account.id,
                    intent=Intent.ESCALATE,
                    status=HandoffStatus.RESOLVED,
                    note="Need a second pair of eyes",
                    created_by=author.id,
                    created_at=created,
                    queued_at=created,
                    claimed_by=claimer.id,
                    claimed_at=claimed,
                    resolved_by=claimer.id,
                    resolved_at=claimed + timedelta(minutes=rng.randint(5, 90)),
                )
            )
    await db.flush()

    _echo("  creating live sessions with transcripts")
    made: list[AISession] = []
    for title, lines in TRANSCRIPTS:
        made.append(
            await sessions.create_session(
                db=db,
                actor=people["junior"],
                title=title,
                messages=[MessageCreate(role=role, content=text) for role, text in lines],
            )
        )
    await handoffs.create_handoff(
        db=db,
        actor=people["junior"],
        session_id=made[0].id,
        intent=Intent.ESCALATE,
        note="Deadlock only on CI; I've tried lock ordering. Can someone pair on it?",
        email_cap=email_cap,
    )
    await handoffs.create_handoff(
        db=db,
        actor=people["junior"],
        session_id=made[3].id,
        intent=Intent.PARK,
        note="Back to this after the release",
        email_cap=email_cap,
    )
    return people


async def _seed_and_tokens(settings: Settings) -> list[tuple[DemoPerson, User, str]]:
    engine = create_engine(settings.database_url)
    try:
        async with unit_of_work(create_sessionmaker(engine), AfterCommitRunner(TaskSet())) as db:
            people = await _seed(db, email_cap=settings.email_cap_per_hour)
            rows = []
            for person in PEOPLE:
                user = people[person.key]
                _token, secret = await accounts.create_token(db=db, user=user, name="demo")
                rows.append((person, user, secret))
            return rows
    finally:
        await engine.dispose()


def run(*, host: str, port: int, smtp_port: int, seed_only: bool) -> None:
    os.environ.setdefault("LIFELINE_ENV", "demo")
    os.environ.setdefault("LIFELINE_SECRET_KEY", DEMO_SECRET_KEY)
    os.environ.setdefault("LIFELINE_DATABASE_URL", DEMO_DB)
    os.environ.setdefault("LIFELINE_BASE_URL", f"http://{host}:{port}")
    os.environ.setdefault("LIFELINE_SMTP_HOST", "127.0.0.1")
    os.environ.setdefault("LIFELINE_SMTP_PORT", str(smtp_port))
    os.environ.setdefault("LIFELINE_MAIL_SINK_DIR", str(MAIL_DIR.resolve()))
    database_url = os.environ["LIFELINE_DATABASE_URL"]

    _echo("[1/3] migrating the embedded database")
    migrate.upgrade(database_url)
    _echo("[2/3] seeding the demo account")
    rows = asyncio.run(_seed_and_tokens(get_settings()))

    base = os.environ["LIFELINE_BASE_URL"]
    typer.echo("")
    typer.echo(f"Lifeline demo at {base}   (API docs: {base}/docs)")
    typer.echo(f"Every demo login's password: {DEMO_PASSWORD}")
    typer.echo("")
    for person, user, secret in rows:
        typer.echo(f"  {person.role.value:<9} {user.name:<16} {user.email:<28} token {secret}")
    typer.echo("")
    typer.echo("The magic moment (two windows that don't share cookies: use a private window):")
    typer.echo(f"  1. Window A: {base}/login as {PEOPLE[1].email} (an admin): the team queue.")
    typer.echo(f"  2. Window B: {base}/login as {PEOPLE[3].email} (an engineer), My sessions,")
    typer.echo(f"     open “{TRANSCRIPTS[2][0]}”, say what you need, press Escalate.")
    typer.echo("  3. Window A: it slides in with a toast. Press Pick Up; window B says who did.")
    typer.echo(f"Emails are caught by a local sink; signed in, see your team's at {base}/demo/mail")
    typer.echo("")
    junior_token = next(secret for person, _user, secret in rows if person.key == "junior")
    typer.echo(f"Let Claude Code escalate as {PEOPLE[3].name} (an engineer):")
    typer.echo(f"  {claude_mcp_add_line(base, junior_token)}")
    typer.echo("")
    if seed_only:
        return
    # A person watches this terminal: readable lines, unless JSON is asked for explicitly.
    logs.configure_logging(json_lines=logs.env_bool("LIFELINE_LOG_JSON") or False, demo=True)
    _echo(f"[3/3] serving on {base} with a mail sink on 127.0.0.1:{smtp_port}")
    from lifeline.mailsink import MailSink

    sink = MailSink(directory=MAIL_DIR, host="127.0.0.1", port=smtp_port)
    sink.start()
    try:
        import uvicorn

        uvicorn.run(
            "lifeline.asgi:app",
            host=host,
            port=port,
            log_config=None,
            ws_per_message_deflate=False,
        )
    finally:
        sink.stop()
