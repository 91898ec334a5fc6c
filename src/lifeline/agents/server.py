"""The MCP server: one set of tools, served over streamable HTTP at /mcp/ (and stdio, by proxy).

The acting user and account are the bearer token's (an MCP ``TokenVerifier`` over the API token
table); no tool takes a user or account to act as. A refusal is a tool result with
``isError: true`` and one sentence; an id of another account is "not found", like an unknown one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import __version__, idempotency
from lifeline.accounts import service as accounts
from lifeline.accounts.models import User
from lifeline.agents import service
from lifeline.agents.schemas import (
    AgentMessage,
    EscalateResult,
    HandoffView,
    PickupResult,
    ReplyResult,
    TranscriptEntry,
)
from lifeline.agents.waits import PROGRESS_EVERY_SECONDS, News, clamp_timeout, wait_for
from lifeline.ai_sessions.models import MessageRole
from lifeline.ai_sessions.schemas import MAX_MESSAGE_LENGTH
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.errors import LifelineError, Unauthorized
from lifeline.handoffs.schemas import MAX_BRIEF_TEXT, MAX_NOTE_LENGTH, Brief, BriefContext
from lifeline.realtime.waiters import Waiters

log = logging.getLogger(__name__)

ContextGetter = Callable[[], AppContext]

INSTRUCTIONS = (
    "Lifeline hands your work to a human teammate. When you are stuck or need a decision, call "
    "`escalate` with a clear `ask` (and what you tried, the error, where the code is). It "
    "returns at once. Then call `wait_for_pickup` and `wait_for_reply` in a loop: each returns "
    "a status (never an error) after at most 50 seconds, so call again while the status is "
    "`open` or `claimed`. The human's final answer arrives with status `resolved`."
)

Timeout = Annotated[
    float | None, Field(description="seconds to wait, 1 to 50 (default 45); clamped")
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="any unique string; a retry with the same key creates nothing twice",
    ),
]
Id = Annotated[str, Field(min_length=1, max_length=100)]


class ApiTokenVerifier(TokenVerifier):
    """The same ``lfl_…`` API tokens as the HTTP API: revoked or unknown ones are refused."""

    def __init__(self, context: ContextGetter) -> None:
        self._context = context

    async def verify_token(self, token: str) -> AccessToken | None:
        ctx = self._context()
        try:
            if ctx.read_engine is not None:
                async with ctx.read_engine.connect() as read:
                    user, token_id = await accounts.authenticate_token(db=read, secret=token)
            else:
                async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
                    user, token_id = await accounts.authenticate_token(db=db, secret=token)
        except Unauthorized:
            return None
        return AccessToken(token=token, client_id=token_id, scopes=[], subject=user.id)


def _client_name(ctx: Context) -> str | None:
    """The name the MCP client gave in its handshake (e.g. "claude-code")."""
    try:
        params = ctx.session.client_params
    except (AttributeError, LookupError, ValueError):
        return None
    if params is None or params.client_info is None:
        return None
    info = params.client_info
    name = getattr(info, "title", None) or info.name
    return str(name)[:200] if name else None


def build_server(
    context: ContextGetter, *, base_url: str, progress_every: float = PROGRESS_EVERY_SECONDS
) -> MCPServer:
    """The tools, bound to the application whose context ``context`` returns once it runs."""
    server: MCPServer = MCPServer(
        "lifeline",
        instructions=INSTRUCTIONS,
        version=__version__,
        token_verifier=ApiTokenVerifier(context),
        auth=AuthSettings(
            issuer_url=base_url,
            resource_server_url=f"{base_url.rstrip('/')}/mcp",
            validate_token_resource=False,
        ),
    )
    # The SDK wraps every request in an OpenTelemetry span by default, a no-op without an
    # exporter (Lifeline installs none) that still keeps ~2 KiB alive per request in flight,
    # and an agent's wait is a request in flight for up to 50 s. The SDK's documented opt-out:
    # drop it from the server's middleware.
    server.middleware[:] = [
        m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)
    ]

    @asynccontextmanager
    async def acting() -> AsyncIterator[tuple[AppContext, AsyncSession, User]]:
        """One unit of work as the token's user; domain refusals become tool errors."""
        ctx = context()
        token = get_access_token()
        if token is None or token.subject is None:
            raise ToolError("Authentication required: send Authorization: Bearer lfl_…")
        try:
            async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
                user = await db.get(User, token.subject)
                if user is None or user.deleted_at is not None:
                    raise ToolError("Invalid or revoked API token")
                yield ctx, db, user
        except LifelineError as exc:
            raise ToolError(exc.detail) from exc

    @asynccontextmanager
    async def reading(ctx: AppContext) -> AsyncIterator[AsyncSession]:
        """A wait's re-check: the caller was authenticated when the wait began."""
        try:
            async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
                yield db
        except LifelineError as exc:
            raise ToolError(exc.detail) from exc

    async def pickup_opening(handoff_id: str) -> tuple[AppContext, PickupResult, str]:
        """A pickup wait's first look, in a frame of its own: the wait that follows (up to
        50 s, a thousand at once) keeps alive only what it needs, not the unit of work or the
        loaded user."""
        async with acting() as (app_ctx, db, user):
            first, session_id = await service.pickup_opening(
                db=db, user=user, handoff_id=handoff_id
            )
        return app_ctx, first, session_id

    async def reply_opening(
        session_id: str, after: str | None
    ) -> tuple[AppContext, User, str | None, ReplyResult]:
        """A reply wait's first look, in a frame of its own (as :func:`pickup_opening`)."""
        async with acting() as (app_ctx, db, user):
            anchor = after or await service.reply_anchor(db=db, user=user, session_id=session_id)
            first = await service.reply_state(
                db=db, user=user, session_id=session_id, after_id=anchor
            )
        return app_ctx, user, anchor, first

    def waiters_of(ctx: AppContext) -> Waiters:
        if ctx.hub is None:  # no real-time layer: progress ticks re-check instead
            return Waiters()
        return ctx.hub.waiters

    def reporter(ctx: Context, what: str) -> Callable[[float, float], Awaitable[None]]:
        async def report(elapsed: float, total: float) -> None:
            await ctx.report_progress(elapsed, total, f"{what} ({int(elapsed)} s)")

        return report

    @server.tool()
    async def escalate(
        ask: Annotated[str, Field(min_length=1, max_length=MAX_NOTE_LENGTH)],
        ctx: Context,
        title: Annotated[str | None, Field(min_length=1, max_length=300)] = None,
        tried: Annotated[str | None, Field(max_length=MAX_BRIEF_TEXT)] = None,
        error: Annotated[str | None, Field(max_length=MAX_BRIEF_TEXT)] = None,
        context: BriefContext | None = None,
        transcript: Annotated[list[TranscriptEntry] | None, Field(max_length=500)] = None,
        session_id: Id | None = None,
        external_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> EscalateResult:
        """Hand your work to a human teammate: returns at once with the handoff id and its URL.

        `ask` is what you need from a human. Then call `wait_for_pickup` / `wait_for_reply`.
        Escalating the same conversation (`external_id`, or `session_id`) while its escalation
        is open returns that one with `created: false`.
        """
        brief = Brief(ask=ask, tried=tried, error=error, context=context)
        client_name = _client_name(ctx)
        async with acting() as (app_ctx, db, user):

            async def create() -> dict[str, Any]:
                result = await service.escalate(
                    db=db,
                    actor=user,
                    base_url=app_ctx.settings.base_url,
                    brief=brief,
                    title=title,
                    transcript=transcript or [],
                    session_id=session_id,
                    external_id=external_id,
                    client_name=client_name,
                    email_cap=app_ctx.settings.email_cap_per_hour,
                )
                return result.model_dump(mode="json")

            outcome = await idempotency.run_once(
                db=db,
                user_id=user.id,
                key=idempotency_key,
                method="MCP",
                path="tools/escalate",
                status_code=200,
                create=create,
            )
        result = EscalateResult.model_validate(outcome.body)
        if outcome.replayed:
            result.created = False
        return result

    @server.tool()
    async def wait_for_pickup(
        handoff_id: Id, ctx: Context, timeout_seconds: Timeout = None
    ) -> PickupResult:
        """Wait until a human picks the escalation up (or it ends); at most 50 s per call.

        Returns the status, never an error, when nothing happened yet: call again while `open`.
        """
        timeout = clamp_timeout(timeout_seconds)
        app_ctx, first, session_id = await pickup_opening(handoff_id)
        if first.status != "open":
            return first

        async def check(elapsed: float, news: News) -> PickupResult | None:
            if news is not None:
                # Woken by events of the session: the handoff's own events carry its state.
                return await service.pickup_from_events(
                    engine=app_ctx.engine,
                    sessionmaker=app_ctx.sessionmaker,
                    handoff_id=handoff_id,
                    events=news,
                    waited_seconds=elapsed,
                )
            state = await service.pickup_recheck(
                engine=app_ctx.engine,
                sessionmaker=app_ctx.sessionmaker,
                handoff_id=handoff_id,
                waited_seconds=elapsed,
            )
            if state is None:  # gone since the wait began (its account was deleted)
                raise ToolError("Handoff not found")
            return state if state.status != "open" else None

        result, waited = await wait_for(
            waiters=waiters_of(app_ctx),
            session_id=session_id,
            seconds=timeout,
            check=check,
            progress=reporter(ctx, "Waiting for a teammate to pick it up"),
            progress_every=progress_every,
        )
        if result is not None:
            return result
        return first.model_copy(update={"waited_seconds": round(waited, 3)})

    @server.tool()
    async def wait_for_reply(
        session_id: Id,
        ctx: Context,
        after: Annotated[
            str | None, Field(max_length=100, description="a message id; default: the latest")
        ] = None,
        timeout_seconds: Timeout = None,
    ) -> ReplyResult:
        """Wait for messages a human writes in the session after `after`; at most 50 s per call.

        Returns at once when there are some, or when the escalation is resolved, cancelled or
        expired (with the `answer`); else at the timeout with no messages and the status.
        """
        timeout = clamp_timeout(timeout_seconds)
        app_ctx, user, anchor, first = await reply_opening(session_id, after)
        if first.messages or service.wait_is_over(first.status):
            return first

        async def check(_elapsed: float, _news: News) -> ReplyResult | None:
            async with reading(app_ctx) as db:
                state = await service.reply_state(
                    db=db, user=user, session_id=session_id, after_id=anchor
                )
            return state if state.messages or service.wait_is_over(state.status) else None

        result, _waited = await wait_for(
            waiters=waiters_of(app_ctx),
            session_id=session_id,
            seconds=timeout,
            check=check,
            progress=reporter(ctx, "Waiting for a reply"),
            progress_every=progress_every,
        )
        return result if result is not None else first

    @server.tool()
    async def get_handoff(handoff_id: Id) -> HandoffView:
        """Where an escalation stands: status, who picked it up, the answer, the brief, its URL."""
        async with acting() as (app_ctx, db, user):
            return await service.view_handoff(
                db=db, user=user, handoff_id=handoff_id, base_url=app_ctx.settings.base_url
            )

    @server.tool()
    async def post_message(
        session_id: Id,
        content: Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_LENGTH)],
        role: Literal["user", "assistant", "tool"] = "assistant",
    ) -> AgentMessage:
        """Add a message to the session's transcript (what you found, a follow-up question)."""
        async with acting() as (_, db, user):
            return await service.post_message(
                db=db, actor=user, session_id=session_id, content=content, role=MessageRole(role)
            )

    return server
