"""Local-model clients against the server, with their real packages where they install: the Ollama API (the
`ollama` Python and npm clients, Continue's `ollama` provider request), chat completions and models.retrieve (the
`openai` SDK, litellm's `openai/` model), llama.cpp streaming as Continue's llama.cpp provider reads it, /props
and the /health readiness."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import openai
import pytest

from cllm.server.http.app import serve_http
from cllm.server.http.openai import code_of_message
from conftest import missing_prerequisite
from test_app import PROMPT, make_workspace, post, start

SUFFIX = "\n}\n"
NODE_SCRIPT = Path(__file__).with_name("ollama_npm_client.mjs")


@pytest.fixture
def workspace(tmp_path: Path, tiny_model_path: Path):
    ws = make_workspace(tmp_path, tiny_model_path)
    yield ws
    ws.close()


@pytest.fixture
def untrained(tmp_path: Path):
    ws = make_workspace(tmp_path / "untrained", None)
    yield ws
    ws.close()


@pytest.fixture
async def client(aiohttp_client, workspace):
    return await start(aiohttp_client, workspace)


@pytest.fixture
async def live(workspace):
    """A real server on a free port and its token."""
    server = await serve_http(workspace, "127.0.0.1", 0)
    yield server, workspace.token_path.read_text()
    await server.close()


def ndjson(raw: bytes) -> list[dict]:
    return [json.loads(line) for line in raw.decode().split("\n") if line.strip()]


# ------------------------------------------------------------------------------------------- Ollama


async def test_ollama_python_client(live, workspace):
    import ollama
    server, token = live
    client = ollama.AsyncClient(host=server.url, headers={"Authorization": f"Bearer {token}"})
    expected = workspace.complete(PROMPT, SUFFIX, max_tokens=8)
    result = await client.generate(model="cllm", prompt=PROMPT, suffix=SUFFIX, options={"num_predict": 8},
                                   stream=False)
    assert result.response == expected.text and result.done and result.eval_count == expected.tokens
    assert result.done_reason in ("stop", "length")
    parts = [part async for part in await client.generate(model="cllm", prompt=PROMPT, suffix=SUFFIX,
                                                           options={"num_predict": 8}, stream=True)]
    assert "".join(p.response for p in parts) == expected.text
    assert parts[-1].done and parts[-1].response == "" and not any(p.done for p in parts[:-1])
    listed = await client.list()
    assert [m.model for m in listed.models] == ["cllm:latest"] and listed.models[0].size > 0
    shown = await client.show("cllm")
    assert ".Suffix" in shown.template and "insert" in shown.capabilities
    assert shown.parameters == f"num_ctx {workspace.model.context}"
    assert [m.model for m in (await client.ps()).models] == ["cllm:latest"]
    wrong = ollama.AsyncClient(host=server.url, headers={"Authorization": "Bearer wrong"})
    with pytest.raises(ollama.ResponseError) as raised:
        await wrong.generate(model="cllm", prompt=PROMPT)
    assert raised.value.status_code == 401 and "token" in raised.value.error


async def test_ollama_npm_client(live, workspace, tmp_path_factory):
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing_prerequisite("node and npm are not installed")
    modules = tmp_path_factory.mktemp("npm")
    installed = subprocess.run(["npm", "install", "--no-save", "--silent", "--prefix", str(modules), "ollama@^0.6"],
                               capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        missing_prerequisite(f"npm could not install ollama: {installed.stderr[-500:]}")
    server, token = live
    run = await asyncio.create_subprocess_exec(
        "node", str(NODE_SCRIPT), server.url, token, PROMPT, SUFFIX, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "NODE_PATH": str(modules / "node_modules")}, cwd=modules)
    out, err = await asyncio.wait_for(run.communicate(), 120)
    assert run.returncode == 0, err.decode()
    seen = json.loads(out)
    expected = workspace.complete(PROMPT, SUFFIX, max_tokens=8).text
    assert seen["generated"] == seen["streamed"] == expected
    assert seen["models"] == ["cllm:latest"] and ".Suffix" in seen["template"]
    assert "token" in seen["error"], "the error is Ollama's string, not [object Object]"


def continue_ollama_body(stream: bool) -> dict:
    """Continue's `ollama` provider's /api/generate body for FIM (core/llm/llms/Ollama.ts _getGenerateOptions)."""
    return {"model": "qwen2.5-coder:1.5b", "prompt": PROMPT, "suffix": SUFFIX, "raw": True,
            "options": {"temperature": 0.01, "top_p": 0.9, "top_k": 40, "num_predict": 8, "stop": ["\n\n"],
                        "num_ctx": 8096, "num_thread": 4, "use_mmap": True, "min_p": 0.05, "num_gpu": 0},
            "keep_alive": 1800, "stream": stream}


async def test_continue_ollama_provider_request(client, workspace):
    response = await post(client, "/api/generate", continue_ollama_body(stream=True))
    assert response.status == 200 and response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = ndjson(await response.read())
    assert all(line["model"] == "qwen2.5-coder:1.5b" for line in lines), "the model name is echoed"
    streamed = "".join(line["response"] for line in lines)  # Continue yields every `response`
    plain = await (await post(client, "/api/generate", continue_ollama_body(stream=False))).json()
    assert streamed == plain["response"] and plain["done"] is True
    shown = await (await post(client, "/api/show", {"name": "qwen2.5-coder:1.5b"})).json()
    assert ".Suffix" in shown["template"], "Continue takes FIM support from the template"


async def test_ollama_streams_by_default_and_loads_on_an_empty_prompt(client):
    response = await post(client, "/api/generate", {"model": "cllm", "prompt": PROMPT, "options": {"num_predict": 4}})
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert ndjson(await response.read())[-1]["done"] is True
    loaded = await (await post(client, "/api/generate", {"model": "cllm"})).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load" and loaded["response"] == ""
    unloaded = await (await post(client, "/api/generate", {"model": "cllm", "keep_alive": 0})).json()
    assert unloaded["done_reason"] == "unload"
    version = await (await client.get("/api/version")).json()
    assert isinstance(version["version"], str)


@pytest.mark.parametrize("body, fragment", [
    ({"prompt": 3}, "prompt"),
    ({"prompt": "x", "options": {"num_predict": "8"}}, "num_predict"),
    ({"prompt": "x", "options": {"temperature": -1}}, "temperature"),
    ({"prompt": "x", "options": {"stop": [""]}}, "stop"),
    ({"prompt": "x", "options": []}, "options"),
    ({"prompt": "x", "raw": True, "system": "be brief"}, "raw"),
    ({"prompt": "x", "system": "be brief", "template": 3}, "template"),  # checked even when system is given
    ({"prompt": "x", "keep_alive": [1]}, "keep_alive"),
    ({"prompt": "x", "think": True}, "thinking"),
    ({"prompt": "x", "images": ["aGk="]}, "images"),
])
async def test_bad_ollama_requests_are_400_with_a_string_error(client, body, fragment):
    response = await post(client, "/api/generate", body)
    assert response.status == 400
    message = (await response.json())["error"]
    assert isinstance(message, str) and fragment in message


async def test_ollama_errors_are_strings_on_every_status(client, aiohttp_client, untrained):
    unauthorized = await client.post("/api/generate", json={"prompt": "x"})
    assert unauthorized.status == 401 and isinstance((await unauthorized.json())["error"], str)
    foreign = await client.post("/api/generate", json={"prompt": "x"},
                                headers={**client.headers, "Origin": "https://example.com"})
    assert foreign.status == 403 and "cross-origin" in (await foreign.json())["error"]
    unknown = await client.get("/api/nothing")
    assert unknown.status == 404 and isinstance((await unknown.json())["error"], str)
    bare = await start(aiohttp_client, untrained)
    assert await (await bare.get("/api/tags")).json() == {"models": []}
    assert await (await bare.get("/api/ps")).json() == {"models": []}
    missing = await post(bare, "/api/generate", {"model": "cllm", "prompt": "x"})
    assert missing.status == 404 and "not found" in (await missing.json())["error"]
    shown = await post(bare, "/api/show", {"model": "cllm"})
    assert shown.status == 404 and isinstance((await shown.json())["error"], str)
    openai_shape = await bare.post("/v1/completions", json={"prompt": "x"})
    assert isinstance((await openai_shape.json())["error"], dict), "the OpenAI routes keep their shape"


# ------------------------------------------------------------------------------------------- chat


@pytest.mark.parametrize("message, code", [
    ("int main(void) {\n", "int main(void) {\n"),
    ("Finish this:\n```c\nint a;\n```\nand this:\n```c\nint add(int a, int b) {\n```\n", "int add(int a, int b) {\n"),
    ("Go on:\n```\nint x = ", "int x = "),
    ("~~~c\nstatic int\n~~~", "static int\n"),
])
def test_chat_completes_the_last_fenced_block_else_the_message(message, code):
    assert code_of_message(message) == code


async def test_openai_chat_and_models_retrieve(live, workspace):
    server, token = live
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0)
    messages = [{"role": "system", "content": "You complete C code."},
                {"role": "user", "content": f"Complete:\n```c\n{PROMPT}```"}]
    expected = workspace.complete(PROMPT, "", max_tokens=8).text
    reply = await client.chat.completions.create(model="cllm", messages=messages, max_tokens=8)
    assert reply.choices[0].message.content == expected and reply.choices[0].message.role == "assistant"
    assert reply.usage.completion_tokens > 0 and reply.object == "chat.completion"
    stream = await client.chat.completions.create(model="cllm", messages=messages, max_completion_tokens=8,
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage.completion_tokens > 0
    retrieved = await client.models.retrieve("cllm")
    assert retrieved.id == "cllm" and retrieved.object == "model"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-4o")
    with pytest.raises(openai.BadRequestError, match="tools"):
        await client.chat.completions.create(model="cllm", messages=messages, tools=[{
            "type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    await client.close()


async def test_litellm_openai_model(live, workspace, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm's bundled price list, not a download
    litellm = pytest.importorskip("litellm")
    server, token = live
    reply = await litellm.acompletion(model="openai/cllm", api_base=f"{server.url}/v1", api_key=token,
                                      messages=[{"role": "user", "content": PROMPT}], max_tokens=8, temperature=0)
    assert reply.choices[0].message.content == workspace.complete(PROMPT, "", max_tokens=8).text


@pytest.mark.parametrize("body, fragment", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "hi"}]}, "user"),
    ({"messages": [{"content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "content"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "8"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}, "response_format"),
])
async def test_bad_chat_requests_are_400(client, body, fragment):
    response = await post(client, "/v1/chat/completions", body)
    assert response.status == 400 and fragment in (await response.json())["error"]["message"]


# ------------------------------------------------------------------------------------------- llama.cpp


def continue_llama_cpp_text(raw: str) -> str:
    """A stream read as Continue's llama.cpp provider reads it (core/llm/llms/LlamaCpp.ts): every `data:` event's
    `content`, when it is not empty, is appended."""
    events = [json.loads(line[len("data:"):]) for line in raw.split("\n") if line.startswith("data:")]
    return "".join(event["content"] for event in events if event.get("content"))


@pytest.mark.parametrize("path, body", [
    ("/completion", {"prompt": PROMPT, "n_predict": 12}),
    ("/infill", {"input_prefix": PROMPT, "input_suffix": SUFFIX, "n_predict": 12}),
])
async def test_a_llama_stream_reassembled_as_continue_does_is_the_plain_text(client, path, body):
    plain = await (await post(client, path, body)).json()
    raw = (await (await post(client, path, {**body, "stream": True})).read()).decode()
    assert continue_llama_cpp_text(raw) == plain["content"]
    last = json.loads(raw.strip().split("\n")[-1][len("data: "):])
    assert last["stop"] is True and last["content"] == "" and last["tokens_predicted"] == plain["tokens_predicted"]


async def test_models_retrieve_is_public_and_knows_one_id(client, aiohttp_client, untrained):
    response = await client.get("/v1/models/cllm")
    assert response.status == 200 and (await response.json())["id"] == "cllm"
    bare = await start(aiohttp_client, untrained)
    missing = await bare.get("/v1/models/cllm")
    assert missing.status == 404 and "cllm" in (await missing.json())["error"]["message"]


async def test_props_has_what_llama_vscode_reads(client, workspace):
    props = await (await client.get("/props", headers=client.headers)).json()
    assert props["default_generation_settings"]["n_ctx"] == workspace.model.context
    assert props["total_slots"] == 1 and isinstance(props["model_path"], str)
    assert (await client.get("/props")).status == 401


async def test_health_is_503_loading_until_the_workspace_cache_serves(client, workspace):
    assert workspace.mixture_settled.wait(60)
    workspace.mixture_settled.clear()  # as between a model's load and its workspace cache
    response = await client.get("/health")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "loading model" and body["completer"] in ("transformer", "transformer+cache")
    workspace.mixture_settled.set()
    response = await client.get("/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}
