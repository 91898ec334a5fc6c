"""Several ``lifeline serve`` processes on PostgreSQL + Redis: push crosses processes, survives a
Redis outage (handoffs keep working, the gap is replayed from the log) and presence forgets a
crashed process."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from lifeline.db import create_engine, create_sessionmaker
from tests.realtime.clients import (
    API,
    WAIT,
    Received,
    connections_of,
    sse_stream,
    wait_connections,
    ws_stream,
)
from tests.support.databases import IN_CI
from tests.support.factories import Factory, Person, escalate, new_session
from tests.support.live import free_port, live_process, live_server, server_env

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.parametrize("backend", ["postgres"])]

# Small on purpose: outages are noticed and ghosts expire within a few seconds.
FAST = {"LIFELINE_HEARTBEAT_SECONDS": "0.5", "LIFELINE_PRESENCE_TTL_SECONDS": "2"}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def factory(engine: AsyncEngine) -> Factory:
    """Writes straight to the servers' database (no in-process app here)."""
    return Factory(create_sessionmaker(engine))


class RedisServer:
    """A private redis-server on a free port, so a test can stop and restart it for real."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if IN_CI:
                pytest.fail("redis-server is not installed under CI")
            pytest.skip("redis-server not installed")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            with contextlib.suppress(redis.RedisError), redis.Redis(port=self.port) as client:
                if client.ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(redis_url: str, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def two_servers(database_url: str, tmp_path: Path, redis: str) -> Iterator[tuple[str, str]]:
    with (
        live_server(database_url, tmp_path, name="a", LIFELINE_REDIS_URL=redis, **FAST) as a,
        live_server(database_url, tmp_path, name="b", LIFELINE_REDIS_URL=redis, **FAST) as b,
    ):
        yield a, b


async def claim(http: httpx.AsyncClient, person: Person, handoff: dict[str, str]) -> None:
    response = await http.post(
        f"{API}/ai-sessions/{handoff['session_id']}/handoffs/{handoff['id']}/claim",
        headers=person.headers,
    )
    assert response.status_code == 200, response.text


async def test_escalate_through_one_process_receive_through_the_other(
    database_url: str, redis_url: str, tmp_path: Path, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", other="engineer")
    with two_servers(database_url, tmp_path, redis_url) as (a, b):
        async with (
            httpx.AsyncClient(base_url=a, timeout=WAIT) as via_a,
            httpx.AsyncClient(base_url=b, timeout=WAIT) as via_b,
            ws_stream(b, team["senior"]) as senior_on_b,
            sse_stream(via_b, team["other"]) as other_on_b,
        ):
            # Presence crosses processes: A sees the connections B holds.
            await wait_connections(via_a, team["senior"], 1)
            await wait_connections(via_a, team["other"], 1)
            session = await new_session(via_a, team["junior"])
            handoff = await escalate(via_a, team["junior"], session["id"])
            assert (await senior_on_b.next_of("handoff.escalated"))["data"] == handoff
            assert (await other_on_b.next_of("handoff.escalated"))["data"] == handoff
            await claim(via_a, team["senior"], handoff)
            told = await other_on_b.next_of("handoff.claimed")
            assert told["data"]["claimed_by"] == team["senior"].id
            assert (await senior_on_b.next_of("handoff.claimed"))["id"] == told["id"]

            # Revoking a token through A closes its connection held by B.
            created = await via_a.post(
                f"{API}/tokens", headers=team["senior"].headers, json={"name": "tab"}
            )
            tab = Person(team["senior"].user, created.json()["token"])
            async with ws_stream(b, tab) as tab_on_b:
                await wait_connections(via_a, team["senior"], 2)
                revoked = await via_a.delete(
                    f"{API}/tokens/{created.json()['id']}", headers=team["senior"].headers
                )
                assert revoked.status_code == 204
                await tab_on_b.wait_ended()
                assert tab_on_b.close_code == 4401


async def after_outage(stream: Received, count: int) -> list[dict[str, str]]:
    """The next ``count`` events; the deadline allows for the broker's reconnect backoff."""
    async with asyncio.timeout(60):
        return [await stream.events.get() for _ in range(count)]


async def test_redis_outage_keeps_handoffs_working_and_replays_the_gap(
    database_url: str, private_redis: RedisServer, tmp_path: Path, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", other="engineer")
    junior = team["junior"]
    with two_servers(database_url, tmp_path, private_redis.url) as (a, b):
        async with (
            httpx.AsyncClient(base_url=a, timeout=WAIT) as via_a,
            httpx.AsyncClient(base_url=b, timeout=WAIT) as via_b,
            ws_stream(b, team["senior"]) as on_b,
            sse_stream(via_a, team["other"]) as on_a,
        ):
            await wait_connections(via_b, team["senior"], 1)
            await wait_connections(via_a, team["other"], 1)
            first = await escalate(via_a, junior, (await new_session(via_a, junior))["id"])
            assert (await on_b.next())["data"] == first
            assert (await on_a.next())["data"] == first

            private_redis.stop()
            # Redis is gone: handing off still works (201/200), and A's own clients still hear it.
            second = await escalate(via_a, junior, (await new_session(via_a, junior))["id"])
            await claim(via_a, team["other"], first)
            assert (await on_a.next())["data"] == second
            assert (await on_a.next_of("handoff.claimed"))["data"]["id"] == first["id"]
            assert (await via_a.get("/healthz")).status_code == 200

            private_redis.start()
            # B catches up from the log: the gap arrives, in order, exactly once...
            gap = await after_outage(on_b, 2)
            assert [e["type"] for e in gap] == ["handoff.escalated", "handoff.claimed"]
            assert gap[0]["data"] == second and gap[1]["data"]["id"] == first["id"]
            # ...and live push across processes resumes.
            third = await escalate(via_b, junior, (await new_session(via_b, junior))["id"])
            after = await after_outage(on_b, 1)
            assert after[0]["data"] == third
            assert (await on_a.next())["data"] == third
            assert on_b.pending() == []
            ids = [int(e["id"]) for e in [*gap, *after]]
            assert len(ids) == len(set(ids))


async def test_presence_forgets_a_crashed_process(
    database_url: str, redis_url: str, tmp_path: Path, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    with live_server(database_url, tmp_path, name="a", LIFELINE_REDIS_URL=redis_url, **FAST) as a:
        port = free_port()
        env = server_env(
            database_url,
            LIFELINE_BASE_URL=f"http://127.0.0.1:{port}",
            LIFELINE_REDIS_URL=redis_url,
            **FAST,
        )
        b = f"http://127.0.0.1:{port}"
        with live_process(
            ["serve", "--port", str(port)],
            env,
            log_path=tmp_path / "b.log",
            ready_url=f"{b}/healthz",
        ) as proc_b:
            async with httpx.AsyncClient(base_url=a, timeout=WAIT) as via_a:
                async with ws_stream(b, team["senior"]) as on_b:
                    await wait_connections(via_a, team["senior"], 1)
                    # Crash: no goodbye, no cleanup.
                    proc_b.send_signal(signal.SIGKILL)
                    proc_b.wait(timeout=10)
                    await on_b.wait_ended()
                # Online until the crashed process's entry expires, then offline: no ghost.
                async with asyncio.timeout(30):
                    while await connections_of(via_a, team.owner, team["senior"]):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                response = await via_a.get(f"{API}/presence", headers=team.owner.headers)
                online = {i["user"]["id"]: i["online"] for i in response.json()["items"]}
                assert online[team["senior"].id] is False
