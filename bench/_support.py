"""What the whole-system benchmarks share: a throwaway PostgreSQL database, a live server process,
quantiles and progress output. Everything runs on loopback and stops by itself."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def say(message: str) -> None:
    print(message, flush=True)


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class BenchDatabase:
    """A database of its own on the server, named ``lifeline_bench_<what>_<hex>``."""

    def __init__(self, server: str, what: str) -> None:
        base = make_url(server)
        self.name = f"lifeline_bench_{what}_{uuid.uuid4().hex[:8]}"
        self._admin = base.set(drivername="postgresql")
        self.libpq: URL = self._admin.set(database=self.name)
        self.sqlalchemy = self.libpq.set(drivername="postgresql+asyncpg").render_as_string(
            hide_password=False
        )

    @property
    def dsn(self) -> str:
        return self.libpq.render_as_string(hide_password=False)

    async def _exec_admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self._admin.render_as_string(hide_password=False))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create(self) -> None:
        asyncio.run(self._exec_admin(f'CREATE DATABASE "{self.name}"'))
        from lifeline import migrate

        migrate.upgrade(self.sqlalchemy)

    def drop(self) -> None:
        asyncio.run(self._exec_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


@contextmanager
def bench_database(server: str, what: str, *, keep: bool) -> Iterator[BenchDatabase]:
    database = BenchDatabase(server, what)
    say(f"database {database.name}: creating and migrating")
    database.create()
    try:
        yield database
    finally:
        if keep:
            say(f"kept database {database.name}")
        else:
            database.drop()


def server_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update(
        LIFELINE_ENV="production",
        LIFELINE_SECRET_KEY="bench-" + uuid.uuid4().hex,
        LIFELINE_DATABASE_URL=database_url,
        LIFELINE_BASE_URL=f"http://127.0.0.1:{port}",
        LIFELINE_LOG_JSON="true",
        # One access line per request would be most of the work the box does: warnings only.
        LIFELINE_LOG_LEVEL="WARNING",
        # The benchmarks measure the request path; no periodic outbox sweeps in between.
        LIFELINE_SWEEP_INTERVAL_SECONDS="3600",
    )
    env.update(extra)
    return env


_SERVER_PIDS: dict[str, int] = {}


def server_cpu_seconds(base: str) -> float:
    """CPU time (user + system) the server process started by :func:`live_server` at
    ``base`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{_SERVER_PIDS[base]}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def live_server(
    args: list[str], env: dict[str, str], port: int, log: Path, *, timeout: float = 60.0
) -> Iterator[str]:
    """Start ``args`` (a server on ``port``), wait for /healthz, SIGTERM it afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited:\n{log.read_text()}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready:\n{log.read_text()}")
                time.sleep(0.1)
            _SERVER_PIDS[base] = proc.pid
            yield base
        finally:
            _SERVER_PIDS.pop(base, None)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def lifeline_serve(port: int) -> list[str]:
    return [sys.executable, "-m", "lifeline.cli", "serve", "--port", str(port)]
