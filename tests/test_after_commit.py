"""The after-commit runner: each side effect to its handler; one nobody handles is a warning."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.after_commit import AfterCommitRunner, DropConnections, PublishEvent, TaskSet
from lifeline.db import create_engine, create_sessionmaker, run_unit_of_work


async def test_each_side_effect_reaches_its_handler() -> None:
    tasks = TaskSet()
    runner = AfterCommitRunner(tasks)
    seen: list[object] = []

    async def handle(effect: PublishEvent) -> None:
        seen.append(effect)

    runner.register(PublishEvent, handle)
    event = PublishEvent(account_id="a1", audience="account", message={"id": "7"})
    runner.run([event])
    await tasks.drain()
    assert seen == [event]
    assert event.event_id == 7


async def test_a_side_effect_nobody_handles_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet()
    runner = AfterCommitRunner(tasks)
    with caplog.at_level(logging.WARNING, logger=after_commit.__name__):
        runner.run([DropConnections(user_id="u1")])
    await tasks.drain()
    assert len(tasks) == 0
    assert any(
        r.levelno == logging.WARNING and "DropConnections" in r.getMessage() for r in caplog.records
    )


async def test_a_failing_handler_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet()
    runner = AfterCommitRunner(tasks)

    async def broken(_effect: DropConnections) -> None:
        raise RuntimeError("boom")

    runner.register(DropConnections, broken)
    with caplog.at_level(logging.ERROR, logger=after_commit.__name__):
        runner.run([DropConnections(user_id="u1")])
        await tasks.drain()
    assert any("after-commit DropConnections failed" in r.getMessage() for r in caplog.records)


class _Deadlock(Exception):
    sqlstate = "40P01"


async def test_a_unit_of_work_that_loses_a_deadlock_runs_again(database_url: str) -> None:
    """Outside a request (the worker, the command line) the unit of work itself runs again;
    the failed attempt's side effects are dropped, the winning one's run once."""
    engine = create_engine(database_url)
    tasks = TaskSet()
    runner = AfterCommitRunner(tasks)
    seen: list[str] = []

    async def handle(effect: DropConnections) -> None:
        seen.append(effect.user_id)

    runner.register(DropConnections, handle)
    attempts: list[int] = []

    async def work(db: AsyncSession) -> int:
        attempts.append(1)
        after_commit.record(db, DropConnections(user_id=f"attempt-{len(attempts)}"))
        if len(attempts) == 1:
            raise _Deadlock("deadlock detected")
        return int(await db.scalar(text("SELECT 41 + 1")) or 0)

    async def not_a_conflict(_db: AsyncSession) -> None:
        attempts.append(1)
        raise RuntimeError("not a conflict")

    try:
        assert await run_unit_of_work(create_sessionmaker(engine), runner, work) == 42
        await tasks.drain()
        assert len(attempts) == 2 and seen == ["attempt-2"]
        with pytest.raises(RuntimeError):
            await run_unit_of_work(create_sessionmaker(engine), runner, not_a_conflict)
        assert len(attempts) == 3  # anything else is never run again
    finally:
        await engine.dispose()
