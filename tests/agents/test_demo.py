"""``make demo`` hands over a ready-made ``claude mcp add`` line with the junior's token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_prints_a_claude_mcp_add_line_for_the_junior(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env["LIFELINE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "lifeline.cli", "demo", "--seed-only", "--port", "8123"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    junior = re.search(r"jamie@demo\.lifeline\.test\s+token (lfl_\S+)", done.stdout)
    assert junior, done.stdout
    expected = (
        "claude mcp add --transport http lifeline http://127.0.0.1:8123/mcp/ "
        f'--header "Authorization: Bearer {junior.group(1)}"'
    )
    assert expected in done.stdout
