"""Private PostgreSQL and Redis servers for fault tests: ours alone, so we may stop them.

The shared servers on 5432 and 6379 serve every other test run on the machine; a fault test
restarts or kills only a cluster or a redis-server it started itself, on a free loopback port.
Missing binaries skip the test with a reason (and fail it under CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.databases import IN_CI
from tests.support.live import free_port

PG_BIN = Path(os.environ.get("LIFELINE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is missing under CI: the fault tests must run there")
    pytest.skip(f"{what} is missing")


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the postgres user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class PrivateCluster:
    """A PostgreSQL cluster in a temporary directory, trust auth, socket in /tmp."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.port = port

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/lifeline"

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        command = [
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "-t",
            str(int(timeout)),
            *args,
        ]
        result = subprocess.run(
            _as_postgres(command), capture_output=True, text=True, timeout=timeout + 10
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {args}: {result.stdout}{result.stderr}")

    def init(self) -> None:
        result = subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(self.data),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def create_database(self) -> None:
        result = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE lifeline",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"createdb failed: {result.stdout}{result.stderr}")


@contextmanager
def private_postgres() -> Iterator[PrivateCluster]:
    """A started cluster with an empty ``lifeline`` database; removed afterwards."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        _missing(f"PostgreSQL server binaries ({PG_BIN}/initdb, pg_ctl)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _missing("runuser (to run PostgreSQL as the postgres user)")
    directory = Path(tempfile.mkdtemp(prefix="lifeline-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user="postgres", group="postgres")
    cluster = PrivateCluster(directory, free_port())
    try:
        cluster.init()
        cluster.start()
        try:
            cluster.create_database()
            yield cluster
        finally:
            try:
                cluster.stop()
            except Exception:  # already stopped by the test, or stuck: make sure it is gone
                pid_file = cluster.data / "postmaster.pid"
                if pid_file.exists():
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class PrivateRedis:
    """A redis-server on a free loopback port, no persistence; can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_listening()

    def _wait_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError((self.directory / "redis.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on {self.port}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, every connection simply breaks."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        _missing("redis-server")
    directory = Path(tempfile.mkdtemp(prefix="lifeline-redis-"))
    server = PrivateRedis(directory)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)
