"""Security rules of the model server: Host, Origin, token, training paths, body size, token file, logs."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import aiohttp
import pytest

from cllm.server.http.app import create_app, serve_http
from cllm.server.http.security import AccessPolicy, PathOutsideRoot, generate_token, stable_token, token_matches
from cllm.server.workspace import Workspace

C_SOURCE = "int add(int a, int b) {\n    return a + b;\n}\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "add.c").write_text(C_SOURCE)
    ws = Workspace(root, model_dir=tmp_path / "model")
    yield ws
    ws.close()


@pytest.fixture
def policy(workspace: Workspace) -> AccessPolicy:
    return AccessPolicy(bind_host="127.0.0.1", port=0, token=generate_token(), allowed_roots=(workspace.root,))


@pytest.fixture
async def client(aiohttp_client, workspace: Workspace, policy: AccessPolicy):
    client = await aiohttp_client(create_app(workspace, policy, max_body=1024))
    policy.port = client.port
    return client


def auth(policy: AccessPolicy) -> dict[str, str]:
    return {"Authorization": f"Bearer {policy.token}"}


# ------------------------------------------------------------------------------------------- policy units


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8765", True), ("localhost:8765", True), ("LOCALHOST:8765", True), ("[::1]:8765", True),
    ("127.0.0.1:8766", False), ("127.0.0.1", False), ("evil.example:8765", False), ("localhost.evil.example:8765", False),
    ("10.0.0.5:8765", False), ("", False), (None, False),
])
def test_host_rule_on_loopback(host, ok):
    assert AccessPolicy("127.0.0.1", 8765, "t").host_allowed(host) is ok


def test_host_rule_when_remote_binding_is_allowed():
    wildcard = AccessPolicy("0.0.0.0", 8765, "t")
    assert wildcard.host_allowed("192.168.1.20:8765")
    assert not wildcard.host_allowed("rebind.example:8765"), "DNS names could rebind; only IP literals pass"
    specific = AccessPolicy("192.168.1.20", 8765, "t")
    assert specific.host_allowed("192.168.1.20:8765")
    assert not specific.host_allowed("192.168.1.21:8765")


@pytest.mark.parametrize("origin, ok", [
    (None, True), ("http://127.0.0.1:8765", True), ("http://localhost:8765", True),
    ("https://127.0.0.1:8765", False), ("http://evil.example", False), ("null", False),
    ("http://127.0.0.1:9999", False), ("http://127.0.0.1:8765/path", False),
])
def test_origin_rule(origin, ok):
    assert AccessPolicy("127.0.0.1", 8765, "t").origin_allowed(origin) is ok


def test_token_comparison():
    token = generate_token()
    assert len(token) >= 40 and token != generate_token()
    assert token_matches(token, f"Bearer {token}")
    assert token_matches(token, f"bearer {token}")
    assert not token_matches(token, f"Bearer {token}x")
    assert not token_matches(token, token)
    assert not token_matches(token, None)
    assert not token_matches(token, "Basic abc")


def test_token_file_is_private_and_stable(tmp_path: Path):
    path = tmp_path / "models" / "token"
    token = stable_token(path)
    assert path.read_text() == token and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stable_token(path) == token, "a later start reuses the token"
    path.chmod(0o644)
    assert stable_token(path) == token and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["token"], "no temporary file is left behind"


def test_an_explicit_key_wins_and_leaves_the_token_file_alone(tmp_path: Path):
    path = tmp_path / "token"
    assert stable_token(path, "my-key") == "my-key" and not path.exists()
    for bad in ("", "has space", "tab\t", "naïve"):
        with pytest.raises(ValueError, match="visible ASCII"):
            stable_token(path, bad)


def test_an_empty_or_damaged_token_file_is_replaced(tmp_path: Path):
    path = tmp_path / "token"
    for damaged in (b"", b"\xff\xfe", b"two words"):
        path.write_bytes(damaged)
        token = stable_token(path)
        assert path.read_text() == token and len(token) >= 40


def test_training_paths_must_stay_inside_the_root(tmp_path: Path):
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    policy = AccessPolicy("127.0.0.1", 1, "t", allowed_roots=(root,))
    assert policy.resolve_training_path("sub") == (root / "sub").resolve()
    assert policy.resolve_training_path(str(root)) == root.resolve()
    for bad in (str(outside), "../outside", "escape", str(root / "escape"), "/"):
        with pytest.raises(PathOutsideRoot):
            policy.resolve_training_path(bad)


def test_a_path_in_an_unknown_users_home_is_refused_not_an_internal_error(tmp_path: Path):
    policy = AccessPolicy("127.0.0.1", 1, "t", allowed_roots=(tmp_path,))
    with pytest.raises(PathOutsideRoot, match="unknown user"):
        policy.resolve_training_path("~no-such-user-cllm/ws")


async def test_non_loopback_bind_needs_the_explicit_flag(workspace: Workspace):
    with pytest.raises(ValueError, match="allow-remote"):
        await serve_http(workspace, "0.0.0.0", 0)
    assert not workspace.token_path.exists()


# ------------------------------------------------------------------------------------------- through the app


async def test_foreign_host_is_refused_before_anything_runs(client, policy, workspace):
    response = await client.post("/v1/train", headers={**auth(policy), "Host": f"evil.example:{policy.port}"})
    assert response.status == 403
    assert (await response.json())["error"]["type"] == "permission_error"
    assert not workspace.training
    response = await client.get("/v1/status", headers={"Host": f"attacker.test:{policy.port}"})
    assert response.status == 403


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
async def test_foreign_origin_is_refused(client, policy, workspace, origin):
    response = await client.post("/v1/train", headers={**auth(policy), "Origin": origin})
    assert response.status == 403
    assert not workspace.training


async def test_own_origin_is_accepted(client, policy):
    response = await client.get("/v1/status", headers={"Origin": f"http://localhost:{policy.port}"})
    assert response.status == 200


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/completions"), ("POST", "/v1/train"), ("POST", "/v1/train/cancel"), ("GET", "/v1/events"),
])
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic dXNlcjpwYXNz"])
async def test_token_is_required(client, workspace, method, path, header):
    headers = {"Authorization": header} if header else {}
    response = await client.request(method, path, headers=headers, json={"prompt": "int"})
    assert response.status == 401
    body = await response.json()
    assert body["error"]["type"] == "authentication_error"
    assert str(workspace.token_path) in body["error"]["message"]
    assert not workspace.training


@pytest.mark.parametrize("path", ["/", "/v1/status", "/v1/models", "/dashboard/app.js"])
async def test_public_endpoints_need_no_token(client, path):
    assert (await client.get(path)).status == 200


async def test_training_path_outside_the_root_is_refused(client, policy, workspace, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.c").write_text("int secret;\n")
    (workspace.root / "link").symlink_to(outside)
    for path in (str(outside), "../secret", "link", str(workspace.root / "link")):
        response = await client.post("/v1/train", headers=auth(policy), json={"path": path})
        assert response.status == 403, path
        assert "outside" in (await response.json())["error"]["message"]
    assert not workspace.training
    assert not (workspace.model_dir / "train.log").exists(), "no trainer may have been started"


async def test_oversized_body_is_refused_unread(client, policy, workspace):
    body = b'{"path": "src", "pad": "' + b"x" * 4096 + b'"}'
    response = await client.post("/v1/train", headers={**auth(policy), "Content-Type": "application/json"}, data=body)
    assert response.status == 413
    assert (await response.json())["error"]["type"] == "request_too_large"
    assert not workspace.training


async def test_oversized_chunked_body_is_refused(client, policy, workspace):
    async def chunks():
        for _ in range(8):
            yield b"x" * 512

    response = await client.post("/v1/completions", headers=auth(policy), data=chunks())
    assert response.status == 413
    assert not workspace.training


async def test_dashboard_receives_the_token_only_with_the_right_link(client, policy):
    page = await (await client.get("/", params={"token": policy.token})).text()
    assert f'content="{policy.token}"' in page and 'data-state="valid"' in page
    page = await (await client.get("/", params={"token": "guess"})).text()
    assert policy.token not in page and 'content=""' in page and 'data-state="invalid"' in page
    response = await client.get("/")
    assert policy.token not in await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_token_never_reaches_the_logs(workspace, caplog):
    caplog.set_level(logging.DEBUG)
    server = await serve_http(workspace, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.dashboard_url) as response:
                assert response.status == 200
            async with session.post(f"{server.url}/v1/train/cancel",
                                    headers={"Authorization": f"Bearer {server.policy.token}"}) as response:
                assert response.status == 200
        assert workspace.token_path.read_text() == server.policy.token
        assert stat.S_IMODE(os.stat(workspace.token_path).st_mode) == 0o600
    finally:
        await server.close()
    assert "GET /" in caplog.text, "the access log is on (with paths only)"
    assert server.policy.token not in caplog.text
    assert workspace.token_path.read_text() == server.policy.token, "the token file stays: it is the stable key"


@pytest.mark.parametrize("value", ["Bearer \u00e9t\u00e9".encode(), b"Bearer \xff\xfe", "B\u00e9arer x".encode()])
async def test_non_ascii_authorization_is_401(client, policy, workspace, value):
    reader, writer = await asyncio.open_connection("127.0.0.1", policy.port)
    writer.write(b"POST /v1/train HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: %s\r\n"
                 b"Content-Length: 0\r\nConnection: close\r\n\r\n" % (policy.port, value))
    response = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    assert response.startswith(b"HTTP/1.1 401 "), response[:200]
    assert b"authentication_error" in response
    assert not workspace.training

