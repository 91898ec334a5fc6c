"""A real server process (``lifeline serve``) on a free loopback port, for races and crashes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update(
        LIFELINE_ENV="test",
        LIFELINE_SECRET_KEY="test-secret-key-not-for-production",
        LIFELINE_DATABASE_URL=database_url,
        LIFELINE_LOG_JSON="false",
    )
    env.update(extra)
    return env


@contextmanager
def live_process(
    args: list[str],
    env: dict[str, str],
    *,
    log_path: Path,
    ready_url: str | None = None,
    timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``python -m lifeline.cli …``; wait until ``ready_url`` answers; stop it after."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lifeline.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            if ready_url is not None:
                _wait_ready(proc, ready_url, timeout, log_path)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout}s:\n{log.read_text()}")


@contextmanager
def live_server(
    database_url: str, tmp_path: Path, *, name: str = "server", **env_extra: str
) -> Iterator[str]:
    """A ``lifeline serve`` process; yields its base URL."""
    port = free_port()
    env = server_env(database_url, LIFELINE_BASE_URL=f"http://127.0.0.1:{port}", **env_extra)
    with live_process(
        ["serve", "--port", str(port)],
        env,
        log_path=tmp_path / f"{name}.log",
        ready_url=f"http://127.0.0.1:{port}/healthz",
    ):
        yield f"http://127.0.0.1:{port}"
