"""Every HTTP answer says where a copied suggestion came from: `source` on the OpenAI choices, the llama.cpp final
object and the Ollama final object, streamed or not; null for a suggestion that was not copied."""

from __future__ import annotations

from pathlib import Path

import pytest

from cllm.server.workspace import Workspace
from conftest import SECOND_COPY, SECOND_COPY_TEXT, write_copy_workspace
from test_app import post, sse_events, start
from test_clients import ndjson

NOT_COPIED = "int main(void) {\n    "


@pytest.fixture
def workspace(tmp_path: Path, tiny_model_path: Path):
    root = write_copy_workspace(tmp_path / "ws", tiny_model_path, tmp_path / "model")
    ws = Workspace(root, settings={"multiline": True}, model_dir=tmp_path / "model")
    assert ws.mixture_settled.wait(120) and ws.status()["completer"] == "transformer+cache"
    yield ws
    ws.close()


@pytest.fixture
async def client(aiohttp_client, workspace):
    return await start(aiohttp_client, workspace)


async def test_openai_choices_name_the_copy(client, workspace):
    request = {"prompt": [SECOND_COPY, NOT_COPIED], "path": "src/b.c"}
    body = await (await post(client, "/v1/completions", request)).json()
    copied, fresh = body["choices"]
    assert (copied["text"], copied["source"]) == (SECOND_COPY_TEXT, "src/a.c:4")
    assert fresh["text"] and fresh["source"] is None
    chat = await (await post(client, "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": SECOND_COPY}]})).json()
    assert chat["choices"][0]["message"]["content"] == SECOND_COPY_TEXT
    assert chat["choices"][0]["source"] == "src/a.c:4"


async def test_a_stream_names_the_copy_with_its_finish_reason(client):
    response = await post(client, "/v1/completions", {"prompt": SECOND_COPY, "stream": True})
    chunks = [chunk async for chunk in sse_events(response)]
    assert "".join(c["choices"][0]["text"] for c in chunks) == SECOND_COPY_TEXT
    assert [c["choices"][0].get("source") for c in chunks if c["choices"][0]["finish_reason"]] == ["src/a.c:4"]


@pytest.mark.parametrize("stream", [False, True])
async def test_llama_cpp_and_ollama_final_objects_name_the_copy(client, stream):
    infill = await post(client, "/infill", {"input_prefix": SECOND_COPY, "stream": stream})
    final = [c async for c in sse_events(infill)][-1] if stream else await infill.json()
    assert final["stop"] is True and final["source"] == "src/a.c:4"
    generate = await post(client, "/api/generate", {"model": "cllm", "prompt": SECOND_COPY, "stream": stream})
    final = ndjson(await generate.read())[-1]
    assert final["done"] is True and final["source"] == "src/a.c:4"
    plain = await (await post(client, "/api/generate", {"prompt": NOT_COPIED, "stream": False})).json()
    assert plain["response"] and plain["source"] is None
