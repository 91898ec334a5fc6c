"""The CLI's side of escalating: a Lifeline server's REST API and MCP endpoint over HTTP.

Nothing here opens the database; everything goes through the server, with the user's token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from lifeline import __version__
from lifeline.agents.stdio import mcp_endpoint
from lifeline.handoffs.models import HandoffStatus

API = "/api/v1"


class RemoteError(RuntimeError):
    """The server refused or could not be reached; the message is one line for the user."""


@dataclass(frozen=True)
class Escalation:
    handoff_id: str
    session_id: str
    status: str
    url: str
    created: bool


def _detail(response: httpx2.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:200]
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        field = ".".join(str(part) for part in detail[0].get("loc", ())[1:])
        return f"{field}: {detail[0].get('msg')}" if field else str(detail[0].get("msg"))
    return str(detail)


class Remote:
    def __init__(self, base_url: str, token: str, *, client_name: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client_name = client_name
        self.http = httpx2.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(30, read=120),
        )

    async def __aenter__(self) -> Remote:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        try:
            return await self.http.request(method, API + path, **kwargs)
        except httpx2.HTTPError as exc:
            raise RemoteError(f"can't reach {self.base_url}: {exc}") from exc

    async def _ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        if response.status_code == 401:
            raise RemoteError("the server refused the token (LIFELINE_TOKEN): invalid or revoked")
        if response.status_code >= 400:
            raise RemoteError(f"{response.status_code}: {_detail(response)}")
        return response.json()

    async def escalate(
        self,
        *,
        title: str,
        brief: dict[str, Any],
        messages: list[dict[str, str]],
        source: str,
        external_id: str | None,
    ) -> Escalation:
        """A session (the same one for the same ``external_id``) and its live escalation."""
        body: dict[str, Any] = {"title": title[:300], "messages": messages, "source": source}
        if external_id:
            body["external_id"] = external_id
        session = await self._ok("POST", "/ai-sessions", json=body)
        existing = await self._live_escalation(session["id"])
        if existing is not None:
            return self._escalation(existing, created=False)
        response = await self._call(
            "POST",
            f"/ai-sessions/{session['id']}/handoff",
            json={"intent": "escalate", "brief": brief},
        )
        if response.status_code == 409:  # escalated meanwhile: that one is ours too
            existing = await self._live_escalation(session["id"])
            if existing is not None:
                return self._escalation(existing, created=False)
        if response.status_code >= 400:
            raise RemoteError(f"{response.status_code}: {_detail(response)}")
        return self._escalation(response.json(), created=True)

    async def _live_escalation(self, session_id: str) -> dict[str, Any] | None:
        history = await self._ok("GET", f"/ai-sessions/{session_id}/handoffs")
        for handoff in history["items"]:
            if handoff["intent"] == "escalate" and HandoffStatus(handoff["status"]).is_live:
                found: dict[str, Any] = handoff
                return found
        return None

    def _escalation(self, handoff: dict[str, Any], *, created: bool) -> Escalation:
        return Escalation(
            handoff_id=handoff["id"],
            session_id=handoff["session_id"],
            status=handoff["status"],
            url=f"{self.base_url}/sessions/{handoff['session_id']}",
            created=created,
        )

    async def latest_message_id(self, session_id: str) -> str | None:
        latest: str | None = None
        cursor: str | None = None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = await self._ok("GET", f"/ai-sessions/{session_id}/messages", params=params)
            if page["items"]:
                latest = page["items"][-1]["id"]
            cursor = page.get("next_cursor")
            if not cursor:
                return latest

    @asynccontextmanager
    async def agent(self) -> AsyncIterator[Client]:
        """The MCP endpoint, for the waits (bounded long-polls that wake on the event)."""
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx2.Timeout(30, read=120),
        )
        info = Implementation(name=self.client_name, version=__version__)
        async with (
            http,
            Client(
                streamable_http_client(mcp_endpoint(self.base_url), http_client=http),
                client_info=info,
            ) as client,
        ):
            yield client


Report = Callable[[str, dict[str, Any]], Awaitable[None]]


async def follow(remote: Remote, escalation: Escalation, report: Report) -> str:
    """Wait for the pick-up, then the replies and the answer, reporting each; → final status."""
    after = await remote.latest_message_id(escalation.session_id)
    async with remote.agent() as agent:
        status = escalation.status
        while status == "open":
            result = await agent.call_tool("wait_for_pickup", {"handoff_id": escalation.handoff_id})
            state = _structured(result)
            status = state["status"]
            if status == "claimed":
                await report("claimed", state)
        while HandoffStatus(status).is_live:
            arguments: dict[str, Any] = {"session_id": escalation.session_id}
            if after is not None:
                arguments["after"] = after
            state = _structured(await agent.call_tool("wait_for_reply", arguments))
            for message in state["messages"]:
                await report("message", message)
                after = message["id"]
            status = state["status"] or status
        final = _structured(
            await agent.call_tool("get_handoff", {"handoff_id": escalation.handoff_id})
        )
        await report(final["status"], final)
        return str(final["status"])


def _structured(result: Any) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        text = result.content[0].text if result.content else "no answer"
        raise RemoteError(str(text))
    structured: dict[str, Any] = result.structured_content
    return structured
