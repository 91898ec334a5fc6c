"""A local server that answers as Slack's Web API does, and requests signed as Slack signs them.

Slack can't be reached from where the tests run, so ``slack_sdk``'s async client is pointed at
this server (LIFELINE_SLACK_API_URL). It implements the methods Lifeline calls — ``auth.test``,
``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``, ``users.info`` — with Slack's
documented shapes: HTTP 200 with ``{"ok": false, "error": …}`` for API errors, 429 with
``Retry-After`` when rate limited.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

TEAM_ID = "T0LIFELINE"
TEAM_NAME = "Lifeline Test Workspace"
BOT_TOKEN = "xoxb-test-bot-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL_ID = "C0ESCALATE"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass
class FakeSlack:
    team_id: str = TEAM_ID
    tokens: set[str] = field(default_factory=lambda: {BOT_TOKEN})
    # Slack user id → the email on their profile.
    users: dict[str, str] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # (channel, ts) → the message as last posted or updated.
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # Method name → how many of its next calls answer 429.
    rate_limited: dict[str, int] = field(default_factory=dict)
    url: str = ""
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        self.calls.append(Call(method, args, token))
        if self.rate_limited.get(method):
            self.rate_limited[method] -= 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        if token not in self.tokens:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        answer: dict[str, Any] = handler(args)
        return web.json_response(answer)

    def m_auth_test(self, _args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://lifeline-test.slack.com/",
            "team": TEAM_NAME,
            "user": "lifeline",
            "team_id": self.team_id,
            "user_id": "U0BOT",
            "bot_id": "B0BOT",
        }

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        channel_id = CHANNEL_ID if channel.startswith("#") else channel
        ts = f"1700000000.{next(self._ts):06d}"
        message = {"text": args.get("text"), "blocks": _blocks(args), "ts": ts}
        self.messages[(channel_id, ts)] = message
        return {"ok": True, "channel": channel_id, "ts": ts, "message": message}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key] = {"text": args.get("text"), "blocks": _blocks(args), "ts": key[1]}
        return {"ok": True, "channel": key[0], "ts": key[1], "text": args.get("text")}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if str(args.get("user")) not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user"))
        if user_id not in self.users:
            return {"ok": False, "error": "user_not_found"}
        return {
            "ok": True,
            "user": {
                "id": user_id,
                "team_id": self.team_id,
                "name": user_id.lower(),
                "profile": {"email": self.users[user_id], "real_name": user_id},
            },
        }

    def ephemeral_to(self, user_id: str) -> list[str]:
        return [
            str(c.args.get("text"))
            for c in self.called("chat.postEphemeral")
            if c.args.get("user") == user_id
        ]


def _blocks(args: dict[str, Any]) -> Any:
    blocks = args.get("blocks")
    return json.loads(blocks) if isinstance(blocks, str) else blocks


@asynccontextmanager
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    app = web.Application()
    app.router.add_route("*", "/api/{method}", slack.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    slack.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/"
    try:
        yield slack
    finally:
        await runner.cleanup()


def block_action(
    *, handoff_id: str, slack_user_id: str, team_id: str = TEAM_ID, action_ts: str | None = None
) -> dict[str, Any]:
    """The payload of a Pick Up click, as Slack sends block_actions."""
    return {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "lifeline-test"},
        "user": {"id": slack_user_id, "username": slack_user_id.lower(), "team_id": team_id},
        "api_app_id": "A0LIFELINE",
        "token": "deprecated-verification-token",
        "container": {"type": "message", "channel_id": CHANNEL_ID},
        "trigger_id": f"{time.time_ns()}.trigger",
        "channel": {"id": CHANNEL_ID, "name": "escalations"},
        "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
        "actions": [
            {
                "action_id": "pick_up",
                "block_id": f"handoff:{handoff_id}",
                "text": {"type": "plain_text", "text": "Pick Up"},
                "value": handoff_id,
                "style": "primary",
                "type": "button",
                "action_ts": action_ts or f"{time.time():.6f}",
            }
        ],
    }


def signed_request(
    payload: dict[str, Any],
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    retry: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers as Slack sends an interaction: form-encoded ``payload``, signed with
    HMAC-SHA256 of ``v0:<timestamp>:<body>`` under the app's signing secret."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return body, headers
