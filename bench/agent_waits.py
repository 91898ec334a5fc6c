"""AI agents waiting in ``wait_for_pickup`` over streamable HTTP, beside WebSocket push.

    .venv/bin/python bench/agent_waits.py [--agents 1000] [--database-url URL]

One ``lifeline serve`` process on PostgreSQL. N escalations are made; N WebSocket clients (the
team's seniors' live queue) connect; then N MCP agents (the SDK's client over streamable HTTP)
each call ``wait_for_pickup`` on their escalation. The escalations are then picked up one after
another over HTTP. For each claim, two latencies from the claim's commit (``claimed_at``, stamped
in the claiming transaction, before COMMIT):

- **wait**: until the agent's pending ``wait_for_pickup`` call returns ``claimed``;
- **push**: until the claim's ``handoff.claimed`` event is read by each of the N WebSocket
  clients (the same claims, the same run: the floor the waits are compared with).

Also the server's memory per waiting agent: RSS with every agent waiting, minus RSS before the
agents connected (the WebSockets already open), over N. The WebSocket clients run in this
process, the agents in a second one (``--serve-agents``), as agents are processes of their own:
sharing one event loop, each side's client work would delay the other's receipts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import (
    DEFAULT_SERVER,
    bench_database,
    free_port,
    quantile,
    say,
    server_env,
)
from ws_latency import raise_fd_limit, rss_mib

API = "/api/v1"


async def seed(database_url: str, agents: int) -> tuple[str, str]:
    """An account with a junior (the agents' user) and a senior; → (junior token, senior token)."""
    from lifeline.accounts import service as accounts
    from lifeline.accounts.models import Role
    from lifeline.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            account, _owner, _ = await accounts.create_account(
                db=db, name="Bench", owner_email="owner@bench.test", owner_name="Owner"
            )
            junior = await accounts.create_user(
                db=db,
                account_id=account.id,
                email="junior@bench.test",
                name="Junior",
                role=Role.ENGINEER,
            )
            senior = await accounts.create_user(
                db=db,
                account_id=account.id,
                email="senior@bench.test",
                name="Senior",
                role=Role.ENGINEER,
            )
            _t, junior_token = await accounts.create_token(db=db, user=junior, name="agents")
            _t, senior_token = await accounts.create_token(db=db, user=senior, name="queue")
    finally:
        await engine.dispose()
    return junior_token, senior_token


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


async def run(base: str, pid: int, agents: int, junior: str, senior: str) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        say(f"making {agents} escalations")
        handoffs: list[dict[str, Any]] = []
        sem = asyncio.Semaphore(8)

        async def make(i: int) -> None:
            async with sem:
                auth = {"Authorization": f"Bearer {junior}"}
                s = await http.post(f"{API}/ai-sessions", headers=auth, json={"title": f"s{i}"})
                h = await http.post(
                    f"{API}/ai-sessions/{s.json()['id']}/handoff",
                    headers=auth,
                    json={"intent": "escalate", "brief": {"ask": f"help {i}"}},
                )
                handoffs.append(h.json())

        await asyncio.gather(*(make(i) for i in range(agents)))
        await asyncio.sleep(1)

        say(f"connecting {agents} WebSockets")
        ws_url = base.replace("http://", "ws://") + f"{API}/ws"
        push: dict[str, list[float]] = {h["id"]: [] for h in handoffs}
        sockets = []
        for _ in range(agents):
            sockets.append(
                await connect(
                    ws_url,
                    additional_headers={"Authorization": f"Bearer {senior}"},
                    compression=None,
                    open_timeout=60,
                )
            )

        async def read(ws: Any) -> None:
            async for raw in ws:
                received = time.time()
                event = json.loads(raw)
                if event.get("type") == "handoff.claimed":
                    push[event["data"]["id"]].append(received)

        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        await asyncio.sleep(2)
        rss_before, _ = rss_mib(pid)

        say(f"{agents} agents calling wait_for_pickup over streamable HTTP, in their own process")
        # Each agent is a process of its own in real life: here they share one, apart from the
        # benchmark's 1,000 socket readers, so neither side's client work delays the other's.
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve-agents",
            base,
            junior,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**20,
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write((json.dumps([h["id"] for h in handoffs]) + "\n").encode())
        await child.stdin.drain()
        while True:
            line = (await asyncio.wait_for(child.stdout.readline(), 600)).decode()
            if not line:
                raise SystemExit(f"the agents' process ended: exit code {await child.wait()}")
            if line.startswith("waiting"):
                break
            say(line.rstrip())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = (await http.get("/metrics")).text
            line = next(
                (ln for ln in text.splitlines() if ln.startswith("lifeline_agent_waits ")), ""
            )
            if line and float(line.split()[1]) >= agents:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        rss_waiting, _ = rss_mib(pid)
        say(f"  all waiting; server RSS {rss_before:.0f} -> {rss_waiting:.0f} MiB")

        say(f"claiming {agents} escalations, one after another")
        claimed_at: dict[str, float] = {}
        claim_started = time.monotonic()
        # A client of its own: the first one's idle connections were closed by the server's
        # keep-alive timeout while the agents started.
        async with httpx.AsyncClient(base_url=base, timeout=60) as claims:
            for h in handoffs:
                r = await claims.post(
                    f"{API}/ai-sessions/{h['session_id']}/handoffs/{h['id']}/claim",
                    headers={"Authorization": f"Bearer {senior}"},
                )
                claimed_at[h["id"]] = parse_time(r.json()["claimed_at"])
        claim_seconds = time.monotonic() - claim_started
        waits: dict[str, float] = {}
        statuses: dict[str, str] = {}
        retries = 0
        while True:
            line = (await asyncio.wait_for(child.stdout.readline(), 120)).decode()
            if not line or line.startswith("retries"):
                retries = int(line.split()[1]) if line else -1
                break
            handoff_id, received, status = line.split()
            waits[handoff_id] = float(received)
            statuses[handoff_id] = status
        await child.wait()
        await asyncio.sleep(2)
        for task in readers:
            task.cancel()
        for ws in sockets:
            await ws.close()

    wait_ms = [(waits[h] - claimed_at[h]) * 1000 for h in claimed_at]
    push_ms = [(t - claimed_at[h]) * 1000 for h in claimed_at for t in push[h]]
    return {
        "agents": agents,
        "claims_per_second": agents / claim_seconds,
        "wait_p50": quantile(wait_ms, 0.5),
        "wait_p99": quantile(wait_ms, 0.99),
        "push_p50": quantile(push_ms, 0.5),
        "push_p99": quantile(push_ms, 0.99),
        "push_samples": len(push_ms),
        "claimed": sum(1 for s in statuses.values() if s == "claimed"),
        "retries": retries,
        "rss_before": rss_before,
        "rss_waiting": rss_waiting,
        "kib_per_agent": (rss_waiting - rss_before) * 1024 / agents,
    }


async def serve_agents(base: str, junior: str) -> None:
    """The agents' process: one MCP client per escalation id read from stdin, each calling
    ``wait_for_pickup`` as soon as it is connected; prints ``waiting`` once all are, then
    ``<handoff id> <time returned> <status>`` per agent, then ``retries <n>``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    handoff_ids: list[str] = json.loads(await reader.readline())
    agents = len(handoff_ids)
    all_waiting = asyncio.Event()
    opening = asyncio.Semaphore(32)  # agents start a few at a time, as a team's would
    started = 0
    retries = 0

    async def agent(handoff_id: str) -> None:
        nonlocal started, retries
        await opening.acquire()
        first = True
        while True:
            try:
                # Each agent its own HTTP client, as in real life (a pool shared by hundreds
                # of agents scans all their connections on every request).
                async with (
                    httpx2.AsyncClient(
                        headers={"Authorization": f"Bearer {junior}"},
                        timeout=httpx2.Timeout(60, read=120),
                    ) as http,
                    Client(streamable_http_client(base + "/mcp/", http_client=http)) as c,
                ):
                    if first:
                        first = False
                        # A first, short wait (it returns "open" after 1 s): the SDK checks and
                        # compiles a tool's output schema on its first result, a few ms of
                        # client CPU per agent that is not the server's delivery; an agent in
                        # its usual loop of waits has paid it long before a pickup.
                        await c.call_tool(
                            "wait_for_pickup", {"handoff_id": handoff_id, "timeout_seconds": 1}
                        )
                        opening.release()
                        started += 1
                        if started % 100 == 0:
                            print(f"  {started} agents connected", flush=True)
                        if started == agents:
                            all_waiting.set()
                    while True:
                        result = await c.call_tool(
                            "wait_for_pickup", {"handoff_id": handoff_id, "timeout_seconds": 50}
                        )
                        received = time.time()
                        state = result.structured_content or {}
                        if state.get("status") != "open":
                            print(f"{handoff_id} {received} {state.get('status')}", flush=True)
                            return
            except Exception:
                # A dropped connection ends the client; an agent calls the wait again.
                if first:
                    raise
                retries += 1

    tasks = [asyncio.create_task(agent(h)) for h in handoff_ids]
    everyone = asyncio.create_task(all_waiting.wait())
    done, _ = await asyncio.wait([everyone, *tasks], timeout=600, return_when="FIRST_COMPLETED")
    for task in done:
        task.result()  # an agent that failed to start says why
    if not all_waiting.is_set():
        raise SystemExit(f"only {started} of {agents} agents started within 600 s")
    print("waiting", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), 600)
    print(f"retries {retries}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--database-url", default=DEFAULT_SERVER)
    parser.add_argument(
        "--serve-agents", nargs=2, metavar=("BASE", "TOKEN"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_agents:
        raise_fd_limit()
        asyncio.run(serve_agents(*args.serve_agents))
        return
    raise_fd_limit()
    with bench_database(args.database_url, "agents", keep=False) as database:
        junior, senior = asyncio.run(seed(database.sqlalchemy, args.agents))
        port = free_port()
        env = server_env(
            database.sqlalchemy,
            port,
            LIFELINE_MAX_STREAMS_PER_USER=str(args.agents * 2),
            LIFELINE_HEARTBEAT_SECONDS="30",
        )
        log = Path(tempfile.mkdtemp()) / "server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lifeline.cli", "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                base = f"http://127.0.0.1:{port}"
                for _ in range(600):
                    try:
                        if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                r = asyncio.run(run(base, proc.pid, args.agents, junior, senior))
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    say("")
    say(
        f"agents waiting: {r['agents']} (claimed: {r['claimed']}, waits called again after a"
        f" dropped connection: {r['retries']}),"
        f" claims {r['claims_per_second']:.0f}/s"
    )
    say(f"wait_for_pickup  p50 {r['wait_p50']:.1f} ms  p99 {r['wait_p99']:.1f} ms")
    say(
        f"WebSocket push   p50 {r['push_p50']:.1f} ms  p99 {r['push_p99']:.1f} ms"
        f"  ({r['push_samples']} receipts)"
    )
    say(
        f"ratio wait/push  p50 {r['wait_p50'] / r['push_p50']:.2f}x"
        f"  p99 {r['wait_p99'] / r['push_p99']:.2f}x   (aim: <= 1.5x, <= 2x)"
    )
    say(
        f"server RSS {r['rss_before']:.0f} MiB -> {r['rss_waiting']:.0f} MiB with all waiting:"
        f" {r['kib_per_agent']:.1f} KiB per waiting agent (aim: < 64 KiB)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
