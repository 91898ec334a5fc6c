"""The pages and the buttons behind them, over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import httpx

from lifeline.context import AppContext
from tests.support.factories import Factory, escalate, new_session
from tests.web.conftest import BrowserFactory


def pick_up_buttons(html: str) -> int:
    return html.count(">Pick Up</button>")


async def handoff_status(client: httpx.AsyncClient, headers: dict[str, str], sid: str) -> str:
    history = await client.get(f"/api/v1/ai-sessions/{sid}/handoffs", headers=headers)
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    return str(items[0]["status"]) if items else "none"


async def test_the_queue_lists_open_escalations_oldest_first_with_who_and_why(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    first = await new_session(client, team["junior"], title="Deadlock in payments")
    second = await new_session(client, team["junior"], title="Flaky <script>alert(1)</script>")
    await escalate(client, team["junior"], first["id"], note="tried lock ordering")
    await escalate(client, team["junior"], second["id"], note="no idea")
    quiet = await new_session(client, team["junior"], title="Parked privately")
    await escalate(client, team["junior"], quiet["id"], note="later", intent="park")

    tab = await browser(team["senior"])
    html = (await tab.page("/")).text
    assert html.index("Deadlock in payments") < html.index("Flaky &lt;script&gt;")
    assert "<script>alert(1)</script>" not in html  # titles are escaped
    assert "tried lock ordering" in html and team["junior"].name in html
    assert "Parked privately" not in html
    assert pick_up_buttons(html) == 2
    assert re.search(r'<time class="age" datetime="[^"]+" data-since="[^"]+">\d+s</time>', html)

    own = (await (await browser(team["junior"])).page("/")).text
    assert pick_up_buttons(own) == 0 and own.count("Your escalation") == 2


async def test_a_viewer_sees_no_pick_up_and_a_forged_pick_up_is_refused(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", vic="viewer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    vic = await browser(team["vic"])
    queue = (await vic.page("/")).text
    assert session["title"] in queue and pick_up_buttons(queue) == 0
    page = (await vic.page(f"/sessions/{session['id']}")).text
    assert pick_up_buttons(page) == 0 and ">Escalate</button>" not in page

    forged = await vic.post(f"/sessions/{session['id']}/handoffs/{handoff['id']}/claim")
    assert forged.status_code == 403
    assert "Engineer or admin access required" in forged.text
    assert await handoff_status(client, team.owner.headers, session["id"]) == "open"
    via_api = await vic.client.post(
        f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim",
        headers={"X-CSRF-Token": vic.csrf},
    )
    assert via_api.status_code == 403
    assert via_api.json()["detail"] == "Engineer or admin access required"


async def test_a_form_post_without_the_csrf_token_changes_nothing(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    junior = await browser(team["junior"])
    bare = await junior.client.post(
        f"/sessions/{session['id']}/handoff", data={"intent": "escalate", "note": "x"}
    )
    assert bare.status_code == 403 and "CSRF" in bare.text
    senior = await browser(team["senior"])
    stolen = await junior.client.post(
        f"/sessions/{session['id']}/handoff",
        data={"intent": "escalate", "note": "x", "csrf_token": senior.csrf},
    )
    assert stolen.status_code == 403
    assert await handoff_status(client, team.owner.headers, session["id"]) == "none"


async def test_escalate_from_the_session_page_then_pick_up_from_the_queue(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient, ctx: AppContext
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"], title="Cache serves stale prices")
    junior = await browser(team["junior"])
    page = (await junior.page(f"/sessions/{session['id']}")).text
    assert ">Escalate</button>" in page and ">Park</button>" in page
    assert "The migration deadlocks on CI." in page  # the transcript

    sent = await junior.post(
        f"/sessions/{session['id']}/handoff", {"intent": "escalate", "note": "need eyes"}
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/sessions/{session['id']}"
    after = (await junior.page(sent.headers["location"])).text
    assert "Escalated. Your team has been told." in after
    assert "waiting for someone to pick it up" in after and ">Escalate</button>" not in after

    senior = await browser(team["senior"])
    queue = (await senior.page("/")).text
    action = re.search(r'action="(/sessions/[^"]+/claim)"', queue)
    assert action is not None
    claimed = await senior.post(action.group(1), {"back": "/"})
    assert claimed.status_code == 303
    assert claimed.headers["location"] == f"/sessions/{session['id']}"
    mine = (await senior.page(claimed.headers["location"])).text
    assert "You picked this up." in mine
    assert ">Resolve</button>" in mine and ">Release</button>" in mine

    await ctx.tasks.drain()
    told = (await junior.page(f"/sessions/{session['id']}")).text
    assert f"Picked up by <strong>{team['senior'].name}</strong>" in told
    assert "Who was told" in told  # the escalator sees the delivery records


async def test_losing_the_pick_up_race_names_the_winner_calmly(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", sam="admin", riley="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    sam, riley = await browser(team["sam"]), await browser(team["riley"])
    url = f"/sessions/{session['id']}/handoffs/{handoff['id']}/claim"
    assert (await sam.post(url, {"back": "/"})).status_code == 303
    late = await riley.post(url, {"back": "/"})
    assert late.status_code == 303 and late.headers["location"] == "/"
    queue = (await riley.page("/")).text
    assert f"Already picked up by {team['sam'].name}" in queue
    assert session["title"] in queue  # now under "Picked up", with the claimer
    assert pick_up_buttons(queue) == 0


async def test_release_and_resolve_for_the_claimer(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    senior = await browser(team["senior"])
    base = f"/sessions/{session['id']}/handoffs/{handoff['id']}"
    await senior.post(f"{base}/claim")
    released = await senior.post(f"{base}/release")
    assert released.status_code == 303
    assert await handoff_status(client, team.owner.headers, session["id"]) == "open"
    await senior.post(f"{base}/claim")
    # The escalator can't resolve someone else's pick-up; the claimer can.
    junior = await browser(team["junior"])
    refused = await junior.post(f"{base}/resolve")
    assert refused.status_code == 403
    assert (await senior.post(f"{base}/resolve")).status_code == 303
    assert await handoff_status(client, team.owner.headers, session["id"]) == "resolved"
    assert (await senior.post(f"{base}/teleport")).status_code == 404


async def test_park_shows_in_my_sessions_with_resume(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"], title="Refactor the middleware")
    junior = await browser(team["junior"])
    parked = await junior.post(
        f"/sessions/{session['id']}/handoff", {"intent": "park", "note": "after the release"}
    )
    assert parked.status_code == 303
    mine = (await junior.page("/sessions")).text
    assert "Refactor the middleware" in mine and ">Resume</button>" in mine
    only_parked = (await junior.page("/sessions?status=parked")).text
    assert "Refactor the middleware" in only_parked
    assert "Refactor the middleware" not in (await junior.page("/sessions?status=active")).text
    # A park is private: the senior's queue doesn't show it.
    assert "Refactor the middleware" not in (await (await browser(team["senior"])).page("/")).text

    resumed = await junior.post(f"/sessions/{session['id']}/resume", {"back": "/sessions"})
    assert resumed.status_code == 303
    read = await client.get(f"/api/v1/ai-sessions/{session['id']}", headers=team["junior"].headers)
    assert read.json()["status"] == "active"
    again = await junior.post(f"/sessions/{session['id']}/resume", {"back": "/sessions"})
    assert again.headers["location"] == "/sessions"


async def test_start_a_session_and_add_to_its_transcript(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer")
    junior = await browser(team["junior"])
    started = await junior.post("/sessions", {"title": "New one", "message": "First words"})
    assert started.status_code == 303
    url = started.headers["location"]
    note = await junior.post(f"{url}/messages", {"content": "Second words"})
    assert note.status_code == 303
    page = (await junior.page(url)).text
    assert page.index("First words") < page.index("Second words")
    blank = await junior.post("/sessions", {"title": ""})
    assert blank.status_code == 422 and "title" in blank.text


async def test_foreign_and_unknown_sessions_are_404_pages(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    ours = await factory.team(junior="engineer")
    theirs = await factory.team(other="engineer")
    foreign = await new_session(client, theirs["other"])
    handoff = await escalate(client, theirs["other"], foreign["id"])
    tab = await browser(ours["junior"])
    for path in (f"/sessions/{foreign['id']}", "/sessions/00000000-0000-0000-0000-000000000000"):
        response = await tab.page(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert foreign["title"] not in response.text
    claim = await tab.post(f"/sessions/{foreign['id']}/handoffs/{handoff['id']}/claim")
    assert claim.status_code == 404
    assert await handoff_status(client, theirs.owner.headers, foreign["id"]) == "open"


async def test_delivery_records_are_for_the_escalator_and_admins_only(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient, ctx: AppContext
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", lead="admin")
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()
    path = f"/sessions/{session['id']}"
    for key, sees in (("junior", True), ("lead", True), ("senior", False)):
        html = (await (await browser(team[key])).page(path)).text
        assert ("Who was told" in html) is sees, key
    lead = (await (await browser(team["lead"])).page(path)).text
    # No SMTP server in tests: each email row says why it was not sent.
    assert "no SMTP server configured" in lead
    assert team["senior"].name in lead and "live push" in lead


async def test_security_headers_and_no_inline_code_on_pages(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    tab = await browser(team.owner)
    for path in ("/", "/sessions", f"/sessions/{session['id']}", "/analytics", "/settings"):
        response = await tab.page(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        html = response.text
        # What the CSP would block must not be there to begin with.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\sstyle=", html), path
        assert not re.search(r"\son[a-z]+=", html), path
        for form in re.findall(r'<form method="post".*?</form>', html, flags=re.S):
            assert 'name="csrf_token"' in form, f"{path}: a post form without its CSRF token"
        ids = re.findall(r'\sid="([^"]+)"', html)
        assert len(ids) == len(set(ids)), f"{path}: duplicate ids break labels"
    login = await (await browser()).client.get("/login")
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
    api = await client.get("/api/v1/me", headers=team.owner.headers)
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    # The API docs too: their assets are the app's own, started from files.
    docs = await client.get("/docs")
    assert docs.headers["content-security-policy"] == login.headers["content-security-policy"]
    redoc = await client.get("/redoc")
    assert "style-src 'self' 'nonce-" in redoc.headers["content-security-policy"]
    assert "script-src 'self';" in redoc.headers["content-security-policy"]
    for page in (docs, redoc):
        assert "http://" not in page.text and "https://" not in page.text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
            fetched = await client.get(asset)
            assert fetched.status_code == 200, asset


async def test_static_assets_are_served_by_the_app(browser: BrowserFactory) -> None:
    tab = await browser()
    html = (await tab.client.get("/login")).text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        response = await tab.client.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "http://" not in html.replace("http://testserver", "") and "https://" not in html


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_head_answers_like_get_without_a_body(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    tab = await browser(team["junior"])
    visitor = await browser()
    for client, path in ((tab, "/"), (tab, "/sessions"), (tab, "/settings"), (visitor, "/login")):
        got = await client.client.get(path)
        head = await client.client.head(path)
        assert got.status_code == 200, path
        assert head.status_code == got.status_code, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-security-policy"] == got.headers["content-security-policy"]
    signed_out = await visitor.client.head("/")
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/login"


async def test_browsers_get_error_pages_with_the_navigation_and_the_api_gets_json(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer")
    tab = await browser(team["junior"])
    for path in ("/no/such/page", "/sessions/00000000-0000-0000-0000-000000000000"):
        response = await tab.client.get(path, headers=HTML)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        assert '<nav class="nav"' in page and ">My sessions</a>" in page, path
        assert team["junior"].name in page and "Sign out" in page
        assert '{"detail"' not in page
    wrong_method = await tab.client.get("/logout", headers=HTML)
    assert wrong_method.status_code == 405 and '<nav class="nav"' in wrong_method.text
    signed_out = await client.get("/no/such/page", headers=HTML)
    assert signed_out.status_code == 404 and "Not found" in signed_out.text
    assert '<nav class="nav"' not in signed_out.text
    api = await client.get("/api/v1/nothing-here", headers=HTML)
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    scripted = await tab.client.get("/no/such/page", headers={"Accept": "application/json"})
    assert scripted.json() == {"detail": "Not Found"}


async def test_an_escalation_without_a_question_is_refused_with_a_reason(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    junior = await browser(team["junior"])
    page = (await junior.page(f"/sessions/{session['id']}")).text
    assert re.search(r'<label for="note">What do you need from a human\?</label>', page)
    assert re.search(r'<textarea id="note" name="note"[^>]* required', page)
    assert re.search(r'value="park" formnovalidate', page)  # a park needs no question
    for note in ("", "   \n "):
        sent = await junior.post(
            f"/sessions/{session['id']}/handoff", {"intent": "escalate", "note": note}
        )
        assert sent.status_code == 303
        shown = (await junior.page(sent.headers["location"])).text
        assert "Say what you need from a human before escalating." in shown
    assert await handoff_status(client, team.owner.headers, session["id"]) == "none"
    parked = await junior.post(f"/sessions/{session['id']}/handoff", {"intent": "park"})
    assert parked.status_code == 303
    assert await handoff_status(client, team["junior"].headers, session["id"]) == "open"


async def test_after_resolve_the_page_says_who_and_only_the_creator_may_escalate_again(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"], title="Resolved one")
    handoff = await escalate(client, team["junior"], session["id"])
    senior = await browser(team["senior"])
    base = f"/sessions/{session['id']}/handoffs/{handoff['id']}"
    await senior.post(f"{base}/claim")
    mine = (await senior.page(f"/sessions/{session['id']}")).text
    assert "You picked this up" in mine and "Picked up by" not in mine
    assert ">Picked up</span>" in mine  # the state's badge, in the button's words
    assert ">claimed<" not in mine
    await senior.post(f"{base}/resolve")

    resolver = (await senior.page(f"/sessions/{session['id']}")).text
    assert re.search(r"Resolved by <strong>you</strong> <time[^>]*data-ago", resolver)
    assert "Escalate again" not in resolver and ">Park</button>" not in resolver
    assert ">Escalate</button>" not in resolver
    creator = (await (await browser(team["junior"])).page(f"/sessions/{session['id']}")).text
    assert f"Resolved by <strong>{team['senior'].name}</strong>" in creator
    assert ">Escalate again</button>" in creator


async def test_my_sessions_start_first_filters_by_named_states_and_pages(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", vic="viewer")
    for n in range(23):
        await new_session(client, team["junior"], title=f"Session number {n}")
    junior = await browser(team["junior"])
    page = (await junior.page("/sessions")).text
    assert page.index("Start a session") < page.index("Session number")
    assert page.count('class="card stripe-active"') == 20
    assert ">Picked up</a>" in page and ">claimed</a>" not in page
    more = re.search(r'href="(/sessions\?cursor=[^"]+)" rel="next"', page)
    assert more is not None
    rest = (await junior.page(more.group(1).replace("&amp;", "&"))).text
    assert rest.count('class="card stripe-active"') == 3
    assert re.search(
        r'<time datetime="[^"]+" data-when title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">', page
    )

    viewer = (await (await browser(team["vic"])).page("/sessions")).text
    assert "Start a session" not in viewer and 'action="/sessions"' not in viewer
    assert "As a viewer you can follow" in viewer


async def test_viewers_are_not_offered_an_email_preference(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team(vic="viewer", eng="engineer")
    viewer = (await (await browser(team["vic"])).page("/settings")).text
    assert 'name="email_notifications"' not in viewer
    assert "never notified" in viewer
    engineer = (await (await browser(team["eng"])).page("/settings")).text
    assert 'name="email_notifications"' in engineer
