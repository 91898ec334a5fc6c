"""Signing in and out: the cookie, CSRF, no account enumeration, and the login throttle."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from lifeline import demo
from lifeline.accounts.models import Role
from lifeline.app import create_app
from lifeline.context import AppContext
from lifeline.web.auth import BAD_CREDENTIALS
from lifeline.web.throttle import LoginThrottle, MemoryAttempts, ThrottlePolicy
from tests.conftest import make_settings
from tests.support.factories import Factory
from tests.web.conftest import BrowserFactory, login_token


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def use_throttle(ctx: AppContext, clock: FakeClock, *, account: int = 5, address: int = 30) -> None:
    ctx.login_throttle = LoginThrottle(
        MemoryAttempts(clock=clock),
        account_policy=ThrottlePolicy(free_failures=account, base_delay_seconds=2.0),
        address_policy=ThrottlePolicy(free_failures=address, base_delay_seconds=2.0),
    )


async def test_sign_in_sets_an_http_only_same_site_cookie_and_opens_the_queue(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team(senior="admin")
    tab = await browser()
    response = await tab.sign_in(team["senior"].email.upper(), team["senior"].password)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("lifeline_session=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert "secure" not in flags  # the base URL is http here; see the https test below
    queue = await tab.page("/")
    assert queue.status_code == 200
    assert team["senior"].name in queue.text and "Team queue" in queue.text
    again = await tab.client.get("/login?next=/settings")
    assert again.status_code == 303 and again.headers["location"] == "/settings"


async def test_the_cookie_is_secure_when_the_app_is_served_over_https(database_url: str) -> None:
    app = create_app(make_settings(database_url, base_url="https://lifeline.example"))
    async with app.router.lifespan_context(app):
        team = await Factory(app.state.ctx.sessionmaker).team()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            token = login_token((await c.get("/login")).text)
            response = await c.post(
                "/login",
                data={
                    "email": team.owner.email,
                    "password": team.owner.password,
                    "csrf_token": token,
                },
            )
    assert response.status_code == 303
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("lifeline_session=")
    )
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_a_wrong_password_reads_exactly_like_an_unknown_email(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    tab = await browser()
    wrong = await tab.sign_in(team["senior"].email, "not the password")
    unknown = await tab.sign_in("nobody@nowhere.example", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert BAD_CREDENTIALS in wrong.text and BAD_CREDENTIALS in unknown.text
    # Apart from echoing the typed email back into the form, the pages are the same.
    assert wrong.text.replace(team["senior"].email, "E") == unknown.text.replace(
        "nobody@nowhere.example", "E"
    ).replace(login_token(unknown.text), login_token(wrong.text)).replace(
        _server_now(unknown.text), _server_now(wrong.text)
    )
    assert "lifeline_session" not in wrong.headers.get("set-cookie", "")


def _server_now(html: str) -> str:
    return html.split('data-server-now="', 1)[1].split('"', 1)[0]


async def test_a_soft_deleted_member_can_not_sign_in(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(gone="engineer")
    removed = await client.delete(f"/api/v1/users/{team['gone'].id}", headers=team.owner.headers)
    assert removed.status_code == 204
    tab = await browser()
    response = await tab.sign_in(team["gone"].email, team["gone"].password)
    assert response.status_code == 401 and BAD_CREDENTIALS in response.text


async def test_the_sign_in_form_is_refused_without_its_csrf_token(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team()
    tab = await browser()
    await tab.client.get("/login")
    bare = await tab.client.post(
        "/login", data={"email": team.owner.email, "password": team.owner.password}
    )
    assert bare.status_code == 403
    other = await browser()
    foreign_token = login_token((await other.client.get("/login")).text)
    swapped = await tab.client.post(
        "/login",
        data={
            "email": team.owner.email,
            "password": team.owner.password,
            "csrf_token": foreign_token,
        },
    )
    assert swapped.status_code == 403
    assert "lifeline_session" not in str(tab.client.cookies)


async def test_next_only_leads_to_a_page_of_this_site(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team()
    tab = await browser()
    response = await tab.sign_in(team.owner.email, team.owner.password, next_url="/settings")
    assert response.headers["location"] == "/settings"
    for hostile in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        tab = await browser()
        response = await tab.sign_in(team.owner.email, team.owner.password, next_url=hostile)
        assert response.headers["location"] == "/", hostile


async def test_pages_send_a_signed_out_visitor_to_sign_in_and_back(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team()
    tab = await browser()
    for path in ("/", "/sessions", "/sessions/abc", "/analytics", "/settings"):
        response = await tab.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login"), path
    response = await tab.client.get("/settings")
    assert response.headers["location"] == "/login?next=/settings"
    tab.client.cookies.set("lifeline_session", "forged.value")
    forged = await tab.client.post("/logout")
    assert forged.status_code == 303 and forged.headers["location"].startswith("/login")
    tab.client.cookies.delete("lifeline_session")
    signed = await tab.sign_in(team.owner.email, team.owner.password, next_url="/settings")
    assert signed.headers["location"] == "/settings"


async def test_sign_out_revokes_the_session_for_pages_and_the_api(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team()
    tab = await browser(team.owner)
    cookie = tab.client.cookies["lifeline_session"]
    assert (await tab.client.get("/api/v1/me")).status_code == 200

    refused = await tab.client.post("/logout")  # no CSRF token: a cross-site logout attempt
    assert refused.status_code == 403
    assert (await tab.client.get("/api/v1/me")).status_code == 200

    response = await tab.post("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    # Replaying the old cookie gets nowhere: the session itself is revoked, not just forgotten.
    replay = await browser()
    replay.client.cookies.set("lifeline_session", cookie)
    assert (await replay.client.get("/")).status_code == 303
    assert (await replay.client.get("/api/v1/me")).status_code == 401


async def test_the_cookie_works_on_the_json_api_with_the_csrf_header_for_writes(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team()
    tab = await browser(team.owner)
    me = await tab.client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["id"] == team.owner.id
    body = {"title": "From the browser"}
    without = await tab.client.post("/api/v1/ai-sessions", json=body)
    assert without.status_code == 403
    with_header = await tab.client.post(
        "/api/v1/ai-sessions", json=body, headers={"X-CSRF-Token": tab.csrf}
    )
    assert with_header.status_code == 201


async def test_failed_sign_ins_lock_the_account_with_doubling_backoff(
    browser: BrowserFactory, factory: Factory, ctx: AppContext
) -> None:
    clock = FakeClock()
    use_throttle(ctx, clock, account=3)
    team = await factory.team(senior="engineer")
    tab = await browser()
    email = team["senior"].email
    for _ in range(3):
        assert (await tab.sign_in(email, "wrong password")).status_code == 401
    locked = await tab.sign_in(email, "wrong password")
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "2"
    assert "Too many sign-in attempts" in locked.text
    # While locked, even the right password is turned away (and costs no hashing).
    right = await tab.sign_in(email, team["senior"].password)
    assert right.status_code == 429

    clock.now += 2.5
    again = await tab.sign_in(email, "wrong password")
    assert again.status_code == 429 and again.headers["retry-after"] == "4"
    clock.now += 4.5
    ok = await tab.sign_in(email, team["senior"].password)
    assert ok.status_code == 303
    # A success wipes the account's slate: the next mistake is a plain "incorrect" again.
    fresh = await browser()
    assert (await fresh.sign_in(email, "wrong password")).status_code == 401


async def test_an_unknown_email_is_locked_exactly_like_a_real_one(
    browser: BrowserFactory, factory: Factory, ctx: AppContext
) -> None:
    use_throttle(ctx, FakeClock(), account=2)
    team = await factory.team(senior="engineer")
    tab = await browser()
    answers = {}
    for email in (team["senior"].email, "ghost@nowhere.example"):
        answers[email] = [(await tab.sign_in(email, "wrong")).status_code for _ in range(4)]
    assert (
        answers[team["senior"].email]
        == answers["ghost@nowhere.example"]
        == [
            401,
            401,
            429,
            429,
        ]
    )


async def test_one_address_guessing_many_accounts_is_throttled(
    browser: BrowserFactory, factory: Factory, ctx: AppContext
) -> None:
    use_throttle(ctx, FakeClock(), account=50, address=4)
    team = await factory.team(senior="engineer")
    tab = await browser()
    codes = [
        (await tab.sign_in(f"guess{n}@nowhere.example", "wrong")).status_code for n in range(5)
    ]
    assert codes == [401, 401, 401, 401, 429]
    # The address is locked for every account, the real one included.
    blocked = await tab.sign_in(team["senior"].email, team["senior"].password)
    assert blocked.status_code == 429


async def test_an_empty_form_is_a_400_not_an_attempt(
    browser: BrowserFactory, app: FastAPI, ctx: AppContext
) -> None:
    use_throttle(ctx, FakeClock(), account=1, address=1)
    tab = await browser()
    for _ in range(3):
        token = login_token((await tab.client.get("/login")).text)
        response = await tab.client.post(
            "/login", data={"email": "", "password": "", "csrf_token": token}
        )
        assert response.status_code == 400
        assert "Enter your email and password." in response.text


async def test_the_sign_in_page_labels_its_fields(browser: BrowserFactory) -> None:
    tab = await browser()
    html = (await tab.client.get("/login")).text
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html
    assert ">Sign in</button>" in html


async def test_the_sign_in_page_speaks_to_people_and_lists_the_demo_logins_in_the_demo(
    client: httpx.AsyncClient, database_url: str
) -> None:
    plain = (await client.get("/login")).text
    assert "lifeline user create" not in plain and "--password" not in plain
    assert "Ask an admin of your team" in plain
    assert "Demo sign-ins" not in plain

    demo_app = create_app(make_settings(database_url, env="demo"))
    async with (
        demo_app.router.lifespan_context(demo_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=demo_app), base_url="http://testserver"
        ) as demo_client,
    ):
        page = (await demo_client.get("/login")).text
    assert "Demo sign-ins" in page and f"<code>{demo.DEMO_PASSWORD}</code>" in page
    for person in demo.PEOPLE:
        assert f"<code>{person.email}</code> · {person.name}" in page


async def test_a_browser_that_signed_in_before_is_not_locked_out_by_others_guessing(
    browser: BrowserFactory, factory: Factory, ctx: AppContext
) -> None:
    """OWASP's device cookies: failures from elsewhere lock the account for everyone else, not
    for the browser its owner signed in with before; that browser's own failures still count."""
    use_throttle(ctx, FakeClock(), account=3, address=4)
    team = await factory.team(senior="engineer")
    email, password = team["senior"].email, team["senior"].password
    mine = await browser()
    assert (await mine.sign_in(email, password)).status_code == 303
    assert any(c.name == "lifeline_device" for c in mine.client.cookies.jar)
    mine.client.cookies.delete("lifeline_session")  # signed out, the device cookie kept

    attacker = await browser()
    codes = [(await attacker.sign_in(email, "guess")).status_code for _ in range(5)]
    assert codes[-1] == 429
    # A stranger with the right password waits like the attacker (the address is locked too)...
    stranger = await browser()
    assert (await stranger.sign_in(email, password)).status_code == 429
    # ...but the owner's browser, from the very same address, signs in.
    assert (await mine.sign_in(email, password)).status_code == 303
    mine.client.cookies.delete("lifeline_session")

    # The device's own failures are throttled, on its own count.
    device_codes = [(await mine.sign_in(email, "oops")).status_code for _ in range(4)]
    assert device_codes == [401, 401, 401, 429]
    # A device cookie for another email, or a forged one, earns nothing.
    other = await factory.person(team, key="other", role=Role.ENGINEER)
    for _ in range(4):
        await attacker.sign_in(other.email, "guess")
    assert (await mine.sign_in(other.email, other.password)).status_code == 429
    forged = await browser()
    forged.client.cookies.set("lifeline_device", "forged.value", path="/login")
    assert (await forged.sign_in(email, password)).status_code == 429
