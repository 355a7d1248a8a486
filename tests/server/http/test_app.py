"""The model server's endpoints over a real Workspace: completions (also through the openai client), models,
status, train, cancel, events and the dashboard files."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import sys
import threading
from pathlib import Path

import aiohttp
import openai
import pytest

from cllm.engine import Completion, IndexSettings
from cllm.server.cli import main
from cllm.server.http.app import HUB, LIMITS, MAX_STOP_SEQUENCES, PUBLIC_ROUTES, EventHub, create_app, serve_http
from cllm.server.http.security import AccessPolicy, generate_token
from cllm.server.settings import TRAINING_KEYS
from cllm.server.workspace import Workspace
from conftest import write_tiny_sources

PROMPT = "static int add(int a, int b) {\n"
TINY_TRAINING = {"epochs": 1, "maxSteps": 2, "batchSize": 2, "seqLen": 32, "vocabSize": 300, "dModel": 16,
                 "layers": 1, "heads": 2, "ffn": 32, "spheres": 2, "threads": 1}


def make_workspace(folder: Path, model: Path | None) -> Workspace:
    root = folder / "ws"
    write_tiny_sources(root)
    model_dir = folder / "model"
    model_dir.mkdir()
    if model is not None:
        shutil.copy(model, model_dir / "model.cllm")
    return Workspace(root, settings={"training": TINY_TRAINING}, model_dir=model_dir)


@pytest.fixture
def workspace(tmp_path: Path, tiny_model_path: Path) -> Workspace:
    ws = make_workspace(tmp_path, tiny_model_path)
    yield ws
    ws.close()


@pytest.fixture
def untrained(tmp_path: Path) -> Workspace:
    ws = make_workspace(tmp_path / "untrained", None)
    yield ws
    ws.close()


async def start(aiohttp_client, ws: Workspace):
    policy = AccessPolicy("127.0.0.1", 0, generate_token(), allowed_roots=(ws.root,))
    client = await aiohttp_client(create_app(ws, policy))
    policy.port = client.port
    client.headers = {"Authorization": f"Bearer {policy.token}"}
    return client


@pytest.fixture
async def client(aiohttp_client, workspace):
    return await start(aiohttp_client, workspace)


async def post(client, path: str, body=None):
    return await client.post(path, json=body, headers=client.headers)


async def sse_events(response):
    """Yield the JSON objects of a server-sent event stream (comments skipped, [DONE] ends it)."""
    while True:
        line = await asyncio.wait_for(response.content.readline(), 60)
        if not line:
            return
        line = line.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            return
        yield json.loads(line[len("data: "):])


# ------------------------------------------------------------------------------------------- status, models


async def test_status_is_the_workspace_status(client, workspace):
    response = await client.get("/v1/status")
    assert response.status == 200
    body = await response.json()
    assert body == json.loads(json.dumps(workspace.status()))
    assert body["model"]["present"] is True


async def test_models_lists_the_workspace_model(client, aiohttp_client, untrained):
    body = await (await client.get("/v1/models")).json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["cllm"]
    empty = await start(aiohttp_client, untrained)
    assert (await (await empty.get("/v1/models")).json())["data"] == []


# ------------------------------------------------------------------------------------------- completions


async def test_completion_matches_the_workspace(client, workspace):
    response = await post(client, "/v1/completions", {"model": "cllm", "prompt": PROMPT, "max_tokens": 8})
    assert response.status == 200
    body = await response.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "cllm"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    expected = workspace.complete(PROMPT, "", max_tokens=8)
    assert choice == {"text": expected.text, "index": 0, "finish_reason": choice["finish_reason"], "logprobs": None,
                      "source": expected.source, "confidence": expected.confidence}
    assert 0.0 < choice["confidence"] <= 1.0
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["completion_tokens"] == expected.tokens
    assert usage["prompt_tokens"] == expected.prompt_tokens > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_completion_stream_sends_chunks_then_done(client):
    plain = await (await post(client, "/v1/completions", {"prompt": PROMPT, "max_tokens": 8})).json()
    response = await post(client, "/v1/completions", {"prompt": PROMPT, "max_tokens": 8, "stream": True,
                                                      "stream_options": {"include_usage": True}})
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    chunks = [chunk async for chunk in sse_events(response)]
    assert all(c["object"] == "text_completion" for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert text == plain["choices"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


async def test_stop_sequences_cut_the_completion(client):
    free = (await (await post(client, "/v1/completions", {"prompt": PROMPT, "max_tokens": 16})).json())
    text = free["choices"][0]["text"]
    assert len(text) >= 3, f"the tiny model should continue {PROMPT!r}, got {text!r}"
    stop = text[1:3]
    body = await (await post(client, "/v1/completions", {"prompt": PROMPT, "max_tokens": 16, "stop": [stop]})).json()
    cut = body["choices"][0]["text"]
    assert stop not in cut and text.startswith(cut) and body["choices"][0]["finish_reason"] == "stop"


async def test_several_prompts_give_several_choices(client):
    body = await (await post(client, "/v1/completions", {"prompt": [PROMPT, "int main(void) {\n"],
                                                         "max_tokens": 4})).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]


@pytest.mark.parametrize("body, fragment", [
    ({}, "prompt"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 1.5}, "max_tokens"),
    ({"prompt": "x", "temperature": 5}, "temperature"),
    ({"prompt": "x", "stop": [str(i) for i in range(33)]}, "stop"),
    ({"prompt": "x", "max_tokens": 32769}, "max_tokens"),
    ({"prompt": "x", "n": 2}, "n=1"),
    ({"prompt": "x", "suffix": 3}, "suffix"),
    ({"prompt": "x", "multiline": "yes"}, "multiline"),
])
async def test_bad_completion_requests_are_400(client, body, fragment):
    response = await post(client, "/v1/completions", body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error" and fragment in error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b'{"prompt": "x", "max_tokens": NaN}',
                                 b'{"prompt": "x", "max_tokens": Infinity}', b'{"prompt": "x", "max_tokens": 1e400}'])
async def test_malformed_bodies_are_400(client, raw):
    response = await client.post("/v1/completions", data=raw, headers=client.headers)
    assert response.status == 400


async def test_no_model_yet_is_503(aiohttp_client, untrained):
    client = await start(aiohttp_client, untrained)
    response = await post(client, "/v1/completions", {"prompt": PROMPT})
    assert response.status == 503
    assert "train" in (await response.json())["error"]["message"]


async def test_too_many_waiting_completions_is_429(client):
    limits = client.app[LIMITS]
    limits.pending = limits.max_pending
    try:
        response = await post(client, "/v1/completions", {"prompt": PROMPT})
    finally:
        limits.pending = 0
    assert response.status == 429 and (await response.json())["error"]["type"] == "rate_limit_error"


# ------------------------------------------------------------------------------------------- training, events


async def test_train_cancel_and_events(client, workspace):
    events = await client.get("/v1/events", headers=client.headers)
    assert events.status == 200
    stream = sse_events(events)
    first = await anext(stream)
    assert first["event"] == "status" and first["status"]["training"]["state"] == "idle"
    assert (await anext(stream))["event"] == "history"

    response = await post(client, "/v1/train")
    assert response.status == 202 and (await response.json())["started"] is True
    again = await post(client, "/v1/train")
    assert again.status == 429 and "already" in (await again.json())["error"]["message"]
    assert (await anext(stream))["event"] == "training_started"

    assert (await (await post(client, "/v1/train/cancel")).json()) == {"cancelled": True}
    async for event in stream:
        if event["event"] == "training_finished":
            assert event["state"] == "cancelled"
            break
    assert (await (await post(client, "/v1/train/cancel")).json()) == {"cancelled": False}
    assert workspace.status()["model"]["present"], "the last good model stays"


async def test_train_a_folder_inside_the_workspace(client, workspace, caplog):
    caplog.set_level(logging.INFO, logger="cllm.server.workspace")
    response = await post(client, "/v1/train", {"path": "src", "training": {"maxSteps": 1}})
    assert response.status == 202
    workspace.cancel_training()
    assert await asyncio.to_thread(workspace.wait_training, 30)
    assert f"train {workspace.root / 'src'} --json" in caplog.text
    assert "--max-steps 1" in caplog.text


@pytest.mark.parametrize("body, status", [
    ({"training": {"epochs": -1}}, 400),
    ({"training": {"nonsense": 1}}, 400),
    ({"unknown": 1}, 400),
    ({"path": 7}, 400),
    ({"path": "no/such/folder"}, 404),
    ({"path": "src/main.c"}, 404),
])
async def test_bad_train_requests(client, workspace, body, status):
    response = await post(client, "/v1/train", body)
    assert response.status == status
    assert "message" in (await response.json())["error"]
    assert not workspace.training


@pytest.mark.parametrize("path, status", [("d" * 300, 400), ("/".join(["e" * 250] * 20), 400), ("loop/inside", 404)])
async def test_train_with_a_folder_name_past_the_system_limits_is_a_short_message_not_a_500(client, workspace, path,
                                                                                             status):
    (workspace.root / "loop").symlink_to("loop")  # a symlink to itself: ELOOP
    response = await post(client, "/v1/train", {"path": path})
    message = (await response.json())["error"]["message"]
    assert response.status == status and len(message) < 200
    assert ("is not a folder" in message) == (status == 404) and "Traceback" not in message
    assert not workspace.training


async def test_late_listener_gets_the_run_so_far(client):
    hub: EventHub = client.app[HUB]
    spheres = [{"id": i, "sequences": 1, "tokens": 32, "busy": 0.01, "wait": 0.0, "loss": 5.0} for i in range(2)]
    for event in ({"event": "training_started", "options": {}}, {"event": "start", "files": 3},
                  {"event": "step", "step": 1, "loss": 5.5, "spheres": spheres},
                  {"event": "epoch", "epoch": 1, "val_loss": 5.0},
                  {"event": "step", "step": 2, "loss": 5.2, "spheres": spheres}):
        hub.on_event(event)
    await asyncio.sleep(0.05)
    stream = sse_events(await client.get("/v1/events", headers=client.headers))
    assert (await anext(stream))["event"] == "status"
    history = await anext(stream)
    assert [s["loss"] for s in history["steps"]] == [5.5, 5.2]
    assert "spheres" not in history["steps"][0], "history keeps the curve, not every sphere snapshot"
    assert [e["valLoss"] for e in history["epochs"]] == [5.0], "keys are camelCase on the wire"
    last = await anext(stream)
    assert last["step"] == 2 and last["spheres"] == spheres


async def test_slow_listeners_lose_old_events_not_speed():
    hub = EventHub(asyncio.get_running_loop(), max_clients=2, queue_size=3)
    slow, other = hub.connect(), hub.connect()
    for step in range(10):
        hub.on_event({"event": "step", "step": step})
    await asyncio.sleep(0.05)
    assert [slow.get_nowait()["step"] for _ in range(3)] == [7, 8, 9]
    assert other.qsize() == 3 and hub.dropped == 14
    with pytest.raises(Exception, match="too many event listeners"):
        hub.connect()


async def test_a_listener_that_hangs_up_frees_its_slot_at_once(workspace):
    server = await serve_http(workspace, "127.0.0.1", 0)
    hub: EventHub = server.runner.app[HUB]
    headers = {"Authorization": f"Bearer {workspace.token_path.read_text()}"}
    try:
        async with aiohttp.ClientSession() as session:
            listeners = [await session.get(f"{server.url}/v1/events", headers=headers)
                         for _ in range(hub.max_clients)]
            assert all(r.status == 200 for r in listeners) and len(hub.clients) == hub.max_clients
            for response in listeners:
                await anext(sse_events(response))  # the status event: the handler is waiting for events
                response.close()  # hang up without a word, as a closed browser tab does
            for _ in range(1000):  # well before the first ping (SSE_PING_SECONDS) would find them gone
                if not hub.clients:
                    break
                await asyncio.sleep(0.01)
            assert not hub.clients
            async with session.get(f"{server.url}/v1/events", headers=headers) as again:
                assert again.status == 200
    finally:
        await server.close()


# ------------------------------------------------------------------------------------------- dashboard files


async def test_dashboard_files(client):
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert '<script src="/dashboard/app.js"' in html and "{{" not in html
    script = await client.get("/dashboard/app.js")
    assert script.content_type == "application/javascript" and "followEvents" in await script.text()
    assert (await client.get("/dashboard/style.css")).content_type == "text/css"
    for missing in ("/dashboard/index.html", "/dashboard/..%2Fhttp.py", "/nope"):
        response = await client.get(missing)
        assert response.status == 404 and (await response.json())["error"]["type"] == "not_found_error"


# ------------------------------------------------------------------------------------------- the openai client


async def test_openai_client_against_a_live_server(workspace):
    server = await serve_http(workspace, "127.0.0.1", 0)
    try:
        token = workspace.token_path.read_text()
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0)
        result = await client.completions.create(model="cllm", prompt=PROMPT, max_tokens=8, temperature=0)
        expected = workspace.complete(PROMPT, "", max_tokens=8).text
        assert result.choices[0].text == expected
        assert result.usage.completion_tokens > 0
        stream = await client.completions.create(model="cllm", prompt=PROMPT, max_tokens=8, stream=True)
        assert "".join([chunk.choices[0].text async for chunk in stream if chunk.choices]) == expected
        models = await client.models.list()
        assert [m.id for m in models.data] == ["cllm"]
        wrong = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await wrong.completions.create(model="cllm", prompt=PROMPT)
        with pytest.raises(openai.BadRequestError, match="max_tokens"):
            await client.completions.create(model="cllm", prompt=PROMPT, max_tokens=100_000)
        await client.close()
        await wrong.close()
    finally:
        await server.close()


async def test_a_token_that_cannot_be_written_stops_the_server_it_started(workspace, tmp_path: Path):
    (tmp_path / "a_file").write_text("not a folder")
    server = await serve_http(workspace, "127.0.0.1", 0)
    failed_port = server.port
    await server.close()
    good_path = workspace.token_path
    workspace.token_path = tmp_path / "a_file" / "token"  # its folder cannot be created
    with pytest.raises(OSError):
        await serve_http(workspace, "127.0.0.1", failed_port)
    workspace.token_path = good_path
    again = await serve_http(workspace, "127.0.0.1", failed_port)  # the failed start released its port
    assert again.port == failed_port
    await again.close()


async def test_the_key_is_stable_across_starts_and_shared_by_servers_on_one_folder(workspace, monkeypatch):
    first = await serve_http(workspace, "127.0.0.1", 0)
    second = await serve_http(workspace, "127.0.0.1", 0)  # a second server on the same model folder
    await first.close()
    again = await serve_http(workspace, "127.0.0.1", 0)
    try:
        assert first.policy.token == second.policy.token == again.policy.token == workspace.token_path.read_text()
        async with aiohttp.ClientSession() as session:
            for server in (second, again):
                async with session.post(f"{server.url}/v1/completions", json={"prompt": PROMPT, "max_tokens": 2},
                                        headers={"Authorization": f"Bearer {first.policy.token}"}) as response:
                    assert response.status == 200
    finally:
        await second.close()
        await again.close()
    monkeypatch.setenv("CLLM_API_KEY", "from-the-environment")
    from_env = await serve_http(workspace, "127.0.0.1", 0)
    given = await serve_http(workspace, "127.0.0.1", 0, api_key="given-key")
    await from_env.close()
    await given.close()
    assert (from_env.policy.token, given.policy.token) == ("from-the-environment", "given-key")
    assert workspace.token_path.read_text() == first.policy.token, "an explicit key leaves the token file alone"


# ------------------------------------------------------------------------------------------- cllm serve


async def test_cllm_serve_command(tmp_path: Path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.c").write_text("int a;\n")
    model_dir = tmp_path / "model"
    command = [sys.executable, "-m", "cllm.server.cli", "serve", "--workspace", str(root), "--port", "0",
               "--model-dir", str(model_dir)]
    refused = await asyncio.create_subprocess_exec(*command, "--host", "0.0.0.0", stderr=asyncio.subprocess.PIPE)
    _, err = await refused.communicate()
    assert refused.returncode == 2 and b"--allow-remote" in err

    server = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.DEVNULL)
    try:
        first = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        dashboard = (await asyncio.wait_for(server.stdout.readline(), 10)).decode()
        base = first.split(" at ")[1].split()[0]
        token = (model_dir / "token").read_text()
        assert token not in first + dashboard and "?token=<the content of" in dashboard, "not a terminal: no token"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/status") as response:
                assert (await response.json())["workspace"] == str(root.resolve())
    finally:
        server.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(server.wait(), 30) == 0
    assert (model_dir / "token").read_text() == token, "the key outlives the server"


def test_cllm_serve_caps_the_workspace_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    served = []
    monkeypatch.setattr("cllm.server.http.app.run_server", lambda workspace, *args, **kwargs: served.append(workspace))
    common = ["serve", "--workspace", str(tmp_path), "--model-dir", str(tmp_path / "model")]
    assert main([*common, "--index-memory-mb", "64.5"]) == 0
    assert main(common) == 0
    assert [w.index_settings().max_mb for w in served] == [64.5, IndexSettings().max_mb]


# ------------------------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "max_tokens": 10**400}, "max_tokens"),
    ({"prompt": "x", "temperature": -10**400}, "temperature"),
    ({"prompt": "x", "seed": 10**400}, "seed"),
    ({"prompt": "\ud800"}, "prompt"),
    ({"prompt": ["int", "x\udfffy"]}, "prompt[1]"),
    ({"prompt": "x", "suffix": "\udc80"}, "suffix"),
    ({"prompt": "x", "stop": ["\ud800"]}, "stop[0]"),
    ({"prompt": "x", "\ud800": 1}, "\\ud800"),
    ({"prompt": "x", "stream": "false"}, "stream"),
    ({"prompt": "x", "stream": 0}, "stream"),
    ({"prompt": "x", "stream": True, "stream_options": {"include_usage": "no"}}, "include_usage"),
    ({"prompt": "x", "multiline": 1}, "multiline"),
    ({"prompt": "x", "path": "src/a\x00.c"}, "path"),
    ({"prompt": "x", "path": "a" * 5000}, "path"),
])
async def test_hostile_completion_fields_are_400_naming_the_field(client, body, field):
    response = await post(client, "/v1/completions", body)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error" and field in error["message"]
    assert (await client.get("/v1/status")).status == 200, "the server keeps serving"


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "suffix": 0}, "suffix"),
    ({"prompt": "x", "suffix": False}, "suffix"),
    ({"prompt": "x", "suffix": []}, "suffix"),
    ({"prompt": "x", "stream_options": False}, "stream_options"),
    ({"prompt": "x", "stream_options": 0}, "stream_options"),
    ({"prompt": "x", "stream_options": ""}, "stream_options"),
    ({"prompt": "x", "stream_options": []}, "stream_options"),
])
async def test_falsy_values_of_a_wrong_type_are_400_not_taken_as_absent(client, body, field):
    response = await post(client, "/v1/completions", body)
    assert response.status == 400 and field in (await response.json())["error"]["message"]


@pytest.mark.parametrize("field", ["n", "best_of"])
async def test_a_boolean_n_or_best_of_is_400_not_taken_as_one(client, field):
    response = await post(client, "/v1/completions", {"prompt": "x", field: True})
    assert response.status == 400 and "n=1" in (await response.json())["error"]["message"]


async def test_null_optional_fields_are_taken_as_absent(client):
    nulls = dict.fromkeys(["model", "suffix", "max_tokens", "temperature", "top_p", "seed", "stop", "stream",
                           "stream_options", "n", "best_of", "multiline", "path"])
    response = await post(client, "/v1/completions", {"prompt": "int ", **nulls})
    assert response.status == 200
    assert (await response.json())["object"] == "text_completion"


@pytest.mark.parametrize("body, field", [
    ({"path": "src\x00/../.."}, "path"),
    ({"path": "a" * 5000}, "path"),
    ({"path": "s\ud800"}, "path"),
    ({"training": {"epochs": 10**400}}, "epochs"),
    ({"training": {"lr": 10**400}}, "lr"),
])
async def test_hostile_train_fields_are_400_naming_the_field(client, workspace, body, field):
    response = await post(client, "/v1/train", body)
    assert response.status == 400
    assert field in (await response.json())["error"]["message"]
    assert not workspace.training


@pytest.mark.parametrize("blank", [b" ", b"\n", b"\t\r\n "])
async def test_a_blank_train_body_is_400_not_an_absent_one(client, workspace, blank):
    headers = {**client.headers, "Content-Type": "application/json"}
    response = await client.post("/v1/train", data=blank, headers=headers)
    assert response.status == 400 and "JSON object" in (await response.json())["error"]["message"]
    assert not workspace.training


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/train"])
async def test_deeply_nested_json_is_400(client, path):
    depth = 50_000
    raw = b'{"prompt": ' + b"[" * depth + b"]" * depth + b"}"
    response = await client.post(path, data=raw, headers=client.headers)
    assert response.status == 400
    assert "nest" in (await response.json())["error"]["message"]


async def test_a_string_stream_flag_is_not_true(client):
    response = await post(client, "/v1/completions", {"prompt": PROMPT, "max_tokens": 2, "stream": False})
    assert response.status == 200 and response.content_type == "application/json"


async def test_models_follow_the_loaded_model_not_the_file(client, workspace):
    workspace.model_path.unlink()
    status = await (await client.get("/v1/status")).json()
    models = await (await client.get("/v1/models")).json()
    assert status["model"]["present"] is True, "the loaded model still serves"
    assert [m["id"] for m in models["data"]] == ["cllm"]
    assert (await post(client, "/v1/completions", {"prompt": PROMPT, "max_tokens": 2})).status == 200



# ------------------------------------------------------------------------------------------- Continue, replayed

CONTINUE_STOPS = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<|endoftext|>", "</fim_middle>",
                  "</code>", "/src/", "#- coding: utf-8", "```"]
CONTINUE_BEFORE, CONTINUE_AFTER = "// src/math.c\nstatic int add(int a, int b) {\n    return ", "\n}\n"


def continue_request(stream: bool) -> dict:
    """The body Continue's OpenAI provider sends for autocomplete with a model named "cllm" (its default
    stable-code template, 10 stop strings, DEFAULT_MAX_TOKENS, temperature 0.01): docs in the brief's research."""
    return {"model": "cllm", "max_tokens": 4096, "temperature": 0.01, "stream": stream, "stop": CONTINUE_STOPS,
            "prompt": f"<fim_prefix>{CONTINUE_BEFORE}<fim_suffix>{CONTINUE_AFTER}<fim_middle>"}


@pytest.mark.parametrize("path", ["/v1/completions", "/completions"])
async def test_continue_autocomplete_request_unchanged(client, workspace, path):
    token = client.headers["Authorization"].split()[1]
    headers = {"Content-Type": "application/json", "api-key": "", "Authorization": f"Bearer {token}"}
    plain = await client.post(path, data=json.dumps(continue_request(False)), headers=headers)
    assert plain.status == 200, await plain.text()
    expected = workspace.complete(CONTINUE_BEFORE, CONTINUE_AFTER, temperature=0.01, stop=tuple(CONTINUE_STOPS),
                                  max_tokens=2048).text
    assert (await plain.json())["choices"][0]["text"] == expected

    response = await client.post(path, data=json.dumps(continue_request(True)), headers=headers)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    raw = (await response.read()).decode()
    lines = [line for line in raw.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines), "no comment lines (Continue ends a stream at ': ping')"
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")

    without_key = await client.post(path, data=json.dumps(continue_request(False)),
                                    headers={"Content-Type": "application/json", "api-key": ""})
    assert without_key.status == 401, "Continue without apiKey sends no Authorization: the token is required"


async def test_a_fim_prompt_with_a_suffix_field_too_is_400(client):
    body = {"prompt": "<fim_prefix>int <fim_suffix>;<fim_middle>", "suffix": "x"}
    response = await post(client, "/v1/completions", body)
    assert response.status == 400 and "suffix" in (await response.json())["error"]["message"]


async def test_a_client_leaving_a_stream_cancels_its_completion(client, workspace, monkeypatch):
    cancelled = threading.Event()

    def endless(prefix, suffix="", *, cancel, on_text, **_):
        while not cancel.wait(0.01):
            on_text("x")
        cancelled.set()
        return Completion("", 0, "cancelled", 0.0)

    monkeypatch.setattr(workspace, "complete", endless)
    response = await post(client, "/v1/completions", {"prompt": PROMPT, "stream": True})
    assert (await response.content.readline()).startswith(b"data: ")
    response.close()
    assert await asyncio.to_thread(cancelled.wait, 60), "the completion was cancelled"


# ------------------------------------------------------------------------------------------- llama.vscode, replayed

INFILL_PREFIX, INFILL_LINE, INFILL_SUFFIX = "static int add(int a, int b) {\n", "    return ", "\n}\n"


def llama_vscode_infill(n_predict: int = 128) -> dict:
    """llama.vscode's main /infill body (createRequestPayload with its package.json defaults)."""
    return {"id_slot": 0, "input_prefix": INFILL_PREFIX, "input_suffix": INFILL_SUFFIX,
            "input_extra": [{"text": "int sum(const int *v, int n);\n", "time": 1718000000000,
                             "filename": "/abs/path/loop.h"}],
            "prompt": INFILL_LINE, "n_predict": n_predict, "n_cmpl": 3, "top_k": 40, "top_p": 0.99, "stream": False,
            "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True, "n_indent": 4,
            "t_max_prompt_ms": 500, "t_max_predict_ms": 500}


LLAMA_VSCODE_PREFETCH = {"id_slot": 0, "input_prefix": "", "input_suffix": "",
                         "input_extra": [{"text": "int a;\n", "time": 1718000000000, "filename": "/abs/a.c"}],
                         "prompt": "", "n_predict": 0, "samplers": [], "cache_prompt": True,
                         "t_max_prompt_ms": 500, "t_max_predict_ms": 1}


def assert_llama_result(body: dict) -> None:
    """The fields llama.vscode reads: content, and for its status bar numbers in these places."""
    assert isinstance(body["content"], str) and body["stop"] is True
    assert isinstance(body["tokens_cached"], int) and isinstance(body["generation_settings"]["n_ctx"], int)
    for key in ("prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms", "predicted_per_second"):
        assert isinstance(body["timings"][key], (int, float)), key
    assert body["truncated"] is False and body["stop_type"] in ("eos", "limit", "word", "none")
    assert isinstance(body["tokens_predicted"], int) and isinstance(body["tokens_evaluated"], int)


async def test_llama_vscode_infill_unchanged(client, workspace):
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/plain, */*",
               **client.headers}
    response = await client.post("/infill", data=json.dumps(llama_vscode_infill()), headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert_llama_result(body)
    expected = workspace.complete(INFILL_PREFIX + INFILL_LINE, INFILL_SUFFIX, max_tokens=128, top_k=40,
                                  top_p=0.99, max_ms=60_000.0)
    if body["tokens_predicted"] == expected.tokens:  # else the 500 ms budget ran out on a loaded machine
        assert body["content"] == expected.text
    else:
        assert body["stop_type"] == "limit" and body["tokens_predicted"] < expected.tokens
    assert body["generation_settings"]["n_ctx"] == workspace.model.context

    prefetch = await client.post("/infill", data=json.dumps(LLAMA_VSCODE_PREFETCH), headers=headers)
    assert prefetch.status == 200
    warm = await prefetch.json()
    assert_llama_result(warm)
    assert warm["content"] == "" and warm["tokens_predicted"] == 0

    unauthorized = await client.post("/infill", json=llama_vscode_infill())
    assert unauthorized.status == 401 and "token" in (await unauthorized.json())["error"]["message"]


async def test_llama_streams_pieces_then_the_final_object(client):
    plain = await (await post(client, "/completion", {"prompt": PROMPT, "n_predict": 16})).json()
    assert_llama_result(plain)
    response = await post(client, "/completion", {"prompt": PROMPT, "n_predict": 16, "stream": True})
    assert response.headers["Content-Type"].startswith("text/event-stream")
    raw = (await response.read()).decode()
    assert "[DONE]" not in raw, "llama.cpp's routes end with the final object"
    events = [json.loads(line[len("data: "):]) for line in raw.split("\n") if line.startswith("data: ")]
    assert all(e["stop"] is False for e in events[:-1]) and events[-1]["stop"] is True
    assert "".join(e["content"] for e in events[:-1]) == plain["content"]
    assert events[-1]["content"] == "", "as llama.cpp: the text was streamed already"


async def test_health_is_public_and_says_whether_a_model_serves(client, workspace, aiohttp_client, untrained):
    assert workspace.mixture_settled.wait(60), "ok once the workspace cache serves (test_clients.py: before)"
    response = await client.get("/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}
    untrained_client = await start(aiohttp_client, untrained)
    response = await untrained_client.get("/health")
    assert response.status == 503
    assert (await response.json())["error"]["type"] == "unavailable_error"


@pytest.mark.parametrize("path, body, fragment", [
    ("/infill", {"input_prefix": 3}, "input_prefix"),
    ("/infill", {"input_extra": [{"filename": 1}]}, "input_extra"),
    ("/infill", {"input_extra": "x"}, "input_extra"),
    ("/infill", {"stream": "yes"}, "stream"),
    ("/infill", {"n_predict": -2}, "n_predict"),
    ("/infill", {"n_cmpl": 0}, "n_cmpl"),
    ("/infill", {"top_p": 0}, "top_p"),
    ("/infill", {"t_max_predict_ms": -1}, "t_max_predict_ms"),
    ("/infill", {"stop": [str(i) for i in range(33)]}, "stop"),
    ("/completion", {"prompt": [1, 2]}, "prompt"),
    ("/completion", {"prompt": "x", "temperature": 9}, "temperature"),
])
async def test_bad_llama_requests_are_400(client, path, body, fragment):
    response = await post(client, path, body)
    assert response.status == 400
    assert fragment in (await response.json())["error"]["message"]


@pytest.mark.parametrize("path", ["/infill", "/completion"])
async def test_llama_samplers_that_are_not_strings_are_400(client, path):
    response = await post(client, path, {"prompt": "x", "samplers": ["top_k", 3]})
    assert response.status == 400 and "samplers" in (await response.json())["error"]["message"]


# ------------------------------------------------------------------------------------------- OpenAPI


async def test_openapi_describes_every_route(client):
    response = await client.get("/openapi.json")
    assert response.status == 200
    spec = await response.json()
    assert spec["openapi"].startswith("3.1")
    described = {(method.upper(), path): operation for path, item in spec["paths"].items()
                 for method, operation in item.items()}
    routes = {(route.method, route.resource.canonical): route.name for route in client.app.router.routes()
              if route.method != "HEAD"}
    assert set(described) == set(routes)
    for key, name in routes.items():
        assert described[key]["operationId"] == name
        assert (described[key]["security"] == []) == (name in PUBLIC_ROUTES)
    stops = spec["paths"]["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    stop, null = stops["properties"]["stop"]["anyOf"]
    assert stop["oneOf"][1]["maxItems"] == MAX_STOP_SEQUENCES and null == {"type": "null"}, "null: absent"
    assert stops["properties"]["prompt"]["oneOf"], "a required field is not nullable"
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_openapi_describes_the_training_settings_as_they_are_checked(client):
    """/v1/train's `training` object is derived from the option schema (engine/config.py): a key or a bound the
    description names is one the settings check (server/settings.py), so a request the description rejects is
    rejected."""
    spec = await (await client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/train"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    training, null = body["properties"]["training"]["anyOf"]
    assert null == {"type": "null"} and training["additionalProperties"] is False
    assert set(training["properties"]) == {*TRAINING_KEYS, "base", "baseCorpus"}
    d_model, _ = training["properties"]["dModel"]["anyOf"]
    assert (d_model["type"], d_model["minimum"], d_model["maximum"]) == ("integer", 1, 100_000)
    assert training["properties"]["fresh"]["anyOf"][0]["type"] == "boolean"
    for key, value in (("dModel", d_model["maximum"] + 1), ("threads", -1), ("fresh", 1), ("lr", 0)):
        response = await post(client, "/v1/train", {"training": {key: value}})
        assert response.status == 400 and f"cllm.training.{key}" in (await response.json())["error"]["message"]
