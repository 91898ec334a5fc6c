"""The web app in a real headless Chromium against a real ``lifeline serve``.

Debian's ``chromium`` binary, driven by Playwright (never ``playwright install``). Locally
these tests skip when chromium is missing; under CI=true that is a failure.
Screenshots of the queue, a session page and analytics land in ``.artifacts/``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from lifeline.db import create_engine, create_sessionmaker
from lifeline.mailsink import MailSink
from tests.support.axe import serve_axe, violations
from tests.support.databases import IN_CI
from tests.support.factories import Factory, Person, Team
from tests.support.live import free_port, live_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Auto-waiting assertions: generous, because the machine may be busy; never a sleep.
expect.set_options(timeout=20_000)


def chromium_path() -> str:
    path = os.environ.get("LIFELINE_CHROMIUM") or shutil.which("chromium")
    if not path:
        if IN_CI:
            pytest.fail("chromium is not installed under CI: the browser tests must run there")
        pytest.skip("chromium not found (set LIFELINE_CHROMIUM or install Debian's chromium)")
    return path


@pytest.fixture
def chromium(live: Live) -> Iterator[Browser]:
    """A fresh Chromium per test, started once the server is up.

    Playwright's sync API keeps an event loop current in this thread, so it starts only after
    the fixtures that need ``asyncio.run`` (migrations, seeding) are done.
    """
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Live:
    base: str
    team: Team
    session: dict[str, Any]
    backend: str

    def api(self, person: Person) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=person.headers, timeout=10)


async def _seed(database_url: str) -> Team:
    engine = create_engine(database_url)
    try:
        factory = Factory(create_sessionmaker(engine))
        team = await factory.team(junior="engineer", senior="admin", riley="engineer", vic="viewer")
    finally:
        await engine.dispose()
    return team


@pytest.fixture
def live(database_url: str, backend: str, tmp_path: Path) -> Iterator[Live]:
    chromium_path()  # no browser, no server: skip (or fail under CI) before starting anything
    team = asyncio.run(_seed(database_url))
    with live_server(database_url, tmp_path) as base:
        with httpx.Client(base_url=base, headers=team["junior"].headers, timeout=10) as api:
            created = api.post(
                "/api/v1/ai-sessions",
                json={
                    "title": "Why does the cache return stale prices?",
                    "messages": [
                        {"role": "user", "content": "Prices update but the API serves old ones."},
                        {"role": "assistant", "content": "The invalidation fires before commit."},
                    ],
                },
            )
            assert created.status_code == 201, created.text
        yield Live(base=base, team=team, session=created.json(), backend=backend)


@dataclass
class Tab:
    """One person's browser window, collecting what would be a bug if it appeared."""

    context: BrowserContext
    page: Page
    problems: list[str]

    def assert_clean(self) -> None:
        assert self.problems == [], self.problems


def open_tab(chromium: Browser, **options: Any) -> Tab:
    context = chromium.new_context(**options)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return Tab(context, page, problems)


def sign_in(tab: Tab, base: str, person: Person, *, expect_path: str = "/") -> Page:
    page = tab.page
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(person.email)
    page.get_by_label("Password").fill(person.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}{expect_path}")
    return page


def wait_live(page: Page) -> None:
    """The page's event stream is connected (the indicator turns to Live)."""
    expect(page.locator("[data-live-status]")).to_have_text("Live")


def mark_no_reload(page: Page) -> None:
    page.evaluate("window.__noReload = 'still the same page'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__noReload") == "still the same page"


def screenshot(page: Page, name: str, backend: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{backend}.png"), full_page=True)


def test_the_magic_moment_escalate_appears_live_and_pick_up_tells_the_junior(
    live: Live, chromium: Browser
) -> None:
    team, sid = live.team, live.session["id"]
    senior = open_tab(chromium, viewport={"width": 1200, "height": 900})
    riley = open_tab(chromium, viewport={"width": 1000, "height": 800})
    junior = open_tab(chromium, viewport={"width": 390, "height": 844}, is_mobile=True)

    queue = sign_in(senior, live.base, team["senior"])
    # The other senior's page runs on a clock the test moves, so the moment between "picked
    # up by" and the card leaving is never a race with a busy machine.
    riley.page.clock.install()
    other_queue = sign_in(riley, live.base, team["riley"])
    expect(queue.locator("#queue-empty")).to_be_visible()
    for page in (queue, other_queue):
        wait_live(page)
        mark_no_reload(page)
    # From here the other senior's timers (a toast's and a leaving card's) wait for the test.
    other_queue.clock.pause_at(other_queue.evaluate("Date.now()") + 1000)
    queue.get_by_role("button", name="Sound: off · turn on").click()
    expect(queue.get_by_role("button", name="Sound: on · turn off")).to_have_attribute(
        "aria-pressed", "true"
    )

    session_page = sign_in(junior, live.base, team["junior"])
    session_page.goto(f"{live.base}/sessions/{sid}")
    expect(session_page.get_by_text("The invalidation fires before commit.")).to_be_visible()
    wait_live(session_page)
    mark_no_reload(session_page)
    # Escalating with nothing said is stopped in the form itself.
    session_page.get_by_role("button", name="Escalate").click()
    assert session_page.evaluate("document.getElementById('note').validity.valueMissing")
    session_page.get_by_label("What do you need from a human?").fill(
        "Stale prices after commit; need eyes"
    )
    session_page.get_by_role("button", name="Escalate").click()
    expect(session_page.get_by_text("Escalated. Your team has been told.")).to_be_visible()
    wait_live(session_page)
    mark_no_reload(session_page)

    # The senior's open queue shows it without a reload, with a toast.
    card = queue.locator(".queue-item", has_text="Why does the cache return stale prices?")
    expect(card).to_be_visible()
    expect(card).to_contain_text("Stale prices after commit; need eyes")
    expect(card).to_contain_text(team["junior"].name)
    expect(queue.locator(".toast")).to_contain_text("New escalation from")
    expect(queue.locator("#open-count")).to_have_text("1")
    assert_not_reloaded(queue)
    screenshot(queue, "queue", live.backend)

    other_card = other_queue.locator(".queue-item", has_text="Why does the cache")
    expect(other_card).to_be_visible()
    other_toast = other_queue.locator(".toast", has_text="Why does the cache")
    expect(other_toast).to_contain_text("New escalation from")

    # The senior picks it up.
    card.get_by_role("button", name="Pick Up").click()
    expect(queue).to_have_url(f"{live.base}/sessions/{sid}")
    expect(queue.get_by_role("button", name="Resolve")).to_be_visible()
    expect(queue.locator("#picked-up-by")).to_contain_text("You picked this up")

    # The other senior's card leaves, saying who has it.
    expect(other_card).to_contain_text(f"Picked up by {team['senior'].name}")
    # The toast about it no longer offers to open a card that is taken.
    expect(other_toast).to_contain_text(f"picked up by {team['senior'].name}")
    expect(other_toast.get_by_role("link", name="Open")).to_have_count(0)
    other_queue.clock.run_for(10_000)
    expect(other_card).to_have_count(0)
    expect(other_queue.locator("#claimed")).to_contain_text(team["senior"].name)
    assert_not_reloaded(other_queue)

    # The junior's page, never reloaded, says who picked it up; "your team has been told" is
    # history now.
    expect(session_page.locator("#picked-up-by")).to_contain_text(team["senior"].name)
    expect(session_page.locator(".toast")).to_contain_text(team["senior"].name)
    expect(session_page.get_by_text("Escalated. Your team has been told.")).to_have_count(0)
    assert_not_reloaded(session_page)

    # The claimer replies; it shows up live on the junior's page.
    queue.get_by_label(f"Reply to {team['junior'].name}").fill(
        "On it: the outbox publishes too early."
    )
    queue.get_by_role("button", name="Reply", exact=True).click()
    expect(
        session_page.locator("#transcript").get_by_text("On it: the outbox publishes too early.")
    ).to_be_visible()
    assert_not_reloaded(session_page)
    fits = session_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the session page fits a phone's width"
    screenshot(session_page, "session-phone", live.backend)
    screenshot(queue, "session", live.backend)

    # Resolved: the escalator is told live who resolved it, and only they may escalate again.
    queue.get_by_role("button", name="Resolve").click()
    expect(queue.locator("#resolved-by")).to_contain_text("Resolved by you")
    expect(queue.get_by_role("button", name="Escalate again")).to_have_count(0)
    expect(session_page.locator("#resolved-by")).to_contain_text(team["senior"].name)
    expect(session_page.locator(".toast", has_text="Resolved by")).to_contain_text(
        team["senior"].name
    )
    expect(session_page.get_by_role("button", name="Escalate again")).to_be_visible()
    assert_not_reloaded(session_page)
    screenshot(session_page, "session-resolved-phone", live.backend)
    for tab in (senior, riley, junior):
        tab.assert_clean()
        tab.context.close()


def test_losing_a_pick_up_race_shows_who_won_calmly(live: Live, chromium: Browser) -> None:
    team, sid = live.team, live.session["id"]
    with live.api(team["junior"]) as api:
        handoff = api.post(
            f"/api/v1/ai-sessions/{sid}/handoff", json={"intent": "escalate", "note": "help"}
        ).json()
    riley = open_tab(chromium)
    # A page that missed the live update (its stream blocked) still shows the card...
    riley.page.route("**/api/v1/events**", lambda route: route.abort())
    page = sign_in(riley, live.base, team["riley"])
    card = page.locator(".queue-item", has_text="Why does the cache")
    expect(card).to_be_visible()
    with live.api(team["senior"]) as api:
        won = api.post(f"/api/v1/ai-sessions/{sid}/handoffs/{handoff['id']}/claim")
        assert won.status_code == 200
    # ...and pressing Pick Up there names the winner instead of failing loudly.
    card.get_by_role("button", name="Pick Up").click()
    expect(card).to_contain_text(f"Already picked up by {team['senior'].name}")
    expect(page).to_have_url(f"{live.base}/")
    expect(card).to_have_count(0)
    assert [p for p in riley.problems if "script error" in p] == []
    riley.context.close()


def test_a_viewer_has_no_pick_up_and_forged_posts_are_refused(
    live: Live, chromium: Browser
) -> None:
    team, sid = live.team, live.session["id"]
    with live.api(team["junior"]) as api:
        handoff = api.post(
            f"/api/v1/ai-sessions/{sid}/handoff", json={"intent": "escalate", "note": "help"}
        ).json()
    vic = open_tab(chromium)
    page = sign_in(vic, live.base, team["vic"])
    card = page.locator(".queue-item", has_text="Why does the cache")
    expect(card).to_be_visible()
    expect(card.get_by_role("button", name="Pick Up")).to_have_count(0)
    page.goto(f"{live.base}/sessions/{sid}")
    expect(
        page.get_by_role("heading", name="Why does the cache return stale prices?")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Pick Up")).to_have_count(0)

    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    forged = page.request.post(
        f"{live.base}/sessions/{sid}/handoffs/{handoff['id']}/claim",
        form={"csrf_token": csrf},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "Engineer or admin access required" in forged.text()
    via_api = page.evaluate(
        """async ([url, token]) => {
            const r = await fetch(url, {method: "POST", headers: {"X-CSRF-Token": token}});
            return [r.status, (await r.json()).detail];
        }""",
        [f"/api/v1/ai-sessions/{sid}/handoffs/{handoff['id']}/claim", csrf],
    )
    assert via_api == [403, "Engineer or admin access required"]
    with live.api(team.owner) as api:
        assert api.get(f"/api/v1/ai-sessions/{sid}/handoffs").json()["items"][0]["status"] == "open"
    vic.assert_clean()
    vic.context.close()


def test_posts_without_the_csrf_token_or_from_another_site_change_nothing(
    live: Live, chromium: Browser
) -> None:
    team, sid = live.team, live.session["id"]
    junior = open_tab(chromium)
    page = sign_in(junior, live.base, team["junior"])
    bare = page.request.post(
        f"{live.base}/sessions/{sid}/handoff",
        form={"intent": "escalate", "note": "no token"},
        max_redirects=0,
    )
    assert bare.status == 403 and "CSRF" in bare.text()
    api_without = page.evaluate(
        """async (url) => (await fetch(url, {method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({intent: "escalate", note: "x"})})).status""",
        f"/api/v1/ai-sessions/{sid}/handoff",
    )
    assert api_without == 403

    # A page on another origin posting a form at Lifeline: the Lax cookie stays home.
    attacker = junior.context.new_page()
    attacker.set_content(
        f'<form method="post" action="{live.base}/sessions/{sid}/handoff">'
        '<input name="intent" value="escalate"><input name="note" value="forged">'
        '<button id="go">go</button></form>'
    )
    with attacker.expect_navigation():
        attacker.click("#go")
    # Sent without the cookie, the post is just a visitor's: off to sign in, nothing done.
    assert attacker.url.startswith(live.base)
    assert "/sessions/" not in attacker.url
    assert "Escalated" not in attacker.content()
    with live.api(team.owner) as api:
        assert api.get(f"/api/v1/ai-sessions/{sid}/handoffs").json()["items"] == []
    junior.context.close()


def test_a_wrong_password_reads_like_an_unknown_email_and_guessing_is_throttled(
    live: Live, chromium: Browser
) -> None:
    team = live.team
    tab = open_tab(chromium)
    page = tab.page

    def attempt(email: str, password: str) -> str:
        page.goto(f"{live.base}/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        error = page.locator("#login-error")
        expect(error).to_be_visible()
        return error.inner_text()

    unknown = attempt("nobody@nowhere.example", "whatever-it-is")
    wrong = attempt(team["riley"].email, "whatever-it-is")
    assert unknown == wrong == "Email or password is incorrect."
    messages = [attempt(team["riley"].email, "still wrong") for _ in range(5)]
    assert messages[:4] == ["Email or password is incorrect."] * 4
    assert re.fullmatch(r"Too many sign-in attempts\. Try again in \d+ seconds\.", messages[4])
    # Locked: even the right password waits its turn.
    assert attempt(team["riley"].email, team["riley"].password).startswith("Too many")
    tab.assert_clean()
    tab.context.close()


def test_signing_out_closes_the_live_stream_of_that_session(live: Live, chromium: Browser) -> None:
    tab = open_tab(chromium)
    queue = sign_in(tab, live.base, live.team["senior"])
    wait_live(queue)
    other = tab.context.new_page()
    other.goto(f"{live.base}/settings")
    other.get_by_role("button", name="Sign out").click()
    expect(other.get_by_text("You are signed out.")).to_be_visible()
    # The first tab's stream is dropped by the server and can't come back with that cookie.
    expect(queue.locator("[data-live-status]")).to_have_text("Signed out")
    queue.reload()
    expect(queue).to_have_url(re.compile(r"/login"))
    tab.context.close()


def test_analytics_draws_its_charts(live: Live, chromium: Browser) -> None:
    team, sid = live.team, live.session["id"]
    with live.api(team["junior"]) as api:
        handoff = api.post(
            f"/api/v1/ai-sessions/{sid}/handoff", json={"intent": "escalate", "note": "help"}
        ).json()
    with live.api(team["senior"]) as api:
        api.post(f"/api/v1/ai-sessions/{sid}/handoffs/{handoff['id']}/claim").raise_for_status()
    tab = open_tab(chromium, viewport={"width": 1200, "height": 900})
    page = sign_in(tab, live.base, team["senior"])
    page.goto(f"{live.base}/analytics?days=7&tz=UTC")
    expect(page.get_by_role("heading", name="Escalations per day")).to_be_visible()
    expect(page.locator("svg.chart")).to_have_count(2)
    expect(page.locator("svg.chart rect.bar.escalations")).to_have_count(1)
    expect(page.locator("#by-claimer")).to_contain_text(team["senior"].name)
    expect(page.get_by_role("link", name="Download CSV")).to_be_visible()
    screenshot(page, "analytics", live.backend)
    tab.assert_clean()
    tab.context.close()


# ---- every page: contrast and the rest of WCAG AA (axe-core), light and dark, desktop and phone


@pytest.fixture
def live_with_mail(database_url: str, backend: str, tmp_path: Path) -> Iterator[Live]:
    """A server whose emails land in the demo's mail sink, so /demo/mail has something to show."""
    chromium_path()
    team = asyncio.run(_seed(database_url))
    mail_dir = tmp_path / "mail"
    sink = MailSink(directory=mail_dir, host="127.0.0.1", port=free_port())
    sink.start()
    try:
        with live_server(
            database_url,
            tmp_path,
            LIFELINE_SMTP_HOST="127.0.0.1",
            LIFELINE_SMTP_PORT=str(sink.controller.port),
            LIFELINE_MAIL_SINK_DIR=str(mail_dir),
            LIFELINE_ENV="demo",
        ) as base:
            yield Live(base=base, team=team, session={}, backend=backend)
    finally:
        sink.stop()


@pytest.fixture
def chromium_for_mail(live_with_mail: Live) -> Iterator[Browser]:
    path = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _session_in_each_state(live: Live) -> dict[str, str]:
    """Sessions waiting, picked up, resolved and parked, with a transcript and deliveries."""
    team = live.team
    made: dict[str, str] = {}
    with live.api(team["junior"]) as junior, live.api(team["senior"]) as senior:
        for state in ("waiting", "picked-up", "resolved", "parked"):
            sid = junior.post(
                "/api/v1/ai-sessions",
                json={
                    "title": f"A session {state}",
                    "messages": [
                        {"role": "user", "content": "The cache serves stale prices."},
                        {"role": "assistant", "content": "The invalidation fires too early."},
                    ],
                },
            ).json()["id"]
            intent = "park" if state == "parked" else "escalate"
            handoff = junior.post(
                f"/api/v1/ai-sessions/{sid}/handoff", json={"intent": intent, "note": "Help?"}
            ).json()
            base = f"/api/v1/ai-sessions/{sid}/handoffs/{handoff['id']}"
            if state in ("picked-up", "resolved"):
                senior.post(f"{base}/claim").raise_for_status()
                senior.post(f"/api/v1/ai-sessions/{sid}/messages", json={"content": "On it."})
            if state == "resolved":
                senior.post(f"{base}/resolve").raise_for_status()
            made[state] = sid
    return made


PAGES_BY_PERSON = {
    "junior": ["/", "/sessions", "/settings", "/analytics?days=7&tz=UTC", "/no/such/page"],
    "senior": ["/", "/sessions", "/settings", "/demo/mail"],
    "vic": ["/", "/sessions", "/settings"],
}


@pytest.mark.parametrize(
    ("scheme", "width"), [("light", 1200), ("dark", 1200), ("light", 390)], ids=str
)
def test_every_page_meets_wcag_aa_contrast_included(
    live_with_mail: Live, chromium_for_mail: Browser, scheme: str, width: int
) -> None:
    live = live_with_mail
    sessions = _session_in_each_state(live)
    pages = {
        person: [(path.split("?")[0].strip("/") or "queue", path) for path in paths]
        for person, paths in PAGES_BY_PERSON.items()
    }
    pages["junior"] += [(f"session-{s}", f"/sessions/{sid}") for s, sid in sessions.items()]
    pages["senior"] += [
        (f"session-{s}", f"/sessions/{sessions[s]}") for s in ("waiting", "picked-up")
    ]
    pages["vic"].append(("session-waiting", f"/sessions/{sessions['waiting']}"))
    phone = width < 500
    found: dict[str, list[str]] = {}

    # Reduced motion: nothing is caught half-faded by an animation while axe measures it.
    signed_out = open_tab(
        chromium_for_mail,
        viewport={"width": width, "height": 900},
        color_scheme=scheme,
        reduced_motion="reduce",
    )
    serve_axe(signed_out.context, live.base)
    signed_out.page.goto(f"{live.base}/login")
    found["login"] = violations(signed_out.page, live.base)
    signed_out.context.close()

    for person, paths in pages.items():
        tab = open_tab(
            chromium_for_mail,
            viewport={"width": width, "height": 900},
            color_scheme=scheme,
            reduced_motion="reduce",
            is_mobile=phone,
        )
        serve_axe(tab.context, live.base)
        page = sign_in(tab, live.base, live.team[person])
        for label, path in paths:
            page.goto(f"{live.base}{path}")
            if path.startswith("/sessions/") or path == "/":
                wait_live(page)
            page.locator("details").evaluate_all("all => all.forEach(d => d.open = true)")
            found[f"{person} {path}"] = violations(page, live.base)
            name = re.sub(r"[^a-z0-9]+", "-", label)
            screenshot(page, f"a11y-{person}-{name}-{scheme}-{width}", live.backend)
            if phone:
                fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
                assert fits, f"{person} {path} is wider than a phone"
        tab.assert_clean()
        tab.context.close()
    failing = [f"{page}: {problem}" for page, problems in found.items() for problem in problems]
    assert failing == [], "\n".join(failing)


def test_on_a_phone_the_top_bar_is_one_row_with_a_menu_and_charts_stay_readable(
    live: Live, chromium: Browser
) -> None:
    team, sid = live.team, live.session["id"]
    with live.api(team["junior"]) as api:
        handoff = api.post(
            f"/api/v1/ai-sessions/{sid}/handoff", json={"intent": "escalate", "note": "help"}
        ).json()
    with live.api(team["senior"]) as api:
        api.post(f"/api/v1/ai-sessions/{sid}/handoffs/{handoff['id']}/claim").raise_for_status()
    tab = open_tab(
        chromium, viewport={"width": 390, "height": 844}, is_mobile=True, timezone_id="Asia/Tokyo"
    )
    page = sign_in(tab, live.base, team.owner)
    bar = page.locator("header.topbar")
    assert bar.bounding_box()["height"] <= 64  # type: ignore[index]
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    menu = page.get_by_role("button", name="Menu")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    nav.get_by_role("link", name="Settings").click()
    expect(page).to_have_url(f"{live.base}/settings")
    # The team stacks as cards instead of pushing columns off the screen.
    expect(page.locator("table.members")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "settings-phone", live.backend)

    page.goto(f"{live.base}/sessions/{sid}")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Times read relative, with the exact time in the browser's own zone as the tooltip.
    stamp = page.locator("#transcript time[data-when]").first
    expect(stamp).to_have_text(re.compile(r"just now|\d+s ago|\d+m ago"))
    assert "GMT+9" in (stamp.get_attribute("title") or "")

    page.goto(f"{live.base}/analytics?days=7&tz=UTC")
    sizes = page.locator("svg.chart text.tick").evaluate_all(
        "all => all.map(t => t.getBoundingClientRect().height)"
    )
    assert sizes and min(sizes) >= 11, sizes
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "analytics-phone", live.backend)
    tab.assert_clean()
    tab.context.close()


def test_the_api_docs_render_offline_under_the_pages_csp(live: Live, chromium: Browser) -> None:
    """Swagger UI and ReDoc come from the app itself, under the pages' CSP: nothing is fetched
    from anywhere else (ReDoc's hard-coded Redocly logo is blocked, as it should be)."""
    outside: list[str] = []

    def watch(tab: Tab) -> Tab:
        tab.page.on(
            "response",
            lambda response: (
                outside.append(response.url) if not response.url.startswith(live.base) else None
            ),
        )
        return tab

    swagger = watch(open_tab(chromium))
    swagger.page.goto(f"{live.base}/docs")
    expect(swagger.page.locator(".swagger-ui .info .title")).to_contain_text("Lifeline")
    expect(swagger.page.locator(".opblock-tag").first).to_be_visible()
    swagger.assert_clean()

    redoc = watch(open_tab(chromium))
    redoc.page.goto(f"{live.base}/redoc")
    expect(redoc.page.locator("#redoc h1")).to_contain_text("Lifeline")
    expect(redoc.page.get_by_text("Pick Up an escalation").first).to_be_attached()
    assert outside == []
