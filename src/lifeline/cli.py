"""The ``lifeline`` command: serve, worker, migrations, demo, accounts, users and tokens."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import logs, migrate
from lifeline.accounts import passwords, sign_in
from lifeline.accounts import service as accounts
from lifeline.accounts.models import Account, Role, User
from lifeline.after_commit import (
    AfterCommitRunner,
    DeliverToIntegrations,
    DispatchDeliveries,
    DropConnections,
    ExpandWaves,
    PublishEvent,
    TaskSet,
)
from lifeline.agents import cli as agents_cli
from lifeline.config import Settings, get_settings
from lifeline.db import create_engine, create_sessionmaker, run_unit_of_work
from lifeline.errors import LifelineError
from lifeline.realtime import drops as realtime_drops

# Plain help (click's layout): typer's rich panels print a flag such as --json as "--json <bool>",
# as if it took a value.
PLAIN_HELP: dict[str, Any] = {"no_args_is_help": True, "rich_markup_mode": None}
app = typer.Typer(help="Lifeline: escalation and hand-off for AI sessions.", **PLAIN_HELP)
db_app = typer.Typer(help="Database migrations.", **PLAIN_HELP)
account_app = typer.Typer(help="Accounts (tenants).", **PLAIN_HELP)
user_app = typer.Typer(help="Users of an account.", **PLAIN_HELP)
token_app = typer.Typer(help="API tokens.", **PLAIN_HELP)
app.add_typer(db_app, name="db")
app.add_typer(account_app, name="account")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
# Agents' commands: they talk to a server over HTTP and never open the database.
app.command("mcp")(agents_cli.mcp)
app.command("escalate")(agents_cli.escalate)
app.add_typer(agents_cli.hook_app, name="hook")

T = TypeVar("T")


@app.callback()
def _configure_logging() -> None:
    """Every command logs the same way: JSON lines unless stderr is a terminal."""
    logs.configure_logging()


JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _settings_problem(exc: ValidationError) -> str:
    """One sentence per refused setting, without pydantic's framing and documentation links."""
    sentences = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "value_error" and cause is not None:
            sentences.append(str(cause))
            continue
        field = ".".join(str(part) for part in error.get("loc", ()))
        name = f"LIFELINE_{field.upper()}" if field else "a LIFELINE_ setting"
        sentences.append(f"{name}: {error['msg']}")
    return "; ".join(sentences)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        typer.echo(f"error: {_settings_problem(exc)}", err=True)
        raise typer.Exit(2) from exc
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


async def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """One unit of work (run again on a deadlock or serialization failure), then its side
    effects, before the command exits."""
    engine = create_engine(settings.database_url)
    tasks = TaskSet()
    runner = AfterCommitRunner(tasks)
    # Live connections to close (a password set, say) are in the servers' memory: with Redis
    # they hear it at once; without, they notice on their next heartbeat's credential check.
    closers = [realtime_drops.register(runner, settings)] if settings.redis_url else []
    if not settings.redis_url:
        runner.leave(DropConnections, covered_by="the servers' heartbeat credential check")
    runner.leave(PublishEvent, covered_by="the event log, replayed when a stream reconnects")
    runner.leave(DispatchDeliveries, covered_by="the worker's outbox sweep")
    runner.leave(ExpandWaves, covered_by="the worker's outbox sweep")
    runner.leave(DeliverToIntegrations, covered_by="the worker's integrations sweep")
    try:
        result = await run_unit_of_work(create_sessionmaker(engine), runner, work)
        await tasks.drain()
        return result
    finally:
        for close in closers:
            await close()
        await engine.dispose()


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work against the configured database; domain errors exit 1."""

    try:
        return asyncio.run(_in_transaction(_settings(), work))
    except LifelineError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


def _user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "account_id": user.account_id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
    }


def _emit(as_json: bool, payload: dict[str, Any], human: str) -> None:
    typer.echo(json.dumps(payload) if as_json else human)


def _web_password(value: str | None) -> str | None:
    """``--password -`` asks for it (hidden, twice); a web password is at least 12 characters
    and not one of the most common ones."""
    if value == "-":
        # On stderr, so ``--json`` output stays machine-readable.
        value = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    problem = None if value is None else passwords.password_problem(value)
    if problem is not None:
        typer.echo(f"error: --password {problem}", err=True)
        raise typer.Exit(2)
    return value


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations (Alembic) to LIFELINE_DATABASE_URL."""
    migrate.upgrade(_settings().database_url, revision)
    typer.echo(f"database at {revision}", err=True)


@account_app.command("create")
def account_create(
    name: str,
    owner_email: Annotated[str, typer.Option(help="The owner's email address.")],
    owner_name: Annotated[str | None, typer.Option(help="The owner's display name.")] = None,
    password: Annotated[
        str | None, typer.Option(help="The owner's web password; '-' prompts for it.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an account with its owner; prints the owner's API token once."""
    password = _web_password(password)

    async def work(db: AsyncSession) -> tuple[Any, User, str]:
        return await accounts.create_account(
            db=db,
            name=name,
            owner_email=owner_email,
            owner_name=owner_name,
            owner_password=password,
        )

    account, owner, secret = _run(work)
    _emit(
        as_json,
        {
            "account": {"id": account.id, "name": account.name},
            "user": _user_json(owner),
            "token": secret,
        },
        f"account {account.id} ({account.name})\nowner   {owner.id} {owner.email}\n"
        f"token   {secret}   (shown once)",
    )


def _account_json(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, for people reading a terminal."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


async def _every_page(
    fetch: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
) -> list[T]:
    items: list[T] = []
    cursor: str | None = None
    while True:
        rows, cursor = await fetch(cursor)
        items.extend(rows)
        if cursor is None:
            return items


@account_app.command("list")
def account_list(as_json: JsonOpt = False) -> None:
    """List every account, oldest first, with its number of active members."""

    async def work(db: AsyncSession) -> list[tuple[Account, int]]:
        found = await _every_page(
            lambda cursor: accounts.list_accounts(db=db, cursor=cursor, limit=100)
        )
        counts = await accounts.member_counts(db=db, account_ids=[a.id for a in found])
        return [(a, counts.get(a.id, 0)) for a in found]

    listed = _run(work)
    if as_json:
        typer.echo(json.dumps({"items": [_account_json(a) for a, _count in listed]}))
        return
    if not listed:
        typer.echo("no accounts yet: lifeline account create NAME --owner-email E", err=True)
        return
    rows = [[a.id, a.name, str(count)] for a, count in listed]
    typer.echo(_table(["ID", "NAME", "MEMBERS"], rows))


@user_app.command("list")
def user_list(
    account: Annotated[str, typer.Option(help="The account id.")],
    as_json: JsonOpt = False,
) -> None:
    """List an account's active users, oldest first (no secrets)."""

    async def work(db: AsyncSession) -> list[User]:
        await accounts.get_account(db=db, account_id=account)
        return await _every_page(
            lambda cursor: accounts.list_users(db=db, account_id=account, cursor=cursor, limit=100)
        )

    users = _run(work)
    if as_json:
        typer.echo(json.dumps({"items": [_user_json(u) for u in users]}))
        return
    rows = [[u.id, u.email, u.name, u.role, u.email_notifications] for u in users]
    typer.echo(_table(["ID", "EMAIL", "NAME", "ROLE", "EMAIL NOTIFICATIONS"], rows))


@user_app.command("create")
def user_create(
    account: Annotated[str, typer.Option(help="The account id.")],
    email: Annotated[str, typer.Option(help="The user's email address.")],
    role: Annotated[Role, typer.Option(help="owner, admin, engineer or viewer.")] = Role.ENGINEER,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    password: Annotated[str | None, typer.Option(help="Web password; '-' prompts for it.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user in an account; prints their API token once."""
    password = _web_password(password)

    async def work(db: AsyncSession) -> tuple[User, str]:
        await accounts.get_account(db=db, account_id=account)
        user = await accounts.create_user(
            db=db, account_id=account, email=email, name=name, role=role, password=password
        )
        _token, secret = await accounts.create_token(db=db, user=user, name="cli")
        return user, secret

    user, secret = _run(work)
    _emit(
        as_json,
        {"user": _user_json(user), "token": secret},
        f"user  {user.id} {user.email} ({user.role})\ntoken {secret}   (shown once)",
    )


@user_app.command("set-password")
def user_set_password(
    email: Annotated[str, typer.Option(help="The user's email address.")],
    password: Annotated[
        str, typer.Option(help="The new web password; '-' (the default) prompts for it.")
    ] = "-",
) -> None:
    """Set a user's web password; their open web sessions are signed out."""
    new_password = _web_password(password)
    assert new_password is not None

    async def work(db: AsyncSession) -> User:
        return await sign_in.set_password(db=db, email=email, password=new_password)

    user = _run(work)
    typer.echo(f"password set for {user.email}; their web sessions were signed out", err=True)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="The user id.")],
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token for a user; prints the secret once."""

    async def work(db: AsyncSession) -> tuple[Any, str]:
        owner = await db.get(User, user)
        if owner is None or owner.deleted_at is not None:
            raise LifelineError(f"no active user with id {user}")
        return await accounts.create_token(db=db, user=owner, name=name)

    token, secret = _run(work)
    _emit(
        as_json,
        {"token": secret, "id": token.id, "user_id": token.user_id, "prefix": token.prefix},
        f"token {secret}   (shown once; id {token.id})",
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
) -> None:
    """Serve the API and web app with uvicorn."""
    import uvicorn

    settings = _settings()
    if workers > 1 and not settings.redis_url:
        typer.echo(
            "error: --workers > 1 needs LIFELINE_REDIS_URL: live push must cross processes",
            err=True,
        )
        raise typer.Exit(2)
    uvicorn.run(
        "lifeline.asgi:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,
        # Applied by uvicorn in every server process it starts, so --workers N log alike.
        log_config=logs.logging_config(
            json_lines=logs.wants_json(settings.log_json), level=settings.log_level
        ),
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        # Events are small JSON; per-message deflate would cost ~35 KiB per idle connection.
        ws_per_message_deflate=False,
    )


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Run one sweep and exit.")] = False,
) -> None:
    """Fire due escalation policy steps and send due notifications, sweeping periodically."""
    from lifeline import worker as worker_module

    worker_module.main(_settings(), once=once)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    smtp_port: Annotated[int, typer.Option(help="Port of the local mail sink.")] = 1025,
    seed_only: Annotated[bool, typer.Option(help="Seed and exit without serving.")] = False,
) -> None:
    """Seed a demo account and serve it, with a local mail sink catching every email."""
    from lifeline import demo as demo_module

    demo_module.run(host=host, port=port, smtp_port=smtp_port, seed_only=seed_only)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
