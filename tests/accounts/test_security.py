"""Secrets at rest: API tokens as SHA-256 only, passwords as argon2; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import select, text

from lifeline.accounts import security
from lifeline.accounts.models import ApiToken, User
from lifeline.context import AppContext
from tests.support.factories import PASSWORD, Factory


async def _raw_rows(ctx: AppContext, table: str) -> list[str]:
    """Every row of a table as text, read with plain SQL so nothing is hidden by the ORM."""
    async with ctx.engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    return [" ".join(str(value) for value in row) for row in rows]


async def test_tokens_are_stored_only_as_sha256(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(eng="engineer")
    created = await client.post(
        "/api/v1/tokens", headers=team["eng"].headers, json={"name": "laptop"}
    )
    secrets = [team.owner.token, team["eng"].token, created.json()["token"]]

    dump = "\n".join(await _raw_rows(ctx, "api_tokens"))
    for secret in secrets:
        assert secret not in dump
        assert secret[len(security.TOKEN_PREFIX) :] not in dump
        assert hashlib.sha256(secret.encode()).hexdigest() in dump
    async with ctx.sessionmaker() as db:
        row = await db.scalar(select(ApiToken).where(ApiToken.id == created.json()["id"]))
    assert row is not None
    assert row.token_hash == hashlib.sha256(created.json()["token"].encode()).hexdigest()
    # The display prefix is short: a few characters past "lfl_", not enough to guess from.
    assert row.prefix == created.json()["token"][: len(row.prefix)]
    assert len(row.prefix) <= len(security.TOKEN_PREFIX) + 6


async def test_passwords_are_argon2(factory: Factory, ctx: AppContext) -> None:
    team = await factory.team(eng="engineer")
    dump = "\n".join(await _raw_rows(ctx, "users"))
    assert PASSWORD not in dump
    async with ctx.sessionmaker() as db:
        hashes = (await db.scalars(select(User.password_hash))).all()
    assert len(hashes) == 2
    for password_hash in hashes:
        assert password_hash is not None and password_hash.startswith("$argon2")
        assert security.verify_password(password_hash, PASSWORD)
        assert not security.verify_password(password_hash, PASSWORD + "!")
    assert team.owner.user.password_hash != team["eng"].user.password_hash  # salted


def test_verify_password_without_a_hash_is_false() -> None:
    assert not security.verify_password(None, "anything")
    assert not security.verify_password("not-a-hash", "anything")


def test_token_secrets_are_high_entropy_and_distinct() -> None:
    made = {security.new_api_token()[0] for _ in range(200)}
    assert len(made) == 200
    for secret in made:
        assert secret.startswith("lfl_") and len(secret) >= 4 + 43


async def test_a_revoked_token_is_401_at_once(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer")
    tokens = await client.get("/api/v1/tokens", headers=team["eng"].headers)
    (token_id,) = [t["id"] for t in tokens.json()["items"]]
    second = await client.post("/api/v1/tokens", headers=team["eng"].headers, json={})
    second_headers = {"Authorization": f"Bearer {second.json()['token']}"}
    # Revoke the token in use with a different one of the same user.
    revoked = await client.delete(f"/api/v1/tokens/{token_id}", headers=second_headers)
    assert revoked.status_code == 204
    for path in ("/api/v1/me", "/api/v1/ai-sessions", "/api/v1/ai-sessions/queue"):
        response = await client.get(path, headers=team["eng"].headers)
        assert response.status_code == 401, path
    # Revoking twice is harmless.
    again = await client.delete(f"/api/v1/tokens/{token_id}", headers=second_headers)
    assert again.status_code == 204
