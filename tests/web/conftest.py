"""Signed-in browsers over httpx: each person gets their own cookie jar on the same app."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI

from tests.support.factories import Person

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
LOGIN_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """An httpx client that behaves like one person's browser tab (cookies, form posts)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def sign_in(self, email: str, password: str, *, next_url: str = "/") -> httpx.Response:
        page = await self.client.get("/login")
        token = login_token(page.text)
        return await self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": token, "next": next_url},
        )

    async def page(self, url: str) -> httpx.Response:
        response = await self.client.get(url)
        found = CSRF_META.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    async def post(self, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        """A form post carrying this session's CSRF token, as the pages' forms do."""
        if not self.csrf:
            await self.page("/")
        return await self.client.post(url, data={"csrf_token": self.csrf, **(data or {})})


def login_token(html: str) -> str:
    found = LOGIN_TOKEN.search(html)
    assert found, "the sign-in form carries a CSRF token"
    return found.group(1)


BrowserFactory = Callable[..., Awaitable[Browser]]


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[BrowserFactory]:
    """``await browser(person)`` → a Browser signed in as that person (``None``: signed out)."""
    async with AsyncExitStack() as stack:

        async def make(person: Person | None = None) -> Browser:
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://testserver",
                    follow_redirects=False,
                )
            )
            tab = Browser(client)
            if person is not None:
                response = await tab.sign_in(person.email, person.password)
                assert response.status_code == 303, response.text
                await tab.page("/")
            return tab

        yield make
