"""The deployment examples work: the Procfile's processes on a fresh PostgreSQL, the systemd
units' commands, every setting documented, and SIGTERM right after an escalation loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from lifeline.config import Settings
from lifeline.db import create_engine, utcnow
from lifeline.notifications.models import Delivery
from tests.support.databases import require_env
from tests.support.live import free_port
from tests.support.smtp import SmtpRecorder, smtp_recorder

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "Procfile"
UNITS = ROOT / "deploy" / "systemd"
DEADLINE = 30.0


def procfile() -> dict[str, str]:
    """``name: command`` lines, comments and blanks skipped (the format Heroku and honcho read)."""
    entries: dict[str, str] = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        assert sep and re.fullmatch(r"[A-Za-z0-9_-]+", name), f"not a Procfile line: {line!r}"
        entries[name] = command.strip()
    return entries


# -- documentation and examples that need no server -------------------------------------------


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    missing = [
        f"LIFELINE_{name.upper()}"
        for name in Settings.model_fields
        if f"`LIFELINE_{name.upper()}`" not in doc
    ]
    assert missing == [], f"document these in docs/deploy.md: {missing}"


def test_the_procfile_names_the_three_process_types() -> None:
    entries = procfile()
    assert set(entries) == {"release", "web", "worker"}
    assert entries["release"] == "lifeline db upgrade"
    assert entries["web"].startswith("lifeline serve ") and "$" in entries["web"]
    assert entries["worker"] == "lifeline worker"


def _unit_exec_starts() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for unit in sorted(UNITS.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                found[unit.name] = line.removeprefix("ExecStart=").replace("%i", "8001").split()
    return found


def test_systemd_units_start_commands_that_exist() -> None:
    starts = _unit_exec_starts()
    assert set(starts) == {
        "lifeline-migrate.service",
        "lifeline-web@.service",
        "lifeline-worker@.service",
    }
    for unit, argv in starts.items():
        assert argv[0] == "/opt/lifeline/.venv/bin/lifeline", unit
        # The same argv against this checkout's CLI: it must parse (``--help`` stops there).
        result = subprocess.run(
            [sys.executable, "-m", "lifeline.cli", *argv[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "LIFELINE_LOG_JSON": "false"},
        )
        assert result.returncode == 0, f"{unit}: {result.stdout}{result.stderr}"
    env_keys = {
        line.split("=", 1)[0]
        for line in (UNITS / "lifeline.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    known = {f"LIFELINE_{name.upper()}" for name in Settings.model_fields}
    assert env_keys <= known, env_keys - known


# -- the Procfile's processes against a fresh PostgreSQL database ------------------------------


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """An empty database (no schema: the release step must build it), dropped afterwards."""
    server = make_url(require_env("LIFELINE_TEST_DATABASE_URL", "PostgreSQL"))
    if server.drivername == "postgresql":
        server = server.set(drivername="postgresql+asyncpg")
    name = f"lifeline_deploy_{uuid.uuid4().hex[:10]}"
    admin = server.render_as_string(hide_password=False)

    async def run(sql: str) -> None:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def process_env(database_url: str, port: int, smtp: SmtpRecorder, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update(
        # The venv's ``lifeline`` first on PATH, as an installed deployment has it.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PORT=str(port),
        HOST="127.0.0.1",
        LIFELINE_ENV="production",
        LIFELINE_SECRET_KEY="deploy-test-" + uuid.uuid4().hex,
        LIFELINE_DATABASE_URL=database_url,
        LIFELINE_BASE_URL=f"http://127.0.0.1:{port}",
        LIFELINE_SMTP_HOST=smtp.host,
        LIFELINE_SMTP_PORT=str(smtp.port),
        LIFELINE_SMTP_TIMEOUT_SECONDS="2",
        LIFELINE_DELIVERY_LEASE_SECONDS="8",
        LIFELINE_SWEEP_INTERVAL_SECONDS="0.5",
        LIFELINE_LOG_JSON="true",
    )
    env.update(extra)
    return env


def run_line(command: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", f'exec {command} "$@"', "procfile", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def start_line(command: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(["sh", "-c", f"exec {command}"], env=env, stdout=out, stderr=out)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=DEADLINE)


def wait_ready(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> httpx.Response:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited early:\n{log.read_text()}"
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready within {DEADLINE}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, and a clean exit: 0, or uvicorn re-raising the signal once it has shut down."""
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=DEADLINE)
    assert code in (0, -signal.SIGTERM), f"exit {code}:\n{log.read_text()}"


def cli_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = run_line("lifeline", env, *args, "--json")
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def seed_team(env: dict[str, str]) -> tuple[str, list[str]]:
    """An owner, an escalating engineer and two seniors, made with the CLI.

    Returns the escalator's token and the addresses an escalation notifies (owner and seniors).
    """
    created = cli_json(env, "account", "create", "Acme", "--owner-email", "owner@acme.test")
    account_id = created["account"]["id"]
    tokens = {}
    for key in ("junior", "senior1", "senior2"):
        person = cli_json(
            env,
            "user",
            "create",
            "--account",
            account_id,
            "--email",
            f"{key}@acme.test",
            "--role",
            "engineer",
        )
        tokens[key] = person["token"]
    return tokens["junior"], ["owner@acme.test", "senior1@acme.test", "senior2@acme.test"]


def escalate(base_url: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    session = httpx.post(
        f"{base_url}/api/v1/ai-sessions", headers=headers, json={"title": "Prod is down"}
    )
    assert session.status_code == 201, session.text
    handoff = httpx.post(
        f"{base_url}/api/v1/ai-sessions/{session.json()['id']}/handoff",
        headers=headers,
        json={"intent": "escalate", "note": "on fire"},
    )
    assert handoff.status_code == 201, handoff.text
    body: dict[str, Any] = handoff.json()
    return body


def deliveries_of(database_url: str, handoff_id: str) -> list[Delivery]:
    async def read() -> list[Delivery]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(Delivery.__table__).where(Delivery.handoff_id == handoff_id)
                )
                return [Delivery(**row._mapping) for row in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def wait_for_mail(smtp: SmtpRecorder, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while len(smtp.messages) < count:
        assert time.monotonic() < deadline, f"expected {count} messages, got {smtp.messages}"
        time.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.slow
def test_procfile_release_web_and_worker_run_on_a_fresh_postgres(tmp_path: Path) -> None:
    entries = procfile()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres())
        smtp = stack.enter_context(smtp_recorder())
        env = process_env(database_url, port, smtp)

        release = run_line(entries["release"], env)
        assert release.returncode == 0, release.stderr

        web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
        web = stack.enter_context(start_line(entries["web"], env, web_log))
        worker = stack.enter_context(start_line(entries["worker"], env, worker_log))
        ready = wait_ready(base_url, web, web_log)
        assert ready.json() == {"status": "ok", "database": "ok"}

        junior, seniors = seed_team(env)
        handoff = escalate(base_url, junior)
        wait_for_mail(smtp, len(seniors))
        assert smtp.recipients() == seniors

        scrape = httpx.get(f"{base_url}/metrics").text
        assert 'lifeline_handoffs_created_total{intent="escalate"} 1.0' in scrape

        stop(web, web_log)
        stop(worker, worker_log)
        assert "Application shutdown complete." in web_log.read_text()
        rows = deliveries_of(database_url, handoff["id"])
        assert sorted((r.channel, r.status) for r in rows) == sorted(
            [("email", "sent")] * len(seniors) + [("push", "skipped")] * len(seniors)
        )
        # The worker ran its sweeps and logged them as JSON lines.
        worker_lines = [json.loads(line) for line in worker_log.read_text().splitlines()]
        assert any(line["logger"] == "lifeline.worker" for line in worker_lines)


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_right_after_an_escalation_leaves_every_delivery_sent_or_claimable(
    tmp_path: Path,
) -> None:
    entries = procfile()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_postgres())
        smtp = stack.enter_context(smtp_recorder())
        env = process_env(database_url, port, smtp)
        assert run_line(entries["release"], env).returncode == 0
        junior, seniors = seed_team(env)
        # One senior's mail server is slow: that send is in flight when the signal lands.
        smtp.slow_for(seniors[1], 1.0)

        web_log = tmp_path / "web.log"
        web = stack.enter_context(start_line(entries["web"], env, web_log))
        wait_ready(base_url, web, web_log)
        handoff = escalate(base_url, junior)
        stop(web, web_log)

        rows = deliveries_of(database_url, handoff["id"])
        assert len(rows) == 2 * len(seniors), "the outbox rows were committed with the handoff"
        for row in rows:
            assert row.status in {"sent", "pending", "skipped"}, (row.channel, row.status)
            if row.status == "pending":
                # Claimable: no lease, or one that expires (then any sender may take it).
                assert row.lease_expires_at is None or row.lease_expires_at > utcnow()

        # Whatever the server did not finish, a worker finishes; nobody gets a second email.
        deadline = time.monotonic() + DEADLINE
        while any(
            r.status == "pending" and r.lease_expires_at and r.lease_expires_at > utcnow()
            for r in deliveries_of(database_url, handoff["id"])
        ):
            assert time.monotonic() < deadline, "a lease never expired"
            time.sleep(0.2)
        once = run_line(entries["worker"], env, "--once")
        assert once.returncode == 0, once.stderr
        final = deliveries_of(database_url, handoff["id"])
        assert sorted((r.channel, r.status) for r in final) == sorted(
            [("email", "sent")] * len(seniors) + [("push", "skipped")] * len(seniors)
        )
        assert smtp.recipients() == seniors
