"""Web passwords from the command line: set, prompted for, and usable to sign in."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI

from lifeline.app import create_app
from tests.conftest import make_settings
from tests.support.live import server_env
from tests.web.conftest import Browser


def lifeline(database_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifeline.cli", *args],
        input=stdin,
        env=server_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def signs_in(app: FastAPI, email: str, password: str) -> bool:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await Browser(client).sign_in(email, password)
    return response.status_code == 303


@pytest.fixture
async def fresh_app(database_url: str) -> FastAPI:
    return create_app(make_settings(database_url), plugins=[])


async def test_account_and_user_passwords_given_or_prompted_sign_in(
    database_url: str, fresh_app: FastAPI
) -> None:
    made = lifeline(
        database_url,
        "account",
        "create",
        "Acme",
        "--owner-email",
        "o@acme.test",
        "--password",
        "-",
        "--json",
        stdin="owner password\nowner password\n",
    )
    assert made.returncode == 0, made.stderr
    account_id = json.loads(made.stdout)["account"]["id"]  # prompts went to stderr
    user = lifeline(
        database_url,
        *("user", "create", "--account", account_id, "--email", "s@acme.test"),
        *("--role", "engineer", "--password", "senior password", "--json"),
    )
    assert user.returncode == 0, user.stderr
    short = lifeline(
        database_url,
        *("user", "create", "--account", account_id, "--email", "x@acme.test"),
        *("--password", "short"),
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    common = lifeline(
        database_url,
        *("user", "create", "--account", account_id, "--email", "z@acme.test"),
        *("--password", "password1234"),
    )
    assert common.returncode == 2 and "most commonly used" in common.stderr
    mismatch = lifeline(
        database_url,
        *("user", "create", "--account", account_id, "--email", "y@acme.test", "--password", "-"),
        stdin="first try one\nsecond try two\nfirst try one\nfirst try one\n",
    )
    assert mismatch.returncode == 0, mismatch.stderr  # asked again until both entries match

    async with fresh_app.router.lifespan_context(fresh_app):
        assert await signs_in(fresh_app, "o@acme.test", "owner password")
        assert await signs_in(fresh_app, "s@acme.test", "senior password")
        assert await signs_in(fresh_app, "y@acme.test", "first try one")
        assert not await signs_in(fresh_app, "x@acme.test", "short")


async def test_set_password_replaces_it_and_signs_out_open_web_sessions(
    database_url: str, fresh_app: FastAPI
) -> None:
    made = lifeline(
        database_url,
        *("account", "create", "Acme", "--owner-email", "o@acme.test"),
        *("--password", "old password", "--json"),
    )
    assert made.returncode == 0, made.stderr
    async with fresh_app.router.lifespan_context(fresh_app):
        transport = httpx.ASGITransport(app=fresh_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await Browser(c).sign_in("o@acme.test", "old password")).status_code == 303
            assert (await c.get("/api/v1/me")).status_code == 200

            changed = lifeline(
                database_url,
                *("user", "set-password", "--email", "O@acme.test"),
                stdin="new password\nnew password\n",
            )
            assert changed.returncode == 0, changed.stderr
            assert (await c.get("/api/v1/me")).status_code == 401
        assert not await signs_in(fresh_app, "o@acme.test", "old password")
        assert await signs_in(fresh_app, "o@acme.test", "new password")
    unknown = lifeline(
        database_url,
        *("user", "set-password", "--email", "n@x.test", "--password", "whatever it is"),
    )
    assert unknown.returncode == 1 and "No active user" in unknown.stderr
