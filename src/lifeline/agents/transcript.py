"""Reading a Claude Code transcript (JSONL) into the tail a senior reads on pick-up.

Claude Code writes one JSON object a line: ``type`` ``user`` or ``assistant`` (and others —
summaries, snapshots — that are skipped), ``message.content`` a string or a list of blocks
(``text``, ``tool_use``, ``tool_result``, ``thinking``). Text is kept; each tool call and each
tool result becomes one line; the tail is capped in entries and in size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_ENTRIES = 40
MAX_ENTRY_CHARS = 4_000
MAX_TOTAL_CHARS = 60_000
TOOL_LINE_CHARS = 160


class TranscriptError(ValueError):
    """The transcript can't be read; the message says why, in one line."""


@dataclass(frozen=True)
class Entry:
    role: str  # user | assistant | tool
    content: str


@dataclass
class Transcript:
    entries: list[Entry] = field(default_factory=list)
    cwd: str | None = None
    branch: str | None = None

    def first_user_text(self) -> str | None:
        return next((e.content for e in self.entries if e.role == "user"), None)

    def last_assistant_text(self) -> str | None:
        return next((e.content for e in reversed(self.entries) if e.role == "assistant"), None)


def _one_line(text: str, limit: int = TOOL_LINE_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _tool_use(block: dict[str, Any]) -> str:
    name = str(block.get("name") or "tool")
    arguments = block.get("input")
    if isinstance(arguments, dict):
        # The argument that says most, when there is one; otherwise the argument names.
        for key in ("command", "file_path", "path", "pattern", "url", "query", "description"):
            if isinstance(arguments.get(key), str):
                return _one_line(f"→ {name}: {arguments[key]}")
        return _one_line(f"→ {name}({', '.join(map(str, arguments))})")
    return f"→ {name}"


def _tool_result(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    prefix = "← error: " if block.get("is_error") else "← "
    return _one_line(prefix + str(content or "(no output)"))


def _entry(record: dict[str, Any]) -> Entry | None:
    kind = record.get("type")
    if kind not in ("user", "assistant"):
        return None
    message = record.get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        text = content.strip()
        return Entry(role=kind, content=text[:MAX_ENTRY_CHARS]) if text else None
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    tool_lines: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and str(block.get("text", "")).strip():
            texts.append(str(block["text"]).strip())
        elif block.get("type") == "tool_use":
            tool_lines.append(_tool_use(block))
        elif block.get("type") == "tool_result":
            tool_lines.append(_tool_result(block))
    if not texts and not tool_lines:
        return None
    # A user turn made only of tool results is the tool talking, not the person.
    role = "tool" if kind == "user" and not texts else kind
    return Entry(role=role, content="\n".join([*texts, *tool_lines])[:MAX_ENTRY_CHARS])


def read_transcript(path: Path) -> Transcript:
    """The capped tail of a Claude Code transcript; TranscriptError when it can't be read."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise TranscriptError(f"transcript not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TranscriptError(f"transcript unreadable: {path}: {exc}") from exc
    transcript = Transcript()
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TranscriptError(f"transcript line {number} is not JSON: {path}") from exc
        if not isinstance(record, dict):
            raise TranscriptError(f"transcript line {number} is not a JSON object: {path}")
        transcript.cwd = record.get("cwd") or transcript.cwd
        transcript.branch = record.get("gitBranch") or transcript.branch
        entry = _entry(record)
        if entry is not None:
            transcript.entries.append(entry)
    transcript.entries = _capped(transcript.entries)
    return transcript


def _capped(entries: list[Entry]) -> list[Entry]:
    tail = entries[-MAX_ENTRIES:]
    kept: list[Entry] = []
    total = 0
    for entry in reversed(tail):
        total += len(entry.content)
        if total > MAX_TOTAL_CHARS:
            break
        kept.append(entry)
    return list(reversed(kept))
