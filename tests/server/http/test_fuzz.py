"""The HTTP API fuzzed from its own OpenAPI description (schemathesis against a live `cllm serve`).

A real `cllm serve` subprocess with a tiny trained model answers every operation of GET /openapi.json with
cases generated from the schema (valid ones and, in negative mode, ones that break it). Every case must end in a
declared status and body: never a 5xx, never a response that contradicts the description, never a dead or
deaf process. CLLM_FUZZ_EXAMPLES sets the cases per operation and mode (default 200: about 2,300 requests, as
the operations without inputs have a single case), CLLM_FUZZ_SEED the seed (default: a random one, printed on
failure).

Bounds that keep one run short:
- completions cost at most the tiny model's context (TINY_SEQ_LEN tokens, the server lowers max_tokens and
  n_predict to it), so a generated `max_tokens: 2048` generates a few dozen tokens of a 32-wide model;
- a training that a case starts (POST /v1/train answering 202) is cancelled at once, so the model file is never
  replaced and no trainer outlives its case (the 202 and the cancel are both checked);
- GET /v1/events is an endless stream: a case reads its first two events (status, history) and hangs up.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from conftest import write_tiny_sources

FUZZ_EXAMPLES = int(os.environ.get("CLLM_FUZZ_EXAMPLES", "200"))
FUZZ_SEED = os.environ.get("CLLM_FUZZ_SEED")
# Every route but GET /openapi.json: schemathesis leaves out the operation it loaded the schema from (the
# loading is that operation's test).
OPERATIONS = ("dashboard", "static", "status", "models", "model", "completions", "completions_without_v1",
              "chat_completions", "infill", "llama_completion", "props", "health", "train", "cancel", "events",
              "ollama_generate", "ollama_tags", "ollama_show", "ollama_version", "ollama_ps")
WITH_INPUTS = ("static", "model", "completions", "completions_without_v1", "chat_completions", "infill",
               "llama_completion", "train", "ollama_generate", "ollama_show")
TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
REQUEST_TIMEOUT = 30.0  # a case that takes longer is a hang


@dataclass
class LiveServer:
    """A `cllm serve` subprocess and its base URL."""

    process: subprocess.Popen
    url: str


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> Iterator[LiveServer]:
    """`cllm serve --port 0 --api-key TOKEN` over the tiny sources with the tiny model; afterwards the process
    must still answer /v1/status and stop cleanly on SIGINT."""
    base = tmp_path_factory.mktemp("fuzz")
    root = write_tiny_sources(base / "ws")
    model_dir = base / "model"
    model_dir.mkdir()
    shutil.copy(tiny_model_path, model_dir / "model.cllm")
    process = subprocess.Popen([sys.executable, "-m", "cllm.server.cli", "serve", "--workspace", str(root),
                                "--port", "0", "--model-dir", str(model_dir), "--api-key", TOKEN],
                               stdout=subprocess.PIPE, stderr=(base / "server.log").open("w"), text=True)
    try:
        first = process.stdout.readline()
        assert " at " in first, f"cllm serve did not start: {first!r}; log: {(base / 'server.log').read_text()}"
        url = first.split(" at ")[1].split()[0].removesuffix("/v1")
        yield LiveServer(process, url)
        assert process.poll() is None, "the server died during the fuzzing"
        assert requests.get(f"{url}/v1/status", timeout=REQUEST_TIMEOUT).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        log = (base / "server.log").read_text()
        assert "Traceback" not in log and "internal error" not in log, log[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def api_schema(live_server: LiveServer):
    """The schema as the live server publishes it."""
    loaded = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json", timeout=REQUEST_TIMEOUT)
    loaded.config.generation.with_security_parameters = False  # every case carries the valid token (AUTH)
    loaded.config.max_stream_events = 2  # /v1/events: the status and history events, then it would idle forever
    return loaded


def test_every_operation_is_fuzzed(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {operation.definition.raw["operationId"] for operation in operations} == set(OPERATIONS)
    with_inputs = {operation.definition.raw["operationId"] for operation in operations
                   if operation.body or list(operation.iter_parameters())}
    assert with_inputs == set(WITH_INPUTS), "negative cases need a body or a parameter to break"


@pytest.mark.parametrize("operation_id, mode", [(operation_id, GenerationMode.POSITIVE) for operation_id in OPERATIONS]
                         + [(operation_id, GenerationMode.NEGATIVE) for operation_id in WITH_INPUTS],
                         ids=lambda value: getattr(value, "value", value))
def test_every_generated_request_gets_a_declared_answer(api_schema, live_server: LiveServer, operation_id: str,
                                                        mode: GenerationMode):
    operation = api_schema.find_operation_by_id(operation_id)

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode))
    def answered(case) -> None:
        response = case.call(base_url=live_server.url, headers=AUTH, timeout=REQUEST_TIMEOUT)
        case.validate_response(response, checks=CHECKS)
        if operation_id == "train" and response.status_code == 202:
            cancel = requests.post(f"{live_server.url}/v1/train/cancel", headers=AUTH, timeout=REQUEST_TIMEOUT)
            assert cancel.json() == {"cancelled": True}
        assert live_server.process.poll() is None, "the server died"

    if FUZZ_SEED is not None:
        answered = seed(int(FUZZ_SEED))(answered)
    answered()
