"""`cllm.dashboard` end to end (pytest-lsp): the language server starts a folder's HTTP face on a free loopback
port in its own event loop and answers with the dashboard link, whose token opens the token-only endpoints."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp

from lsp_helpers import execute, lsp_session, model_folder


async def fetch(session: aiohttp.ClientSession, url: str, token: str | None = None) -> tuple[int, str]:
    """Status code and the first bytes of a GET (enough to see an SSE stream begin without waiting for more)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with session.get(url, headers=headers) as response:
        return response.status, (await response.content.read(200)).decode()


async def test_dashboard_command_serves_the_folder_over_http(tmp_path: Path, tiny_model_path: Path):
    root, other = tmp_path / "ws", tmp_path / "other"
    root.mkdir()
    other.mkdir()
    folder = model_folder(tmp_path, tiny_model_path)
    async with lsp_session(root, {"modelDir": str(folder)}, tmp_path / "cache", extra_folders=(other,)) as client:
        first = await execute(client, "cllm.dashboard", root.as_uri())
        again = await execute(client, "cllm.dashboard")  # no argument: the first folder, the same server
        token_file = (folder / "token").read_text(encoding="ascii")
        second = await execute(client, "cllm.dashboard", str(other))
        unknown = await execute(client, "cllm.dashboard", (tmp_path / "nowhere").as_uri())
        url, other_url = urlsplit(first["url"]), urlsplit(second["url"])
        token = parse_qs(url.query)["token"][0]
        base = f"http://{url.netloc}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            status = await fetch(session, f"{base}/v1/status")
            other_status = await fetch(session, f"http://{other_url.netloc}/v1/status")
            events = await fetch(session, f"{base}/v1/events", token)
            no_token = await fetch(session, f"{base}/v1/events")
    assert url.hostname == "127.0.0.1" and url.port and url.path == "/"
    assert again["url"] == first["url"]
    assert token_file == token
    assert other_url.port != url.port
    assert status[0] == 200 and f'"workspace": "{root.resolve()}"' in status[1]
    assert other_status[0] == 200 and f'"workspace": "{other.resolve()}"' in other_status[1]
    assert events[0] == 200 and events[1].startswith('data: {"event":"status"')
    assert no_token[0] == 401
    assert "no such workspace folder" in unknown["error"] and "url" not in unknown
    assert (folder / "token").read_text() == token  # shutdown stopped the HTTP faces; the stable key stays
    assert not any(token in params.message for params in client.log_messages)
