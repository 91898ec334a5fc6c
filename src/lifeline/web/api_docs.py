"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served from this app, under the pages' CSP.

Their bundles come from the pinned ``fastapi-offline`` package (mounted at ``/docs/assets``),
not from a CDN: no third party sees who reads the docs, the versions are fixed, and the docs
work offline. Each page starts its viewer from a file in ``/static/docs``: no inline script.
"""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from lifeline.web.headers import PAGE_CSP

ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(str(resources.files("fastapi_offline").joinpath("static")))

router = APIRouter(include_in_schema=False)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" href="/static/favicon.svg">
  {head}
</head>
<body>
  {body}
</body>
</html>
"""


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(
            title="Lifeline API · Swagger UI",
            head=f'<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">',
            body=f'<div id="swagger-ui"></div>\n'
            f'  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>\n'
            '  <script src="/static/docs/swagger-init.js"></script>',
        )
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc() -> HTMLResponse:
    # ReDoc styles itself with <style> elements it creates (styled-components): the pages'
    # CSP, with those elements let in by a per-response nonce ReDoc puts on each of them.
    nonce = secrets.token_urlsafe(18)
    csp = PAGE_CSP.replace("style-src 'self'", f"style-src 'self' 'nonce-{nonce}'")
    return HTMLResponse(
        _PAGE.format(
            title="Lifeline API · ReDoc",
            head="",
            body=f'<div id="redoc" data-nonce="{nonce}"></div>\n'
            f'  <script src="{ASSETS_PATH}/redoc.standalone.js"></script>\n'
            '  <script src="/static/docs/redoc-init.js"></script>',
        ),
        headers={"Content-Security-Policy": csp},
    )


def install(app: FastAPI) -> None:
    """The two pages and their vendored assets (the app is built with docs_url=None)."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
