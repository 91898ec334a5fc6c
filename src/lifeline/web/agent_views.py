"""What the pages show and take about agents: where a session came from, and the brief form."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from lifeline.ai_sessions.models import AISession, SessionSource
from lifeline.handoffs.schemas import Brief

SOURCE_LABELS = {
    SessionSource.CLAUDE_CODE: "Claude Code",
    SessionSource.CLI: "the lifeline command",
    SessionSource.MCP: "an MCP client",
}


def via_label(session: AISession) -> str | None:
    """ "Claude Code" in "via Claude Code on behalf of Jamie"; None for the web and the API."""
    if session.source == SessionSource.MCP and session.client_name:
        return session.client_name
    return SOURCE_LABELS.get(SessionSource(session.source)) if session.source else None


def brief_from_form(
    *, note: str, tried: str, error: str, repo: str, branch: str, commit: str, files: str, url: str
) -> dict[str, Any] | None:
    """The Escalate form's optional fields as a brief (its ask is the note); None when empty.

    ValueError names the field when something doesn't fit.
    """
    context = {
        "repo": repo.strip() or None,
        "branch": branch.strip() or None,
        "commit": commit.strip() or None,
        "files": [line.strip() for line in files.splitlines() if line.strip()],
        "url": url.strip() or None,
    }
    extras = tried.strip() or error.strip() or any(context.values())
    if not extras:
        return None
    if not note.strip():
        raise ValueError("Say what you need from your team in the note first.")
    try:
        brief = Brief(
            ask=note.strip(),
            tried=tried.strip() or None,
            error=error.strip() or None,
            context=context if any(context.values()) else None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][-1]) if first["loc"] else "brief"
        raise ValueError(f"{field}: {first['msg']}") from exc
    return brief.model_dump(mode="json")
