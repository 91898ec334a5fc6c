"""Posting one webhook: signed with ``standardwebhooks``, to the vetted address, no redirects."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import httpx
from standardwebhooks import Webhook

from lifeline.config import Settings
from lifeline.integrations import ssrf
from lifeline.integrations.delivery import (
    EXCERPT_BYTES,
    Attempt,
    ClaimedSend,
    SendResult,
    excerpt,
    parse_retry_after,
)
from lifeline.integrations.schemas import TEST_EVENT
from lifeline.notifications.models import DeliveryStatus

USER_AGENT = "Lifeline-Webhooks/1.0"
# Requests in flight at once to one endpoint, each endpoint with a connection pool of its own:
# a slow or hanging receiver only ever holds its own connections, never another's. (No more in
# flight than the pool has connections: httpcore rescans its whole queue for every connection
# that frees up, so a queue of waiting requests costs CPU and buys nothing.)
PER_ENDPOINT = 10


def body_of(payload: dict[str, object]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def signature_header(*, message_id: str, at: datetime, body: str, secrets: list[str]) -> str:
    """``v1,<sig>`` for each secret, space-separated (two during a rotation's overlap)."""
    return " ".join(_signer(secret).sign(message_id, at, body) for secret in secrets)


def new_client(settings: Settings, *, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(settings.webhook_timeout_seconds),
        limits=httpx.Limits(max_connections=connections),
        # The request goes to the checked IP address: environment proxies would bypass that.
        trust_env=False,
    )


class WebhookSender:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lanes: dict[str, _Lane] = {}

    async def send(
        self,
        item: ClaimedSend,
        *,
        url: str | None,
        enabled: bool,
        secrets: list[str],
        now: datetime,
    ) -> SendResult:
        if url is None:
            return SendResult.skipped("the webhook was deleted")
        if not enabled and item.event_type != TEST_EVENT:
            return SendResult.skipped("the webhook is disabled")
        started = time.monotonic()
        try:
            target = await ssrf.check_url(url, allow_private=self._settings.webhook_allow_private)
        except ssrf.UnsafeUrl as exc:
            return SendResult(
                DeliveryStatus.FAILED,
                f"refused: {exc.detail}",
                attempt=Attempt(now, None, _ms(started), f"not sent: {exc.detail}"),
            )
        body = body_of(item.payload)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": _host_header(target),
            "webhook-id": item.message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(
                message_id=item.message_id, at=now, body=body, secrets=secrets
            ),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        lane = self._lane(item.endpoint_id or "")
        async with lane.slots:
            return await self._post(lane.client, target, body, headers, extensions, now)

    def _lane(self, endpoint_id: str) -> _Lane:
        lane = self._lanes.get(endpoint_id)
        if lane is None:
            lane = _Lane(
                new_client(self._settings, connections=PER_ENDPOINT),
                asyncio.Semaphore(PER_ENDPOINT),
            )
            self._lanes[endpoint_id] = lane
        return lane

    async def _post(
        self,
        client: httpx.AsyncClient,
        target: ssrf.Target,
        body: str,
        headers: dict[str, str],
        extensions: dict[str, str],
        now: datetime,
    ) -> SendResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._settings.webhook_timeout_seconds):
                request = client.build_request(
                    "POST",
                    target.pinned_url,
                    content=body.encode(),
                    headers=headers,
                    extensions=extensions,
                )
                response = await client.send(request, stream=True)
                try:
                    head = await _read_head(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            seconds = self._settings.webhook_timeout_seconds
            return _failure(now, started, None, f"timed out after {seconds:g} s")
        except httpx.HTTPError as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return _failure(now, started, None, text)

        attempt = Attempt(now, response.status_code, _ms(started), excerpt(head))
        if 200 <= response.status_code < 300:
            return SendResult.sent(attempt)
        error = f"HTTP {response.status_code}"
        if response.status_code == 410:
            return SendResult(
                DeliveryStatus.FAILED,
                error,
                attempt=attempt,
                disable_endpoint="the receiver answered 410 Gone",
            )
        return SendResult(
            DeliveryStatus.FAILED,
            error,
            attempt=attempt,
            retryable=True,
            retry_after=parse_retry_after(response.headers.get("retry-after"), now),
        )

    async def aclose(self) -> None:
        lanes, self._lanes = self._lanes, {}
        for lane in lanes.values():
            await lane.client.aclose()


@dataclass(frozen=True)
class _Lane:
    """One endpoint's connections and its share of requests in flight."""

    client: httpx.AsyncClient
    slots: asyncio.Semaphore


async def _read_head(response: httpx.Response) -> bytes:
    """At most the first KiB of the body; the rest is never read."""
    head = b""
    async for chunk in response.aiter_raw():
        head += chunk
        if len(head) >= EXCERPT_BYTES:
            break
    return head[:EXCERPT_BYTES]


def _failure(now: datetime, started: float, status: int | None, text: str) -> SendResult:
    return SendResult(
        DeliveryStatus.FAILED,
        text,
        attempt=Attempt(now, status, _ms(started), text),
        retryable=True,
    )


def _host_header(target: ssrf.Target) -> str:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return host if target.port == default else f"{host}:{target.port}"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
