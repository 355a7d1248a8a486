"""The dashboard's files: GET / (the page, with the token rendered in only for `/?token=<valid>`) and
GET /dashboard/<file> (its script and style sheet, from a fixed list), with headers that keep the page from being
framed, cached or leaking the token through a Referer."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .api import POLICY, error

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
STATIC_FILES = {"app.js": "application/javascript", "style.css": "text/css"}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


async def dashboard(request: web.Request) -> web.Response:
    """GET /: the dashboard page, with the token rendered in only when the URL carried the right one."""
    policy = request.app[POLICY]
    offered = request.query.get("token")
    token = offered if offered and policy.authorized(f"Bearer {offered}") else ""
    state = "valid" if token else ("invalid" if offered else "none")
    page = (DASHBOARD_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{TOKEN}}", token).replace("{{TOKEN_STATE}}", state)
    return web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)


async def static(request: web.Request) -> web.Response:
    """GET /dashboard/<file>: the dashboard's script or style sheet (a fixed list, no directory access)."""
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise error(404, f"no dashboard file {name!r}")
    return web.Response(body=(DASHBOARD_DIR / name).read_bytes(), content_type=STATIC_FILES[name],
                        headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})
