"""The whole system under load: two ``lifeline serve`` and a ``lifeline worker``, PostgreSQL, Redis.

    .venv/bin/python bench/load_run.py [--seconds 60] [--rate 50] [--accounts 20] [--seniors 10]
        [--claimers 3] [--floor-seconds 10] [--server postgresql://postgres@127.0.0.1:5432/postgres]
        [--redis redis://…]  (default: a private redis-server on a free port)

Production shape on loopback: a throwaway PostgreSQL database, Redis, two API processes behind a
round-robin "load balancer" (the client alternates), one worker, and an SMTP sink. ``--accounts``
teams of ``--seniors`` seniors (the owner among them; the owner emailed always, the others
``offline_only``) and one junior each: 200 seniors by default, every one connected all the time,
half over WebSocket and half over SSE, spread over both servers (a separate process holds them).

For ``--seconds`` the driver starts ``--rate`` escalation scenarios per second, open loop (a
scenario that can't start because 400 are in flight is counted as shed): a junior creates an AI
session and escalates it, then ``--claimers`` seniors of the team race to pick it up at once.

Before that, the floor: the same request rate (``rate × (2 + claimers)`` per second, same open
loop, same client) against a bare FastAPI route in two uvicorn processes, for ``--floor-seconds``.

Reports throughput, latency percentiles per request kind, push latency (Escalate pressed → the
event on each senior's stream), errors, and the invariant check over everything the run did: no
handoff lost, no double claim, every escalation's wave written and settled, no email twice, and
every connected senior got every escalation of their team and every pick-up exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

import httpx
from _support import (
    DEFAULT_SERVER,
    ROOT,
    bench_database,
    free_port,
    lifeline_serve,
    live_server,
    quantile,
    say,
    server_env,
)

sys.path.insert(0, str(ROOT))  # the invariant checks are the reliability suite's own

MAX_IN_FLIGHT = 400
_titles = itertools.count(1)
SETTLE_SECONDS = 180.0


# -- people ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Team:
    account_id: str
    junior: Member
    seniors: tuple[Member, ...]


async def seed(database_url: str, accounts: int, seniors: int) -> list[Team]:
    """Accounts of ``seniors`` seniors (owner included) and one junior, each with a token."""
    from lifeline.accounts import service as accounts_service
    from lifeline.accounts.models import EmailPreference, Role
    from lifeline.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    teams: list[Team] = []
    try:
        maker = create_sessionmaker(engine)
        for n in range(accounts):
            async with maker() as db, db.begin():
                account, owner, owner_token = await accounts_service.create_account(
                    db=db, name=f"Load {n}", owner_email=f"owner{n}@load.example"
                )
                members = [Member(owner.id, owner_token)]
                for s in range(seniors - 1):
                    user = await accounts_service.create_user(
                        db=db,
                        account_id=account.id,
                        email=f"senior{n}-{s}@load.example",
                        name=f"Senior {n}-{s}",
                        role=Role.ADMIN if s == 0 else Role.ENGINEER,
                    )
                    user.email_notifications = EmailPreference.OFFLINE_ONLY
                    _t, secret = await accounts_service.create_token(db=db, user=user, name="load")
                    members.append(Member(user.id, secret))
                junior = await accounts_service.create_user(
                    db=db,
                    account_id=account.id,
                    email=f"junior{n}@load.example",
                    name=f"Junior {n}",
                    role=Role.ENGINEER,
                )
                _t, secret = await accounts_service.create_token(db=db, user=junior, name="load")
            teams.append(Team(account.id, Member(junior.id, secret), tuple(members)))
    finally:
        await engine.dispose()
    return teams


# -- the seniors' live connections, in a process of their own ------------------------------


def listen(
    bases: list[str], seniors: list[tuple[str, str]], out: str, ready: MpEvent, stop: MpEvent
) -> None:
    """Child process: one stream per senior (even ones WebSocket, odd ones SSE), alternating
    servers; reconnects with the last id; writes every event received to ``out`` at the end."""
    asyncio.run(_listen(bases, seniors, Path(out), ready, stop))


async def _listen(
    bases: list[str], seniors: list[tuple[str, str]], out: Path, ready: MpEvent, stop: MpEvent
) -> None:
    from httpx_sse import aconnect_sse
    from websockets.asyncio.client import connect

    received: list[tuple[float, str, str, str, int]] = []
    opened: Counter[str] = Counter()

    def keep(user_id: str, text: str) -> int | None:
        message = json.loads(text)
        if message.get("type") == "heartbeat":
            return None
        data = message.get("data") or {}
        received.append(
            (time.time(), user_id, message["type"], str(data.get("id")), int(message["id"]))
        )
        return int(message["id"])

    async def ws(base: str, user_id: str, token: str) -> None:
        url = base.replace("http://", "ws://", 1) + "/api/v1/ws"
        last: int | None = None
        while True:
            with contextlib.suppress(Exception):
                async with connect(
                    url if last is None else f"{url}?last_event_id={last}",
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=30,
                    max_queue=None,
                ) as conn:
                    opened[user_id] += 1
                    async for text in conn:
                        last = keep(user_id, str(text)) or last
            await asyncio.sleep(0.5)

    async def sse(client: httpx.AsyncClient, base: str, user_id: str, token: str) -> None:
        last: int | None = None
        while True:
            headers = {"Authorization": f"Bearer {token}"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            with contextlib.suppress(Exception):
                async with aconnect_sse(
                    client, "GET", f"{base}/api/v1/events", headers=headers
                ) as source:
                    source.response.raise_for_status()
                    opened[user_id] += 1
                    async for event in source.aiter_sse():
                        if event.data:
                            last = keep(user_id, event.data) or last
            await asyncio.sleep(0.5)

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(30, read=None)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        tasks = []
        for i, (user_id, token) in enumerate(seniors):
            base = bases[i % len(bases)]
            if i % 2 == 0:
                tasks.append(asyncio.create_task(ws(base, user_id, token)))
            else:
                tasks.append(asyncio.create_task(sse(client, base, user_id, token)))
        # Polled: the parent's signals are multiprocessing events, not asyncio ones.
        while len(opened) < len(seniors):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        ready.set()
        while not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    reconnects = sum(opened.values()) - len(opened)
    await asyncio.to_thread(
        out.write_text, json.dumps({"received": received, "reconnects": reconnects})
    )


# -- the driver -----------------------------------------------------------------------------


@dataclass
class Timing:
    kind: str
    started: float  # time.time() when sent
    seconds: float
    status: int | None


@dataclass
class Run:
    timings: list[Timing] = field(default_factory=list)
    scheduled: int = 0
    shed: int = 0
    in_flight: int = 0
    # handoff id → (account id, escalator id, time.time() Escalate was pressed)
    escalations: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)

    def errors(self) -> Counter[str]:
        return Counter(
            f"{t.kind} {t.status or 'no answer'}"
            for t in self.timings
            if t.status is None
            or (t.status >= 400 and not (t.kind == "claim (lost)" and t.status == 409))
        )


async def timed(
    run: Run, kind: str, client: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> httpx.Response | None:
    started, t0 = time.time(), time.perf_counter()
    try:
        response = await client.request(method, url, **kw)
    except httpx.HTTPError:
        run.timings.append(Timing(kind, started, time.perf_counter() - t0, None))
        return None
    label = kind
    if kind == "claim":
        label = "claim (won)" if response.status_code == 200 else "claim (lost)"
    run.timings.append(Timing(label, started, time.perf_counter() - t0, response.status_code))
    return response


async def scenario(run: Run, clients: list[httpx.AsyncClient], team: Team, claimers: int) -> None:
    client = random.choice(clients)
    title = f"load {next(_titles)}"
    body = {"title": title, "messages": [{"role": "user", "content": "stuck on a deadlock"}]}
    created = await timed(
        run,
        "session",
        client,
        "POST",
        "/api/v1/ai-sessions",
        json=body,
        headers=team.junior.headers,
    )
    if created is None or created.status_code != 201:
        return
    session_id = created.json()["id"]
    run.sessions[session_id] = title
    pressed = time.time()
    escalated = await timed(
        run,
        "escalate",
        random.choice(clients),
        "POST",
        f"/api/v1/ai-sessions/{session_id}/handoff",
        json={"intent": "escalate", "note": title},
        headers=team.junior.headers,
    )
    if escalated is None or escalated.status_code != 201:
        return
    handoff = escalated.json()
    run.answers[handoff["id"]] = handoff
    run.escalations[handoff["id"]] = (team.account_id, team.junior.id, pressed)
    url = f"/api/v1/ai-sessions/{session_id}/handoffs/{handoff['id']}/claim"

    async def claim(senior: Member) -> tuple[str, int | None]:
        answer = await timed(
            run, "claim", random.choice(clients), "POST", url, headers=senior.headers
        )
        return senior.id, None if answer is None else answer.status_code

    racers = random.sample(team.seniors, min(claimers, len(team.seniors)))
    run.claims[handoff["id"]] = list(await asyncio.gather(*(claim(s) for s in racers)))


async def open_loop(
    rate: float, seconds: float, start_one: Any, run: Run, label: str, progress: float = 5.0
) -> float:
    """Start ``start_one()`` ``rate`` times a second for ``seconds``; → elapsed until all done."""
    tasks: set[asyncio.Task[None]] = set()
    began = time.perf_counter()
    next_report = progress
    total = int(rate * seconds)
    for n in range(total):
        delay = began + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.scheduled += 1
        if len(tasks) >= MAX_IN_FLIGHT:
            run.shed += 1
            continue
        task = asyncio.create_task(start_one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        elapsed = time.perf_counter() - began
        if elapsed >= next_report:
            next_report += progress
            say(
                f"  {label} t={elapsed:5.1f}s started={run.scheduled - run.shed}/{total}"
                f" in flight={len(tasks)} shed={run.shed} errors={sum(run.errors().values())}"
            )
    if tasks:
        await asyncio.wait(tasks, timeout=120)
    return time.perf_counter() - began


def serve_bare(port: int) -> None:
    """The floor's server: an empty-handed route returning a handoff-sized JSON body."""
    import uvicorn
    from fastapi import FastAPI, Response

    body = json.dumps({"id": "x" * 36, "note": "y" * 400}).encode()
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare")
    async def bare() -> Response:
        return Response(body, media_type="application/json", status_code=201)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def client_for(base: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=200, keepalive_expiry=2)
    return httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(60))


async def measure_floor(bases: list[str], rate: float, seconds: float) -> Run:
    run = Run()
    clients = [client_for(b) for b in bases]
    try:

        async def one() -> None:
            await timed(run, "bare", random.choice(clients), "POST", "/bare", json={"x": 1})

        await open_loop(rate, seconds, one, run, "floor")
    finally:
        for c in clients:
            await c.aclose()
    return run


async def drive(bases: list[str], teams: list[Team], args: argparse.Namespace) -> tuple[Run, float]:
    run = Run()
    clients = [client_for(b) for b in bases]
    order = iter(range(10**9))
    try:

        async def one() -> None:
            team = teams[next(order) % len(teams)]
            await scenario(run, clients, team, args.claimers)

        elapsed = await open_loop(args.rate, args.seconds, one, run, "load")
    finally:
        for c in clients:
            await c.aclose()
    return run, elapsed


async def wait_online(base: str, teams: list[Team], within: float = 120) -> None:
    """Every senior online as the servers see it (presence is shared through Redis)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for team in teams:
            want = {s.id for s in team.seniors}
            while True:
                page = await client.get("/api/v1/presence", headers=team.junior.headers)
                online = {i["user"]["id"] for i in page.json()["items"] if i["online"]}
                if want <= online:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"seniors not online: {len(want - online)} missing")
                await asyncio.sleep(0.2)


# -- checking and reporting -----------------------------------------------------------------


def push_check(
    run: Run, teams: list[Team], received: list[list[Any]]
) -> tuple[list[str], list[float]]:
    """Each connected senior got each escalation of their team and each pick-up exactly once."""
    seniors_of = {t.account_id: {s.id for s in t.seniors} for t in teams}
    got: Counter[tuple[str, str, str]] = Counter()
    first_seen: dict[tuple[str, str], float] = {}
    for at, user_id, type_, handoff_id, _event_id in received:
        got[(user_id, type_, handoff_id)] += 1
        if type_ == "handoff.escalated":
            first_seen.setdefault((user_id, handoff_id), at)
    problems: list[str] = []
    latencies: list[float] = []
    for handoff_id, (account_id, _escalator, pressed) in run.escalations.items():
        winners = [who for who, status in run.claims.get(handoff_id, []) if status == 200]
        for senior in seniors_of[account_id]:
            n = got[(senior, "handoff.escalated", handoff_id)]
            if n != 1:
                problems.append(f"{senior} got escalation {handoff_id} {n} times")
            else:
                latencies.append(first_seen[(senior, handoff_id)] - pressed)
            if winners and got[(senior, "handoff.claimed", handoff_id)] != 1:
                problems.append(f"{senior} got the pick-up of {handoff_id} not exactly once")
    return problems, latencies


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    ms = [s * 1000 for s in samples]
    return (
        f"p50 {quantile(ms, 0.5):8.1f}  p90 {quantile(ms, 0.9):8.1f}  "
        f"p99 {quantile(ms, 0.99):8.1f}  max {max(ms):8.1f} ms  (n={len(ms)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=50, help="escalations per second")
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--seniors", type=int, default=10, help="per account, owner included")
    parser.add_argument("--claimers", type=int, default=3, help="seniors racing per escalation")
    parser.add_argument("--floor-seconds", type=float, default=10)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--redis", default=None, help="default: a private redis-server")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="lifeline-load-"))
    say(f"logs in {logs}")

    from tests.reliability import invariants
    from tests.reliability.load import LoadRecord
    from tests.reliability.services import PrivateRedis
    from tests.support.smtp import smtp_recorder

    with contextlib.ExitStack() as stack:
        redis_url = args.redis
        if redis_url is None:
            redis = PrivateRedis(logs)
            redis.start()
            stack.callback(redis.kill)
            redis_url = redis.url
        say(f"redis {redis_url}")
        database = stack.enter_context(bench_database(args.server, "load", keep=args.keep))
        smtp = stack.enter_context(smtp_recorder())
        say(f"seeding {args.accounts} accounts × ({args.seniors} seniors + 1 junior)")
        teams = asyncio.run(seed(database.sqlalchemy, args.accounts, args.seniors))

        # The floor first, on a quiet machine like the run itself.
        bare_ports = [free_port(), free_port()]
        floor_rate = args.rate * (2 + args.claimers)
        with contextlib.ExitStack() as bare:
            bare_bases = [
                bare.enter_context(
                    live_server(
                        [sys.executable, __file__, "--serve-bare", str(p)],
                        server_env(database.sqlalchemy, p),
                        p,
                        logs / f"bare_{p}.log",
                    )
                )
                for p in bare_ports
            ]
            say(f"floor: a bare route in 2 processes at {floor_rate:.0f} requests/s")
            floor = asyncio.run(measure_floor(bare_bases, floor_rate, args.floor_seconds))

        shared = {
            "LIFELINE_REDIS_URL": redis_url,
            "LIFELINE_SMTP_HOST": smtp.host,
            "LIFELINE_SMTP_PORT": str(smtp.port),
            # The product's default sweep: retries, reminders, rows nobody dispatched.
            "LIFELINE_SWEEP_INTERVAL_SECONDS": "5",
        }
        ports = [free_port(), free_port()]
        bases = [
            stack.enter_context(
                live_server(
                    lifeline_serve(p),
                    server_env(database.sqlalchemy, p, **shared),
                    p,
                    logs / f"serve_{p}.log",
                )
            )
            for p in ports
        ]
        worker_log = (logs / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "lifeline.cli", "worker"],
            env=server_env(database.sqlalchemy, ports[0], **shared),
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(worker_log.close)
        stack.callback(lambda: (worker.terminate(), worker.wait(30)))

        seniors = [(s.id, s.token) for t in teams for s in t.seniors]
        ctx = multiprocessing.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        out = logs / "received.json"
        listener = ctx.Process(
            target=listen, args=(bases, seniors, str(out), ready, stop), daemon=True
        )
        listener.start()
        say(f"connecting {len(seniors)} seniors (WebSocket and SSE, both servers)")
        if not ready.wait(120):
            raise RuntimeError("the seniors could not all connect")
        asyncio.run(wait_online(bases[0], teams))

        say(f"load: {args.rate:g} escalations/s for {args.seconds:g} s, {args.claimers} claimers")
        run, elapsed = asyncio.run(drive(bases, teams, args))
        say("waiting for every delivery to settle")
        settled = asyncio.run(invariants.wait_settled(database.sqlalchemy, within=SETTLE_SECONDS))
        time.sleep(2)  # the last pushes reach the streams
        stop.set()
        listener.join(60)
        listened = json.loads(out.read_text())
        record = LoadRecord(sessions=run.sessions, handoffs=run.answers, claims=run.claims)
        found = asyncio.run(
            invariants.check(database.sqlalchemy, record=record, received=smtp.messages)
        )
        push_problems, push_latency = push_check(run, teams, listened["received"])

    by_kind: dict[str, list[float]] = defaultdict(list)
    for t in run.timings:
        if t.status is not None and t.status < 500:
            by_kind[t.kind].append(t.seconds)
    escalations = len(run.escalations)
    say("")
    say(
        f"scenarios: {run.scheduled} scheduled, {run.scheduled - run.shed} started, {run.shed}"
        f" shed; {escalations} escalations in {elapsed:.1f} s = {escalations / elapsed:.1f}/s"
        f" (target {args.rate:g}/s)"
    )
    say(f"requests: {len(run.timings)} in {elapsed:.1f} s = {len(run.timings) / elapsed:.1f}/s")
    for kind in ("session", "escalate", "claim (won)", "claim (lost)"):
        say(f"  {kind:<13} {percentiles(by_kind[kind])}")
    say(f"  {'push':<13} {percentiles(push_latency)}  (Escalate pressed → on a senior's stream)")
    floor_ok = [t.seconds for t in floor.timings if t.status == 201]
    say(
        f"  {'floor':<13} {percentiles(floor_ok)}  ({len(floor.timings)} requests,"
        f" {floor.shed} shed, errors {dict(floor.errors())})"
    )
    if floor_ok and by_kind["escalate"]:
        for q in (0.5, 0.99):
            ratio = quantile(by_kind["escalate"], q) / quantile(floor_ok, q)
            say(f"  escalate / floor at p{int(q * 100)}: {ratio:.1f}x")
    say(f"errors: {dict(run.errors()) or 'none'}")
    say(
        f"claims: {sum(len(v) for v in run.claims.values())} in {len(run.claims)} races,"
        f" winners {Counter(sum(s == 200 for _, s in v) for v in run.claims.values())}"
    )
    say(f"deliveries: {dict(settled)}; emails received {found.emails_received}")
    say(
        f"streams: {len(listened['received'])} events received, {listened['reconnects']} reconnects"
    )
    violations = found.violations + push_problems
    say(f"invariants: {'all held' if not violations else f'{len(violations)} VIOLATED'}")
    for v in violations[:20]:
        say(f"  {v}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]))
    else:
        main()
