"""Reading Claude Code transcripts: text kept, tool calls one line each, bad files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifeline.agents.transcript import (
    MAX_ENTRIES,
    MAX_ENTRY_CHARS,
    TranscriptError,
    read_transcript,
)

FIXTURE = Path(__file__).parent / "fixtures" / "claude_code_transcript.jsonl"


def test_a_real_transcript_becomes_a_readable_tail() -> None:
    transcript = read_transcript(FIXTURE)
    assert [e.role for e in transcript.entries] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    first, read, result, bash, failure, last = transcript.entries
    assert first.content.startswith("The payments migration deadlocks on CI")
    assert read.content.splitlines() == [
        "I'll look at the migration and the CI log.",
        "→ Read: /home/jamie/src/payments/migrations/0042_ledger.py",
    ]
    assert "\n" not in result.content and result.content.startswith("← def upgrade():")
    assert bash.content == "→ Bash: pytest tests/test_migrations.py -x -q"
    assert failure.content.startswith("← error: FAILED tests/test_migrations.py")
    assert "I need a human to decide" in last.content
    assert "Let me look at the migration first" not in "".join(
        e.content for e in transcript.entries
    )
    assert transcript.cwd == "/home/jamie/src/payments" and transcript.branch == "fix/deadlock"


def test_the_tail_is_capped(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    line = '{"type":"user","message":{"role":"user","content":"%s"}}\n'
    path.write_text("".join(line % (f"m{i} " + "x" * 10_000) for i in range(100)))
    entries = read_transcript(path).entries
    assert len(entries) <= MAX_ENTRIES and entries[-1].content.startswith("m99 ")
    assert all(len(e.content) <= MAX_ENTRY_CHARS for e in entries)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json\n", "line 1 is not JSON"),
        ('{"type":"user"}\n[1, 2]\n', "line 2 is not a JSON object"),
        (b"\xff\xfe\x00garbage", "unreadable"),
    ],
)
def test_a_bad_transcript_is_refused_saying_why(
    tmp_path: Path, content: str | bytes, says: str
) -> None:
    path = tmp_path / "bad.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(TranscriptError, match=says):
        read_transcript(path)


def test_a_missing_transcript_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="not found"):
        read_transcript(tmp_path / "nope.jsonl")
