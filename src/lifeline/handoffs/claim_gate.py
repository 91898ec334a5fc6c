"""Pick Up in single file per process: a burst of claims on one escalation makes few attempts.

When a team gets an escalation, many seniors may press Pick Up within the same few
milliseconds. The database decides who wins (the conditional ``UPDATE`` in
:func:`lifeline.handoffs.service.claim_handoff`), and every loser used to find out the same
way: an ``UPDATE`` that blocks on the winner's row lock until the winner commits, changes
nothing, then a read to say who won: two statements per loser that all learn the same fact.

The gate lets one claim of an escalation at a time in this process (the *attempt*) go to the
database, while the others wait for what it found:

- it **won and committed**, or it lost and **read the handoff as no longer open** (picked up by
  someone, resolved, withdrawn): a claim that was already waiting when that was found is
  answered from it, by the same rules and in the same order as a read of its own after a lost
  ``UPDATE`` (your own escalation, your role, "Already picked up by …"). That is what the
  database would have told it: the fact was true at a moment while its request was under way.
- anything else (the handoff was found open, or not at all, or the attempt failed or was
  cancelled, or the fact predates the waiting claim, or it is about another account or
  session): the next claim in line makes an attempt of its own, exactly as without the gate.

So the gate never decides a winner: only a committed claim or a committed state read from the
database turns a claim away, and the database still picks one winner among the attempts of all
processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from lifeline.handoffs.models import HandoffStatus, Intent


@dataclass(frozen=True)
class ClaimFacts:
    """What a refusal to pick up is worked out from."""

    intent: str
    status: str
    created_by: str
    claimed_by: str | None
    holder_name: str | None


@dataclass(frozen=True)
class Seen:
    """A handoff of ``account_id`` and ``session_id`` as an attempt found it, at ``at``
    (``time.monotonic()``) or later."""

    at: float
    account_id: str
    session_id: str
    facts: ClaimFacts

    def settles(self, *, since: float, account_id: str, session_id: str) -> bool:
        """Whether this answers a claim waiting since ``since`` without an attempt of its own."""
        return (
            self.at > since
            and self.account_id == account_id
            and self.session_id == session_id
            and self.facts.intent == Intent.ESCALATE
            and self.facts.status != HandoffStatus.OPEN
        )


@dataclass
class Turn:
    """One claim's place at the gate.

    ``answer`` is set when another attempt settled this claim; otherwise this claim is the
    attempt, and sets ``seen`` to what it found (after its commit, for a win)."""

    answer: ClaimFacts | None = None
    seen: Seen | None = None


class ClaimGate:
    def __init__(self) -> None:
        self._attempts: dict[str, asyncio.Future[Seen | None]] = {}
        self.waiting = 0  # claims now waiting on another's attempt

    @asynccontextmanager
    async def turn(
        self, handoff_id: str, *, account_id: str, session_id: str
    ) -> AsyncIterator[Turn]:
        since = time.monotonic()
        while (attempt := self._attempts.get(handoff_id)) is not None:
            # shield: a claim that goes away must not cancel what the others wait for.
            self.waiting += 1
            try:
                seen = await asyncio.shield(attempt)
            finally:
                self.waiting -= 1
            if seen is not None and seen.settles(
                since=since, account_id=account_id, session_id=session_id
            ):
                yield Turn(answer=seen.facts)
                return
        outcome: asyncio.Future[Seen | None] = asyncio.get_running_loop().create_future()
        self._attempts[handoff_id] = outcome
        turn = Turn()
        try:
            yield turn
        finally:
            del self._attempts[handoff_id]
            outcome.set_result(turn.seen)

    def __len__(self) -> int:
        return len(self._attempts)
