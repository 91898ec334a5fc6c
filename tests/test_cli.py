"""The ``lifeline`` command, run as a real subprocess with its own environment.

Bootstrap from nothing (migrate, create an account, a user, a token), check the printed JSON
exactly, then use the printed secrets against the API. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from lifeline.config import PLACEHOLDER_SECRETS, Settings
from tests.support.live import server_env

ALEMBIC_HEAD_QUERY = "SELECT version_num FROM alembic_version"


def lifeline(
    *args: str, database_url: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifeline.cli", *args],
        env=server_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


async def run(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI from an async test: in a thread, so the in-process app's loop keeps running
    (a background task of it may hold SQLite's write lock until its next step)."""
    return await asyncio.to_thread(lambda: lifeline(*args, database_url=database_url, **env))


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    # stdout is exactly one JSON document: logs and notices go to stderr.
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_db_upgrade_migrates_a_fresh_sqlite_file(tmp_path: Path) -> None:
    db_file = tmp_path / "fresh.db"
    url = f"sqlite+aiosqlite:///{db_file}"

    result = lifeline("db", "upgrade", database_url=url)

    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db_file) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        (version,) = conn.execute(ALEMBIC_HEAD_QUERY).fetchone()
    assert {"accounts", "users", "api_tokens", "ai_sessions", "handoffs", "deliveries"} <= tables
    assert version
    # Running it again is harmless.
    assert lifeline("db", "upgrade", database_url=url).returncode == 0


async def test_bootstrap_from_the_command_line(
    database_url: str, client: httpx.AsyncClient
) -> None:
    upgraded = await run("db", "upgrade", database_url=database_url)
    assert upgraded.returncode == 0, upgraded.stderr

    created = as_json(
        await run(
            "account",
            "create",
            "Acme Ops",
            "--owner-email",
            "Owner@Acme.example",
            "--json",
            database_url=database_url,
        )
    )
    assert set(created) == {"account", "user", "token"}
    assert set(created["account"]) == {"id", "name"}
    assert created["account"]["name"] == "Acme Ops"
    assert {"id", "email", "role"} <= set(created["user"])
    assert created["user"]["email"] == "owner@acme.example"
    assert created["user"]["role"] == "owner"
    assert created["token"].startswith("lfl_")
    owner = bearer(created["token"])
    me = await client.get("/api/v1/me", headers=owner)
    assert me.status_code == 200
    assert me.json()["id"] == created["user"]["id"]
    assert me.json()["account"]["id"] == created["account"]["id"]

    senior = as_json(
        await run(
            "user",
            "create",
            "--account",
            created["account"]["id"],
            "--email",
            "sam@acme.example",
            "--role",
            "admin",
            "--name",
            "Sam Senior",
            "--json",
            database_url=database_url,
        )
    )
    assert set(senior) == {"user", "token"}
    assert senior["user"]["role"] == "admin" and senior["user"]["name"] == "Sam Senior"
    assert senior["user"]["email"] == "sam@acme.example"
    assert {"id", "email", "role"} <= set(senior["user"])
    viewer = as_json(
        await run(
            "user",
            "create",
            "--account",
            created["account"]["id"],
            "--email",
            "vic@acme.example",
            "--role",
            "viewer",
            "--json",
            database_url=database_url,
        )
    )
    assert viewer["user"]["role"] == "viewer"

    token = as_json(
        await run(
            "token", "create", "--user", senior["user"]["id"], "--json", database_url=database_url
        )
    )
    assert token["token"].startswith("lfl_") and token["token"] != senior["token"]
    assert token["user_id"] == senior["user"]["id"] and token["id"]

    # The printed secrets work: the owner escalates, the CLI-made admin picks it up.
    session = await client.post("/api/v1/ai-sessions", headers=owner, json={"title": "from CLI"})
    assert session.status_code == 201
    handoff = await client.post(
        f"/api/v1/ai-sessions/{session.json()['id']}/handoff",
        headers=owner,
        json={"intent": "escalate", "note": "help"},
    )
    assert handoff.status_code == 201
    claim_path = f"/api/v1/ai-sessions/{session.json()['id']}/handoffs/{handoff.json()['id']}/claim"
    as_viewer = await client.post(claim_path, headers=bearer(viewer["token"]))
    assert as_viewer.status_code == 403
    claim = await client.post(claim_path, headers=bearer(token["token"]))
    assert claim.status_code == 200 and claim.json()["claimed_by"] == senior["user"]["id"]
    users = await client.get("/api/v1/users", headers=bearer(senior["token"]))
    assert {u["email"] for u in users.json()["items"]} == {
        "owner@acme.example",
        "sam@acme.example",
        "vic@acme.example",
    }


def test_cli_errors_are_messages_not_tracebacks(database_url: str) -> None:
    created = as_json(
        lifeline(
            "account",
            "create",
            "Acme",
            "--owner-email",
            "o@acme.example",
            "--json",
            database_url=database_url,
        )
    )
    account_id = created["account"]["id"]
    cases = [
        (["user", "create", "--account", "no-such-account", "--email", "a@b.example"], "not found"),
        (["user", "create", "--account", account_id, "--email", "o@acme.example"], "exists"),
        (
            ["user", "create", "--account", account_id, "--email", "x@b.example", "--role", "boss"],
            "role",
        ),
        (["user", "create", "--account", account_id, "--email", "not-an-email"], "email"),
        (["account", "create", "Other", "--owner-email", "bad"], "email"),
        (["account", "create", "x" * 201, "--owner-email", "long@acme.example"], "name"),
        (["token", "create", "--user", "no-such-user"], "no-such-user"),
    ]
    for args, says in cases:
        result = lifeline(*args, "--json", database_url=database_url)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert says in result.stderr.lower(), (args, result.stderr)
        assert result.stdout == "", args


def test_serve_with_several_workers_needs_redis(tmp_path: Path) -> None:
    result = lifeline(
        "serve",
        "--workers",
        "2",
        "--port",
        "1",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db",
    )
    assert result.returncode != 0
    assert "LIFELINE_REDIS_URL" in result.stderr


@pytest.mark.parametrize(
    ("command", "secret"), [(["serve", "--port", "1"], None), (["db", "upgrade"], "changeme")]
)
def test_a_missing_or_placeholder_secret_is_refused_in_production(
    tmp_path: Path, command: list[str], secret: str | None
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/prod.db"
    env = server_env(url, LIFELINE_ENV="production")
    env.pop("LIFELINE_SECRET_KEY")
    if secret is not None:
        env["LIFELINE_SECRET_KEY"] = secret
    result = subprocess.run(
        [sys.executable, "-m", "lifeline.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode != 0
    assert "LIFELINE_SECRET_KEY" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "prod.db").exists()


@pytest.mark.parametrize("secret", sorted(PLACEHOLDER_SECRETS))
def test_every_placeholder_is_refused_outside_the_demo(secret: str) -> None:
    for env in ("production",):
        with pytest.raises(ValueError, match="LIFELINE_SECRET_KEY"):
            Settings(env=env, secret_key=secret)
        with pytest.raises(ValueError, match="LIFELINE_SECRET_KEY"):
            Settings(env=env, secret_key=f"  {secret.upper()}  ")
    assert Settings(env="demo", secret_key=secret).env == "demo"


def test_a_real_secret_is_accepted_in_production(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/prod.db"
    result = lifeline(
        "db",
        "upgrade",
        database_url=url,
        LIFELINE_ENV="production",
        LIFELINE_SECRET_KEY="k3Q9-a-long-random-production-secret-value-0123456789",
    )
    assert result.returncode == 0, result.stderr


async def test_accounts_and_users_are_listed_as_tables_or_json_without_secrets(
    database_url: str,
) -> None:
    acme = as_json(
        await run(
            "account",
            "create",
            "Acme",
            "--owner-email",
            "o@acme.example",
            "--json",
            database_url=database_url,
        )
    )
    other = as_json(
        await run(
            "account",
            "create",
            "Other Co",
            "--owner-email",
            "o@other.example",
            "--json",
            database_url=database_url,
        )
    )
    sam = as_json(
        await run(
            "user",
            "create",
            "--account",
            acme["account"]["id"],
            "--email",
            "sam@acme.example",
            "--role",
            "admin",
            "--name",
            "Sam Senior",
            "--json",
            database_url=database_url,
        )
    )

    listed = as_json(await run("account", "list", "--json", database_url=database_url))
    assert listed == {"items": [acme["account"], other["account"]]}
    table = await run("account", "list", database_url=database_url)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "MEMBERS"]
    assert rows[0].split() == [acme["account"]["id"], "Acme", "2"]
    assert rows[1].split() == [other["account"]["id"], "Other", "Co", "1"]

    users = as_json(
        await run(
            "user",
            "list",
            "--account",
            acme["account"]["id"],
            "--json",
            database_url=database_url,
        )
    )
    # The objects `user create --json` printed, without the token.
    assert users == {"items": [acme["user"], sam["user"]]}
    assert "lfl_" not in json.dumps(users)
    table = await run("user", "list", "--account", acme["account"]["id"], database_url=database_url)
    assert table.returncode == 0, table.stderr
    assert "lfl_" not in table.stdout
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["ID", "EMAIL", "NAME", "ROLE"]
    assert [row.split()[1] for row in rows] == ["o@acme.example", "sam@acme.example"]
    # New people are emailed only when no open page of theirs was told live.
    assert all(row.split()[-1] == "offline_only" for row in rows)

    unknown = await run("user", "list", "--account", "no-such-account", database_url=database_url)
    assert unknown.returncode == 1 and "not found" in unknown.stderr.lower()
    assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    "command",
    [[], ["account", "create"], ["account", "list"], ["user", "list"], ["token", "create"]],
)
def test_help_shows_flags_as_flags(tmp_path: Path, command: list[str]) -> None:
    result = lifeline(*command, "--help", database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout
    assert re.search(r"^\s+--help\s+Show this message", result.stdout, re.M), result.stdout
    if "--json" in result.stdout:
        assert re.search(r"^\s+--json\s+Print machine-readable JSON", result.stdout, re.M)


def test_a_missing_secret_is_one_sentence_saying_how_to_make_one(tmp_path: Path) -> None:
    env = server_env(f"sqlite+aiosqlite:///{tmp_path}/prod.db", LIFELINE_ENV="production")
    env.pop("LIFELINE_SECRET_KEY")
    result = subprocess.run(
        [sys.executable, "-m", "lifeline.cli", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: LIFELINE_SECRET_KEY is not set")
    assert "secrets.token_urlsafe" in lines[0]
    assert "pydantic" not in result.stderr and "http" not in result.stderr


def test_a_short_secret_is_refused_in_production() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(env="production", secret_key="k3Q9-short-not-a-placeholder-31")
    assert Settings(env="production", secret_key="k3Q9-long-enough-not-a-placeholder").env
    assert Settings(env="development", secret_key="short").env == "development"
