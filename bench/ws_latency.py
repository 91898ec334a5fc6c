"""Live push latency: escalate-commit to WebSocket client receipt, against a bare broadcast floor.

    .venv/bin/python bench/ws_latency.py [--rounds 100] [--idle 10000] [--database-url URL]

Scenarios, each beside a floor measured in the same run:

1. 1,000 WebSocket clients connected (5 accounts of 200 seniors); an escalation in one account
   fans out to its 200 seniors, the other 800 connections are filtered out.
2. 1,000 clients in one account; each escalation reaches all 1,000.

Latency is measured from the event's ``created_at`` (stamped inside the escalating transaction,
before COMMIT, so the commit is included) to the moment the client's read returns. The floor is a
bare ``websockets`` server holding the same number of connections that, on a trigger, stamps the
time and ``broadcast()``s a message of the same size to the same number of clients. Server and
floor each run in their own process on uvloop; clients run in this process with the same code.

3. One ``lifeline serve`` process holding 10,000 idle WebSocket connections: its RSS.

Prints progress, the quantiles, the ratios and a Markdown block for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SENIORS_PER_ACCOUNT = 200
APP = "ws_latency_app:app"
ACCOUNTS = 5


def say(message: str) -> None:
    print(message, flush=True)


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# -- the floor: a bare websockets broadcast server (run as a subprocess of this script) ---------


def run_floor_server(port: int) -> None:
    import uvloop
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    groups: dict[str, set[ServerConnection]] = {}
    template = json.loads(sample_message())

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else "/"
        if path.startswith("/control"):
            async for raw in ws:
                group, seq = str(raw).split(":")
                message = dict(template, id=seq, created_at=datetime.now(UTC).isoformat())
                broadcast(groups.get(group, set()), json.dumps(message, separators=(",", ":")))
            return
        group = path.rsplit("=", 1)[-1]
        groups.setdefault(group, set()).add(ws)
        try:
            await ws.wait_closed()
        finally:
            groups[group].discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, ping_interval=None, max_queue=None):
            print("ready", flush=True)
            await asyncio.Future()

    uvloop.run(main())


def sample_message() -> str:
    """A handoff event of the size Lifeline sends (the floor sends the same bytes)."""
    return json.dumps(
        {
            "id": "0",
            "type": "handoff.escalated",
            "created_at": datetime.now(UTC).isoformat(),
            "data": {
                "id": "5b0a4cf6-3f7e-4c1c-8f0e-6b5a1f0e4c1d",
                "session_id": "0c3e7a6e-1b2d-4f5a-9c8b-7d6e5f4a3b2c",
                "intent": "escalate",
                "status": "open",
                "note": "bench",
                "created_by": "3f2e1d0c-9b8a-4765-8432-10fedcba9876",
                "created_at": datetime.now(UTC).isoformat(),
                "claimed_by": None,
                "claimed_at": None,
                "resolved_by": None,
                "resolved_at": None,
            },
        },
        separators=(",", ":"),
    )


# -- clients -------------------------------------------------------------------------------------


@dataclass
class Clients:
    """Connected WebSocket clients recording, per message id, when each copy arrived."""

    latencies: dict[str, list[float]] = field(default_factory=dict)  # receipt wall times
    stamped: dict[str, float] = field(default_factory=dict)  # the message's created_at
    connections: list[ClientConnection] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    retries: int = 0

    async def open(self, urls: list[tuple[str, dict[str, str]]], concurrency: int = 100) -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(url: str, headers: dict[str, str]) -> None:
            # Like any client, try again (with backoff) when the server is too busy to answer.
            for attempt in range(10):
                try:
                    async with gate:
                        ws = await connect(
                            url,
                            additional_headers=headers,
                            ping_interval=None,
                            max_queue=None,
                            open_timeout=60,
                        )
                    break
                except (OSError, InvalidStatus, TimeoutError) as exc:
                    self.retries += 1
                    if attempt == 9:
                        raise RuntimeError(f"could not connect: {exc}") from exc
                    await asyncio.sleep(0.1 * 2**attempt)
            self.connections.append(ws)
            self.readers.append(asyncio.create_task(self._read(ws)))

        done = 0
        for start in range(0, len(urls), 1000):
            await asyncio.gather(*(one(u, h) for u, h in urls[start : start + 1000]))
            done += len(urls[start : start + 1000])
            say(f"  {done} connected")

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                received = time.time()
                message = json.loads(raw)
                if "id" not in message:
                    continue  # a heartbeat
                stamp = datetime.fromisoformat(message["created_at"]).timestamp()
                self.stamped[message["id"]] = stamp
                self.latencies.setdefault(message["id"], []).append(received)
                self.arrived.set()

    async def wait_for(self, message_id: str, count: int, deadline: float = 30) -> list[float]:
        async with asyncio.timeout(deadline):
            while len(self.latencies.get(message_id, ())) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.latencies[message_id]

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.connections), return_exceptions=True)


# -- Lifeline ------------------------------------------------------------------------------------


@dataclass
class Seeded:
    escalator_tokens: list[str]  # one per account (an engineer who is not connected)
    senior_tokens: list[list[str]]  # per account


async def seed(database_url: str, accounts: int, seniors: int) -> Seeded:
    from lifeline.accounts import service
    from lifeline.accounts.models import Role
    from lifeline.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    escalators, tokens = [], []
    try:
        for a in range(accounts):
            async with sessionmaker() as db, db.begin():
                account, _owner, _ = await service.create_account(
                    db=db, name=f"Bench {a}", owner_email=f"owner{a}-{time.time_ns()}@bench.test"
                )
                junior = await service.create_user(
                    db=db,
                    account_id=account.id,
                    email=f"junior{a}-{time.time_ns()}@bench.test",
                    name=f"Junior {a}",
                    role=Role.ENGINEER,
                )
                escalators.append((await service.create_token(db=db, user=junior, name="b"))[1])
                account_tokens = []
                for s in range(seniors):
                    user = await service.create_user(
                        db=db,
                        account_id=account.id,
                        email=f"s{a}-{s}-{time.time_ns()}@bench.test",
                        name=f"Senior {a}.{s}",
                        role=Role.ENGINEER,
                    )
                    _token, secret = await service.create_token(db=db, user=user, name="b")
                    account_tokens.append(secret)
                tokens.append(account_tokens)
    finally:
        await engine.dispose()
    return Seeded(escalators, tokens)


@contextlib.contextmanager
def lifeline_server(
    database_url: str, log_path: Path, *, deflate: bool = True, app: str | None = None
) -> Iterator[tuple[str, int]]:
    """``deflate``: uvicorn's default, as ``lifeline serve`` runs it today."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update(
        LIFELINE_ENV="development",
        LIFELINE_SECRET_KEY="bench-secret-key-bench-secret-key-bench",
        LIFELINE_DATABASE_URL=database_url,
        LIFELINE_BASE_URL=f"http://127.0.0.1:{port}",
        LIFELINE_LOG_JSON="false",
    )
    with log_path.open("wb") as log:
        # `lifeline serve`'s uvicorn settings, serving its app plus a commit clock.
        serve = (
            "import sys, uvicorn; sys.path.insert(0, sys.argv[2]); "
            "uvicorn.run(sys.argv[3], host='127.0.0.1', port=int(sys.argv[1]), "
            "proxy_headers=True, log_config=None, access_log=False, "
            "ws_per_message_deflate=sys.argv[4] == 'on')"
        )
        proc = subprocess.Popen(
            [
                *(sys.executable, "-c", serve, str(port), str(ROOT / "bench"), app or APP),
                "on" if deflate else "off",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc)
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("server not ready")


class LifelineTrigger:
    """Escalations through the API, one per round, from an engineer who is not connected."""

    def __init__(self, base: str, clients: Clients, escalator: str, recipients: int) -> None:
        self.http = httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {escalator}"}, timeout=60
        )
        self.clients = clients
        self.recipients = recipients
        self.sessions: list[str] = []
        self.delivered: list[str] = []
        self.requests: list[float] = []

    async def prepare(self, rounds: int) -> None:
        for n in range(rounds):
            response = await self.http.post("/api/v1/ai-sessions", json={"title": f"bench {n}"})
            response.raise_for_status()
            self.sessions.append(response.json()["id"])

    async def round(self, n: int) -> None:
        seen = set(self.clients.latencies)
        started = time.time()
        response = await self.http.post(
            f"/api/v1/ai-sessions/{self.sessions[n]}/handoff",
            json={"intent": "escalate", "note": "bench"},
        )
        self.requests.append(time.time() - started)
        response.raise_for_status()
        # Which event id it became: the one the clients hadn't seen before.
        async with asyncio.timeout(60):
            while not (fresh := [i for i in self.clients.latencies if i not in seen]):
                self.clients.arrived.clear()
                await self.clients.arrived.wait()
        await self.clients.wait_for(fresh[0], self.recipients)
        self.delivered.append(fresh[0])

    async def latencies(self) -> tuple[list[float], list[float]]:
        """From the commit, and from the event's created_at (inside the transaction)."""
        commits = (await self.http.get("/bench/commits")).json()
        await self.http.aclose()
        got = self.clients.latencies
        from_commit = [t - commits[i] for i in self.delivered for t in got[i]]
        from_created = [t - self.clients.stamped[i] for i in self.delivered for t in got[i]]
        return from_commit, from_created


class FloorTrigger:
    """A broadcast from the bare server, stamped when it is made."""

    def __init__(self, control: ClientConnection, clients: Clients, recipients: int) -> None:
        self.control = control
        self.clients = clients
        self.recipients = recipients
        self.samples: list[float] = []

    async def round(self, n: int) -> None:
        message_id = f"floor-{self.recipients}-{n}"
        await self.control.send(f"target:{message_id}")
        received = await self.clients.wait_for(message_id, self.recipients)
        self.samples.extend(t - self.clients.stamped[message_id] for t in received)


@contextlib.contextmanager
def floor_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--floor-server", str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Result:
    name: str
    ours: list[float]  # from COMMIT
    floor: list[float]
    from_created: list[float]  # from the event row's created_at, inside the transaction
    requests: list[float]  # the escalate requests themselves

    def row(self) -> str:
        p50, p99 = quantile(self.ours, 0.5) * 1000, quantile(self.ours, 0.99) * 1000
        f50, f99 = quantile(self.floor, 0.5) * 1000, quantile(self.floor, 0.99) * 1000
        return (
            f"| {self.name} | {len(self.ours)} | {p50:.1f} | {p99:.1f} | {f50:.1f} | {f99:.1f} "
            f"| {p50 / f50:.2f}x | {p99 / f99:.2f}x |"
        )

    def detail(self) -> str:
        c50 = quantile(self.from_created, 0.5) * 1000
        c99 = quantile(self.from_created, 0.99) * 1000
        r50 = quantile(self.requests, 0.5) * 1000
        return (
            f"  from created_at (inside the transaction): p50 {c50:.1f} ms, p99 {c99:.1f} ms; "
            f"escalate request p50 {r50:.1f} ms"
        )


async def latency_scenario(
    name: str,
    database_url: str,
    seeded: Seeded,
    layout: list[int],
    target_account: int,
    rounds: int,
    workdir: Path,
    app: str | None = None,
) -> tuple[Result, float]:
    """``layout``: how many seniors of each account connect.

    Lifeline and the floor run side by side and take turns, round by round, so that whatever
    else the machine is doing weighs on both alike.
    """
    recipients = layout[target_account]
    say(f"\n== {name}")
    log_path = workdir / f"{len(name)}-{recipients}.log"
    with lifeline_server(database_url, log_path, app=app) as (base, pid), floor_server() as port:
        ours, floor = Clients(), Clients()
        ws = base.replace("http://", "ws://") + "/api/v1/ws"
        say(f"lifeline: connecting {sum(layout)} WebSocket clients")
        await ours.open(
            [
                (ws, {"Authorization": f"Bearer {token}"})
                for a, count in enumerate(layout)
                for token in seeded.senior_tokens[a][:count]
            ]
        )
        rss, _ = rss_mib(pid)
        say(f"lifeline: server RSS with {sum(layout)} connections: {rss:.0f} MiB")
        say(f"floor: connecting {sum(layout)} WebSocket clients")
        await floor.open(
            [
                (f"ws://127.0.0.1:{port}/?group={'target' if a == target_account else a}", {})
                for a, count in enumerate(layout)
                for _ in range(count)
            ]
        )
        lifeline = LifelineTrigger(base, ours, seeded.escalator_tokens[target_account], recipients)
        await lifeline.prepare(rounds)
        async with connect(f"ws://127.0.0.1:{port}/control") as control:
            bare = FloorTrigger(control, floor, recipients)
            await asyncio.sleep(1)
            for n in range(rounds):
                await lifeline.round(n)
                await asyncio.sleep(0.02)
                await bare.round(n)
                await asyncio.sleep(0.02)
                if (n + 1) % 25 == 0:
                    say(f"  {n + 1}/{rounds} rounds delivered")
        from_commit, from_created = await lifeline.latencies()
        await ours.close()
        await floor.close()
    result = Result(name, from_commit, bare.samples, from_created, lifeline.requests)
    say(result.row())
    say(result.detail())
    return result, rss


async def idle_scenario(
    database_url: str, seeded: Seeded, idle: int, workdir: Path, *, deflate: bool
) -> str:
    label = "on (uvicorn's default)" if deflate else "off"
    say(f"\n== {idle} idle connections on one process, permessage-deflate {label}")
    tokens = [t for account in seeded.senior_tokens for t in account]
    log_path = workdir / f"idle-{deflate}.log"
    with lifeline_server(database_url, log_path, deflate=deflate) as (base, pid):
        before, _ = rss_mib(pid)
        say(f"lifeline: server RSS before: {before:.0f} MiB")
        ws = base.replace("http://", "ws://") + "/api/v1/ws"
        urls = [(ws, {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}) for i in range(idle)]
        clients = Clients()
        started = time.monotonic()
        await clients.open(urls, concurrency=50)
        took = time.monotonic() - started
        say(
            f"lifeline: {idle} connected in {took:.0f}s ({clients.retries} retried handshakes); "
            "holding for a heartbeat interval"
        )
        await asyncio.sleep(20)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            presence = await http.get(
                "/api/v1/presence",
                params={"limit": 100},
                headers={"Authorization": f"Bearer {tokens[0]}"},
            )
            counted = sum(i["connections"] for i in presence.json()["items"])
        rss, peak = rss_mib(pid)
        alive = sum(1 for ws_ in clients.connections if ws_.close_code is None)
        say(f"lifeline: {alive} still open; presence counts {counted} on one page of members")
        say(f"lifeline: server RSS {rss:.0f} MiB (peak {peak:.0f} MiB), {before:.0f} MiB idle")
        per_conn = (rss - before) * 1024 / idle
        await clients.close()
    return (
        f"| {idle} idle WebSocket connections, deflate {label} | {alive} open | "
        f"{rss:.0f} MiB (peak {peak:.0f}) | {before:.0f} MiB | {per_conn:.1f} KiB |"
    )


async def main(args: argparse.Namespace, workdir: Path, database_url: str) -> None:
    hard = raise_fd_limit()
    say(f"open-file limit raised to {hard}")
    seeded = await seed(database_url, ACCOUNTS, SENIORS_PER_ACCOUNT)
    results = []
    result, rss_a = await latency_scenario(
        "1,000 connected, escalation fans out to 200 seniors",
        database_url,
        seeded,
        [SENIORS_PER_ACCOUNT] * ACCOUNTS,
        0,
        args.rounds,
        workdir,
    )
    results.append(result)
    result, _ = await latency_scenario(
        "same, real-time layer alone (attribution: no notification work after commit)",
        database_url,
        seeded,
        [SENIORS_PER_ACCOUNT] * ACCOUNTS,
        0,
        args.rounds,
        workdir,
        app="ws_latency_app:realtime_only",
    )
    results.append(result)
    big = await seed(database_url, 1, 1000)
    result, rss_b = await latency_scenario(
        "1,000 connected, escalation fans out to all 1,000",
        database_url,
        big,
        [1000],
        0,
        max(10, args.rounds // 2),
        workdir,
    )
    results.append(result)
    idle_rows = []
    if args.idle:
        for deflate in (True, False):
            idle_rows.append(
                await idle_scenario(database_url, seeded, args.idle, workdir, deflate=deflate)
            )

    header = (
        "| scenario | samples | p50 ms | p99 ms | floor p50 ms | floor p99 ms "
        "| p50 ratio | p99 ratio |\n|---|---|---|---|---|---|---|---|"
    )
    say("\n" + header)
    for result in results:
        say(result.row())
    for result in results:
        say(result.detail())
    say(f"\nserver RSS with 1,000 connections: {rss_a:.0f} / {rss_b:.0f} MiB")
    if idle_rows:
        say(
            "\n| idle scenario | open | server RSS | RSS before | per connection |"
            "\n|---|---|---|---|---|"
        )
        for row in idle_rows:
            say(row)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--floor-server":
        run_floor_server(int(sys.argv[2]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="escalations per scenario")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections (0: skip)")
    parser.add_argument("--database-url", help="default: a throwaway SQLite file")
    parser.add_argument("--app", default=APP, help="diagnostics: serve another app (module:attr)")
    import uvloop

    from lifeline import migrate

    arguments = parser.parse_args()
    APP = arguments.app
    with tempfile.TemporaryDirectory(prefix="lifeline-ws-bench-") as tmp:
        url = arguments.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        say(f"database: {url.split('@')[-1]}; migrating and seeding")
        migrate.upgrade(url)
        uvloop.run(main(arguments, Path(tmp), url))
