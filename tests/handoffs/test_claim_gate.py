"""Pick Up in single file per process (``lifeline.handoffs.claim_gate``).

A burst of claims on one escalation makes one attempt at a time in a process; the claims that
waited are answered from what it found, but only from a committed fact found after they
began, about their own account and session, that is not "open". Everything else makes an
attempt of its own, so the database still picks the one winner.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from lifeline.context import AppContext
from lifeline.handoffs.claim_gate import ClaimFacts, ClaimGate, Seen, Turn
from tests.handoffs.test_claim_statement import statements
from tests.support.factories import Factory, escalate, new_session

CLAIMED = ClaimFacts(
    intent="escalate", status="claimed", created_by="junior", claimed_by="a", holder_name="A"
)


async def wait_until(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 (a plain attribute: nothing to wait on)
            await asyncio.sleep(0.005)


async def queue_behind(gate: ClaimGate, attempt: Turn, **where: str) -> asyncio.Task[Turn]:
    """A claim that waits at ``gate`` while ``attempt`` is under way; → its turn, once it
    has one (it leaves the gate at once: an attempt of its own is not made here)."""

    async def claim() -> Turn:
        async with gate.turn("h1", **where) as turn:
            return turn

    before = gate.waiting
    task = asyncio.create_task(claim())
    await wait_until(lambda: gate.waiting == before + 1)
    return task


async def test_claims_that_waited_are_answered_from_a_committed_claim() -> None:
    gate = ClaimGate()
    async with gate.turn("h1", account_id="acc", session_id="s1") as attempt:
        assert attempt.answer is None and len(gate) == 1
        same = await queue_behind(gate, attempt, account_id="acc", session_id="s1")
        other_session = await queue_behind(gate, attempt, account_id="acc", session_id="s2")
        other_account = await queue_behind(gate, attempt, account_id="other", session_id="s1")
        attempt.seen = Seen(at=time.monotonic(), account_id="acc", session_id="s1", facts=CLAIMED)
    assert (await same).answer == CLAIMED
    # Not about them: each makes an attempt of its own (and so is told "not found").
    assert (await other_session).answer is None
    assert (await other_account).answer is None
    assert len(gate) == 0 and gate.waiting == 0


# "nothing": the attempt failed, was cancelled, or found no such handoff.
@pytest.mark.parametrize("seen", ["nothing", "open", "before"])
async def test_anything_short_of_a_settled_fact_leaves_the_claim_its_own_attempt(
    seen: str,
) -> None:
    gate = ClaimGate()
    async with gate.turn("h1", account_id="acc", session_id="s1") as attempt:
        waiter = await queue_behind(gate, attempt, account_id="acc", session_id="s1")
        if seen == "open":
            facts = ClaimFacts(
                intent="escalate", status="open", created_by="junior", claimed_by=None,
                holder_name=None,
            )  # fmt: skip
            attempt.seen = Seen(at=time.monotonic(), account_id="acc", session_id="s1", facts=facts)
        elif seen == "before":
            # Found before the waiting claim began: it may have changed since.
            attempt.seen = Seen(at=0.0, account_id="acc", session_id="s1", facts=CLAIMED)
    assert (await waiter).answer is None


async def test_a_failed_attempt_lets_the_next_claim_attempt_one_at_a_time() -> None:
    gate = ClaimGate()
    entered: list[str] = []
    under_way = 0
    release = asyncio.Event()

    async def claim(name: str, fail: bool) -> ClaimFacts | None:
        nonlocal under_way
        async with gate.turn("h1", account_id="acc", session_id="s1") as turn:
            if turn.answer is None:
                entered.append(name)
                under_way += 1
                assert under_way == 1, "two attempts at once"
                await release.wait()
                await asyncio.sleep(0.01)  # its statements
                under_way -= 1
                if fail:
                    raise RuntimeError("database went away")
                turn.seen = Seen(
                    at=time.monotonic(), account_id="acc", session_id="s1", facts=CLAIMED
                )
            return turn.answer

    first = asyncio.create_task(claim("first", fail=True))
    await wait_until(lambda: len(gate) == 1)
    rest = [asyncio.create_task(claim(f"c{n}", fail=False)) for n in range(3)]
    await wait_until(lambda: gate.waiting == 3)
    release.set()
    with pytest.raises(RuntimeError):
        await first
    answers = await asyncio.gather(*rest)
    # One of the three made the next attempt and won; the other two were answered from it.
    assert len(entered) == 2 and answers.count(None) == 1 and answers.count(CLAIMED) == 2
    assert len(gate) == 0 and gate.waiting == 0


async def test_a_follower_that_goes_away_does_not_disturb_the_attempt() -> None:
    gate = ClaimGate()
    async with gate.turn("h1", account_id="acc", session_id="s1") as attempt:
        gone = await queue_behind(gate, attempt, account_id="acc", session_id="s1")
        stays = await queue_behind(gate, attempt, account_id="acc", session_id="s1")
        gone.cancel()
        await wait_until(lambda: gate.waiting == 1)
        attempt.seen = Seen(at=time.monotonic(), account_id="acc", session_id="s1", facts=CLAIMED)
    assert (await stays).answer == CLAIMED


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_burst_on_one_server_makes_one_attempt_and_answers_everyone_right(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    """PostgreSQL only: on SQLite every request takes the write lock before it is even
    authenticated, so no claim can reach the gate while another is under way."""
    team = await factory.team(junior="engineer", a="engineer", b="admin", c="engineer")
    stranger = (await factory.team(x="admin"))["x"]
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"], note="who?")
    await ctx.tasks.drain()
    url = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"

    async with ctx.engine.connect() as blocker:
        # Hold the row: the first claim's UPDATE waits on it, inside its turn.
        await blocker.execute(
            text("SELECT id FROM handoffs WHERE id = :id FOR UPDATE"), {"id": handoff["id"]}
        )
        with statements(ctx) as seen:
            first = asyncio.create_task(client.post(url, headers=team["a"].headers))
            await wait_until(lambda: len(ctx.claims) == 1)
            others = [
                asyncio.create_task(client.post(url, headers=who.headers))
                for who in (team["b"], team["c"], team["junior"], stranger)
            ]
            await wait_until(lambda: ctx.claims.waiting == 4)
            await blocker.commit()
            won = await first
            b, c, junior, elsewhere = await asyncio.gather(*others)

    assert won.status_code == 200, won.text
    for lost in (b, c):
        assert lost.status_code == 409
        assert lost.json()["detail"] == f"Already picked up by {team['a'].name}"
        assert lost.json()["claimed_by"] == {"id": team["a"].id, "name": team["a"].name}
    assert (junior.status_code, junior.json()["detail"]) == (
        403,
        "You can't pick up your own escalation",
    )
    assert (elsewhere.status_code, elsewhere.json()["detail"]) == (404, "Handoff not found")
    # The winner's UPDATE alone. The stranger (another account) was not answered from the
    # winner's claim: its own attempt looked first, found nothing it may see, and stopped.
    claims = [s for s in seen if s.startswith("UPDATE HANDOFFS")]
    assert len(claims) == 1, claims
    looks = [s for s in seen if s.startswith("SELECT HANDOFFS.INTENT")]
    assert len(looks) == 2, looks  # the winner's and the stranger's
    assert len(ctx.claims) == 0 and ctx.claims.waiting == 0
