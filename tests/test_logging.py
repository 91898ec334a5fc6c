"""Structured logs: JSON lines, and the request id carried into after-commit work."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lifeline import after_commit
from lifeline.app import create_app
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.logs import HumanFormatter, JsonFormatter, RequestContextFilter, request_id_var
from tests.support.factories import Factory, new_session
from tests.support.live import free_port, live_process, server_env

HANDLER_LOGGER = "lifeline.tests.after_commit"


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]


@pytest.fixture
def json_logs() -> Iterator[Captured]:
    """The production handler (JSON formatter + request filter) on the loggers under test."""
    captured = Captured()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    names = [HANDLER_LOGGER, "lifeline.access"]
    previous = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield captured
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(previous[name])


async def _logging_plugin(_app: FastAPI, ctx: AppContext) -> None:
    """Stands in for the live-push layer: logs from the after-commit task it is handed."""
    log = logging.getLogger(HANDLER_LOGGER)

    async def publish(intent: after_commit.PublishEvent) -> None:
        log.info("published %s", intent.message["type"], extra={"event_id": intent.event_id})

    ctx.after_commit.register(after_commit.PublishEvent, publish)


@pytest.fixture
async def logged_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, plugins=[_logging_plugin])
    async with application.router.lifespan_context(application):
        yield application


async def test_after_commit_log_lines_carry_the_request_id(
    logged_app: FastAPI, json_logs: Captured
) -> None:
    ctx: AppContext = logged_app.state.ctx
    factory = Factory(ctx.sessionmaker)
    team = await factory.team(junior="engineer", senior="engineer")
    transport = httpx.ASGITransport(app=logged_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        session = await new_session(client, team["junior"])
        response = await client.post(
            f"/api/v1/ai-sessions/{session['id']}/handoff",
            headers={**team["junior"].headers, "X-Request-ID": "escalate-7f3a"},
            json={"intent": "escalate", "note": "help"},
        )
        assert response.status_code == 201, response.text
        assert response.headers["X-Request-ID"] == "escalate-7f3a"
        await ctx.tasks.drain(wait_seconds=10)

    published = [line for line in json_logs.lines() if line["logger"] == HANDLER_LOGGER]
    assert [line["message"] for line in published] == ["published handoff.escalated"]
    assert published[0]["request_id"] == "escalate-7f3a"
    assert isinstance(published[0]["event_id"], int)
    access = [
        line
        for line in json_logs.lines()
        if line["logger"] == "lifeline.access" and line.get("request_id") == "escalate-7f3a"
    ]
    assert len(access) == 1
    assert access[0]["status"] == 201 and access[0]["method"] == "POST"
    # Outside any request nothing is stamped.
    assert request_id_var.get() is None


def _record(msg: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("lifeline.x", logging.WARNING, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_have_level_logger_extras_and_the_traceback() -> None:
    try:
        raise RuntimeError("smtp down")
    except RuntimeError:
        record = logging.LogRecord(
            "lifeline.mail", logging.ERROR, __file__, 1, "send to %s failed", ("a@b",), None
        )
        record.exc_info = sys.exc_info()
    record.delivery_id = "d-1"
    token = request_id_var.set("r-1")
    try:
        RequestContextFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["logger"] == "lifeline.mail"
    assert line["message"] == "send to a@b failed"
    assert line["request_id"] == "r-1" and line["delivery_id"] == "d-1"
    assert "RuntimeError: smtp down" in line["exc"]
    assert line["ts"].endswith("+00:00")


def test_human_lines_read_as_text() -> None:
    record = _record("claimed", handoff_id="h-1", request_id="abcdef0123456789")
    text = HumanFormatter().format(record)
    assert "WARNING" in text and "lifeline.x" in text and "[abcdef012345]" in text
    assert text.endswith("claimed handoff_id=h-1")


def test_a_served_process_logs_json_lines_with_request_ids(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = server_env(database_url, LIFELINE_LOG_JSON="true", LIFELINE_LOG_LEVEL="INFO")
    log_path = tmp_path / "serve.log"
    with live_process(
        ["serve", "--port", str(port)],
        env,
        log_path=log_path,
        ready_url=f"http://127.0.0.1:{port}/healthz",
    ):
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/me", headers={"X-Request-ID": "probe-42"}
        )
        assert response.status_code == 401
        assert response.headers["X-Request-ID"] == "probe-42"
        generated = httpx.get(f"http://127.0.0.1:{port}/api/v1/me").headers["X-Request-ID"]
        assert len(generated) == 32 and generated != "probe-42"
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    access = [line for line in lines if line.get("request_id") == "probe-42"]
    assert [(line["logger"], line["status"], line["path"]) for line in access] == [
        ("lifeline.access", 401, "/api/v1/me")
    ]


def test_the_demo_logs_for_a_person_without_routine_requests_or_smtp_chatter(
    tmp_path: Path,
) -> None:
    """``lifeline demo`` for real: seeded, serving, mail sink catching an escalation's emails."""
    port, smtp_port = free_port(), free_port()
    command = ["demo", "--port", str(port), "--smtp-port", str(smtp_port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    log_path = tmp_path / "demo.log"
    with (
        log_path.open("wb") as log,
        subprocess.Popen(
            [sys.executable, "-m", "lifeline.cli", *command],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(proc, f"{base}/healthz", log_path)
            banner = log_path.read_text()
            junior = re.search(r"jamie@demo\.lifeline\.test\s+token (lfl_\S+)", banner)
            assert junior, banner
            headers = {"Authorization": f"Bearer {junior.group(1)}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
                assert api.get("/static/app.css").status_code == 200
                session = api.post("/api/v1/ai-sessions", json={"title": "Logs for people"})
                sid = session.json()["id"]
                escalated = api.post(
                    f"/api/v1/ai-sessions/{sid}/handoff",
                    json={"intent": "escalate", "note": "read me"},
                )
                assert escalated.status_code == 201
                with api.stream("GET", "/api/v1/events") as stream:
                    assert stream.status_code == 200
                _wait_for_mail(tmp_path / ".demo-mail", count=3)
                assert api.get("/login").status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    text = log_path.read_text()
    served = text[text.index("[3/3]") :]
    assert "GET /login → 200" in served
    assert re.search(r"^\d\d:\d\d:\d\d  POST /api/v1/ai-sessions/\S+/handoff → 201", served, re.M)
    for noise in ("/static/", "/api/v1/events", "EHLO", ">> b'", '"level"', "request_id"):
        assert noise not in served, (noise, served)


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the demo did not come up:\n{log.read_text()}")


def _wait_for_mail(directory: Path, *, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if directory.is_dir() and len(list(directory.glob("*.eml"))) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} emails reached the demo's mail sink")


def test_serve_logs_json_lines_by_default_when_nobody_watches(
    database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = server_env(database_url)
    env.pop("LIFELINE_LOG_JSON")
    log_path = tmp_path / "serve.log"
    with live_process(
        ["serve", "--port", str(port)],
        env,
        log_path=log_path,
        ready_url=f"http://127.0.0.1:{port}/healthz",
    ):
        assert httpx.get(f"http://127.0.0.1:{port}/static/app.css").status_code == 200
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert any(line.get("path") == "/static/app.css" for line in lines)
