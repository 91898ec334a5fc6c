"""Command-line forms for agents: ``lifeline mcp``, ``lifeline escalate``, ``lifeline hook``.

They talk to a Lifeline server over HTTP with ``LIFELINE_TOKEN`` and never open the database.
A problem is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lifeline.agents.remote import Escalation, Remote, RemoteError, follow
from lifeline.agents.stdio import serve_stdio
from lifeline.agents.transcript import Transcript, TranscriptError, read_transcript

EXIT_ENDED = 3  # cancelled or expired: nobody will answer this one
EXIT_BAD_INPUT = 2

UrlOpt = Annotated[
    str,
    typer.Option("--url", envvar="LIFELINE_URL", help="The server's base URL."),
]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="LIFELINE_TOKEN", help="API token (lfl_…); prefer the env."),
]
DEFAULT_URL = "http://127.0.0.1:8000"

hook_app = typer.Typer(help="Hooks for AI coding agents.", no_args_is_help=True)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    typer.echo(f"lifeline: {message}", err=True)
    return typer.Exit(code)


def _token(token: str | None) -> str:
    if not token:
        raise _fail("LIFELINE_TOKEN is not set (an API token, lfl_…)")
    return token


def mcp(url: UrlOpt = DEFAULT_URL, token: TokenOpt = None) -> None:
    """Serve Lifeline's MCP tools over stdio, forwarding to the server at --url."""
    secret = _token(token)
    asyncio.run(serve_stdio(url, secret))


def _transcript_messages(transcript: Transcript) -> list[dict[str, str]]:
    return [{"role": e.role, "content": e.content} for e in transcript.entries]


def _print_escalation(escalation: Escalation, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"event": "escalated", **escalation.__dict__}))
    elif escalation.created:
        typer.echo(f"Escalated: {escalation.url}")
    else:
        typer.echo(f"Already escalated ({escalation.status}): {escalation.url}")


async def _escalate_and_follow(
    *,
    remote: Remote,
    title: str,
    brief: dict[str, Any],
    messages: list[dict[str, str]],
    source: str,
    external_id: str | None,
    wait: bool,
    as_json: bool,
) -> int:
    async with remote:
        escalation = await remote.escalate(
            title=title, brief=brief, messages=messages, source=source, external_id=external_id
        )
        _print_escalation(escalation, as_json)
        if not wait:
            return 0

        async def report(event: str, data: dict[str, Any]) -> None:
            if as_json:
                typer.echo(json.dumps({"event": event, **data}, default=str))
            elif event == "claimed":
                typer.echo(f"Picked up by {data['claimed_by']['name']}")
            elif event == "message":
                author = (data.get("author") or {}).get("name", "Lifeline")
                typer.echo(f"{author}: {data['content']}")
            elif event == "resolved":
                typer.echo(f"Resolved: {data.get('answer') or '(no answer given)'}")
            else:
                typer.echo(f"The escalation was {event}.")

        status = await follow(remote, escalation, report)
        return 0 if status == "resolved" else EXIT_ENDED


def _brief(
    ask: str, tried: str | None, error: str | None, context: dict[str, Any]
) -> dict[str, Any]:
    brief: dict[str, Any] = {"ask": ask}
    if tried:
        brief["tried"] = tried
    if error:
        brief["error"] = error
    context = {k: v for k, v in context.items() if v}
    if context:
        brief["context"] = context
    return brief


def escalate(
    title: Annotated[str, typer.Option("--title", help="What the session is about.")],
    ask: Annotated[str, typer.Option("--ask", help="What you need from a human.")],
    tried: Annotated[str | None, typer.Option("--tried", help="What was tried.")] = None,
    error: Annotated[str | None, typer.Option("--error", help="The error, verbatim.")] = None,
    repo: Annotated[str | None, typer.Option("--repo")] = None,
    branch: Annotated[str | None, typer.Option("--branch")] = None,
    commit: Annotated[str | None, typer.Option("--commit")] = None,
    transcript: Annotated[
        Path | None,
        typer.Option("--transcript", help="A Claude Code transcript (JSONL) to attach."),
    ] = None,
    external_id: Annotated[
        str | None,
        typer.Option("--external-id", help="Your conversation id: the same id, the same session."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the pick-up and the answer.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Escalate to your team from a script; with --wait, exit 0 on resolved, 3 if withdrawn."""
    secret = _token(token)
    messages: list[dict[str, str]] = []
    if transcript is not None:
        try:
            messages = _transcript_messages(read_transcript(transcript))
        except TranscriptError as exc:
            raise _fail(str(exc)) from exc
    brief = _brief(ask, tried, error, {"repo": repo, "branch": branch, "commit": commit})
    remote = Remote(url, secret, client_name="lifeline-cli")
    try:
        code = asyncio.run(
            _escalate_and_follow(
                remote=remote,
                title=title,
                brief=brief,
                messages=messages,
                source="cli",
                external_id=external_id,
                wait=wait,
                as_json=as_json,
            )
        )
    except RemoteError as exc:
        raise _fail(str(exc), 1) from exc
    raise typer.Exit(code)


HOOK_FIELDS = ("session_id", "transcript_path", "hook_event_name")


def _hook_event(raw: str) -> dict[str, Any]:
    try:
        event = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _fail("the hook event on stdin is not JSON") from exc
    if not isinstance(event, dict):
        raise _fail("the hook event on stdin is not a JSON object")
    missing = [name for name in HOOK_FIELDS if not isinstance(event.get(name), str)]
    if missing:
        raise _fail(f"the hook event lacks {', '.join(missing)}")
    return event


def _hook_ask(event: dict[str, Any], transcript: Transcript) -> str:
    parts = [str(event.get("message") or "Claude Code is waiting for a human.")]
    last = transcript.last_assistant_text()
    if last:
        parts.append(f"Last from the agent:\n{last}")
    return "\n\n".join(parts)[:5_000]


@hook_app.command("claude-code")
def hook_claude_code(
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--on",
            help="Hook events that escalate (default: Notification); 'any' for on demand.",
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the answer.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
) -> None:
    """Read a Claude Code hook event on stdin and escalate that conversation (once per session)."""
    event = _hook_event(sys.stdin.read())
    wanted = set(events or ["Notification"])
    if "any" not in wanted and event["hook_event_name"] not in wanted:
        return
    secret = _token(token)
    try:
        transcript = read_transcript(Path(event["transcript_path"]).expanduser())
    except TranscriptError as exc:
        raise _fail(str(exc)) from exc
    first = transcript.first_user_text() or "Claude Code session"
    context = {"repo": event.get("cwd") or transcript.cwd, "branch": transcript.branch}
    brief = _brief(_hook_ask(event, transcript), None, None, context)
    remote = Remote(url, secret, client_name="claude-code")
    try:
        code = asyncio.run(
            _escalate_and_follow(
                remote=remote,
                title=first.splitlines()[0][:120],
                brief=brief,
                messages=_transcript_messages(transcript),
                source="claude-code",
                external_id=event["session_id"][:200],
                wait=wait,
                as_json=False,
            )
        )
    except RemoteError as exc:
        raise _fail(str(exc), 1) from exc
    raise typer.Exit(code)
