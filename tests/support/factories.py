"""Factories: accounts, people with tokens, sessions, and API helpers over httpx."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline.accounts import service as accounts
from lifeline.accounts.models import Account, Role, User

_counter = itertools.count(1)
PASSWORD = "correct horse battery"


@dataclass
class Person:
    user: User
    token: str
    password: str = PASSWORD

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Team:
    account: Account
    owner: Person
    members: dict[str, Person] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Person:
        return self.members[key]


class Factory:
    """Writes straight through the services, each call its own committed transaction."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def team(self, name: str | None = None, **roles: Role | str) -> Team:
        """``await factory.team(alice="engineer", vic="viewer")`` → Team with owner + those."""
        n = next(_counter)
        async with self.sessionmaker() as db, db.begin():
            account, owner, secret = await accounts.create_account(
                db=db,
                name=name or f"Team {n}",
                owner_email=f"owner{n}@t{n}.example",
                owner_name=f"Owner {n}",
                owner_password=PASSWORD,
            )
        team = Team(account=account, owner=Person(owner, secret))
        for key, role in roles.items():
            team.members[key] = await self.person(team, key=key, role=Role(role))
        return team

    async def person(self, team: Team, *, key: str, role: Role) -> Person:
        n = next(_counter)
        async with self.sessionmaker() as db, db.begin():
            user = await accounts.create_user(
                db=db,
                account_id=team.account.id,
                email=f"{key}{n}@{team.account.id[:8]}.example",
                name=f"{key.capitalize()} {n}",
                role=role,
                password=PASSWORD,
            )
            _token, secret = await accounts.create_token(db=db, user=user, name="test")
        return Person(user, secret)


async def new_session(
    client: httpx.AsyncClient,
    person: Person,
    title: str = "Stuck on a deadlock",
    messages: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/ai-sessions",
        headers=person.headers,
        json={
            "title": title,
            "messages": messages
            or [
                {"role": "user", "content": "The migration deadlocks on CI."},
                {"role": "assistant", "content": "Two transactions lock in opposite order."},
            ],
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def escalate(
    client: httpx.AsyncClient,
    person: Person,
    session_id: str,
    note: str = "please help",
    intent: str = "escalate",
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/ai-sessions/{session_id}/handoff",
        headers=person.headers,
        json={"intent": intent, "note": note},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
