"""axe-core in the browser tests: the engine's own script, served from this machine.

``axe.min.js`` comes from the ``axe-playwright-python`` package (pinned in pyproject.toml), so a
fresh clone has it after ``make venv``. The page fetches it from its own origin (a Playwright
route fulfils that URL), so the pages' CSP (``script-src 'self'``) stays as strict as in
production and nothing is loaded from the network.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from typing import Any

from playwright.sync_api import BrowserContext, Page

AXE_PATH = "/__test__/axe.min.js"
# WCAG 2.x A and AA: contrast (4.5:1, 3:1 for large text) among them.
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@cache
def axe_source() -> str:
    script = importlib.resources.files("axe_playwright_python") / "axe.min.js"
    return script.read_text(encoding="utf-8")


def serve_axe(context: BrowserContext, base: str) -> None:
    """Answer ``base + AXE_PATH`` with axe-core's script, in every page of ``context``."""
    context.route(
        f"{base}{AXE_PATH}",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=axe_source()),
    )


def violations(page: Page, base: str, *, tags: list[str] | None = None) -> list[str]:
    """axe-core's findings on the page as it is now, one readable line per failing node."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=f"{base}{AXE_PATH}")
    result: dict[str, Any] = page.evaluate(
        """async (tags) => await axe.run(document, {
            runOnly: {type: "tag", values: tags},
            resultTypes: ["violations"],
        })""",
        tags or WCAG_AA,
    )
    found = []
    for rule in result["violations"]:
        for node in rule["nodes"]:
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            found.append(f"{rule['id']}: {' '.join(node['target'])}: {summary}")
    return found
