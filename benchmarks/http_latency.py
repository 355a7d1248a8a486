"""What the model server adds to a completion, and how fast it fans training events out.

    python benchmarks/http_latency.py [--repeats 200] [--listeners 8] [--events 2000]

A small random-weight model (latency of the HTTP layer does not depend on training) is served by `serve_http` on
loopback. Scenarios:

- direct: Workspace.complete in the same process (the floor);
- http: POST /v1/completions (non-streamed) from an aiohttp client on the same machine;
- http stream: the same with `stream: true` (SSE chunks then [DONE]);
- events: `--events` step events (with 12 sphere records each) published while `--listeners` clients read
  /v1/events; reports the events per second delivered to every listener.

Prints p50/p95 milliseconds per completion scenario and the event throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from cllm.engine.model.checkpoint import Checkpoint, save_checkpoint
from cllm.engine.config import ModelConfig
from cllm.engine.model.params import init_params
from cllm.engine.model.tokenizer import Tokenizer
from cllm.server.http.app import HUB, serve_http
from cllm.server.workspace import Workspace

PROMPT = "static int add(int a, int b)\n{\n    return a + b;\n}\n\nint main(void)\n{\n    int total = "
BODY = {"model": "cllm", "prompt": PROMPT, "max_tokens": 16, "temperature": 0}


def small_model(folder: Path) -> None:
    """A random-weight model (vocab ~400, d 64, 2 layers) saved as folder/model.cllm."""
    texts = [PROMPT * 4, "for (int i = 0; i < n; i++) {\n    sum += v[i];\n}\n" * 8]
    tokenizer = Tokenizer.train(texts, vocab_size=400)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=64, n_layers=2, n_heads=4, d_ff=256,
                      max_seq_len=256, dropout=0.0)
    save_checkpoint(folder / "model.cllm", Checkpoint(cfg, tokenizer.to_json(), init_params(cfg, 0), {"seq_len": 256}))


def percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


async def time_requests(session: aiohttp.ClientSession, url: str, headers: dict, body: dict, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        async with session.post(url, json=body, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def event_throughput(server, workspace: Workspace, headers: dict, listeners: int, events: int) -> float:
    """Events per second delivered to every listener (the slowest one counts)."""
    hub = server.runner.app[HUB]
    hub.queue_size = events + 16
    spheres = [{"id": i, "sequences": 2, "tokens": 256, "busy": 0.01, "wait": 0.001, "loss": 3.0} for i in range(12)]

    async def listen(session: aiohttp.ClientSession, ready: asyncio.Event) -> None:
        async with session.get(f"{server.url}/v1/events", headers=headers) as response:
            seen = 0
            async for line in response.content:
                if line.startswith(b"data: {\"event\":\"history\""):
                    ready.set()
                elif line.startswith(b"data: {\"event\":\"step\""):
                    seen += 1
                    if seen == events:
                        return

    async with aiohttp.ClientSession() as session:
        readies = [asyncio.Event() for _ in range(listeners)]
        tasks = [asyncio.create_task(listen(session, ready)) for ready in readies]
        await asyncio.gather(*(ready.wait() for ready in readies))
        start = time.perf_counter()
        for step in range(events):
            hub.on_event({"event": "step", "step": step, "loss": 3.0, "tokens_per_second": 1e4, "spheres": spheres})
        await asyncio.gather(*tasks)
        return events / (time.perf_counter() - start)


async def main(repeats: int, listeners: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "ws").mkdir()
        small_model(folder / "model")
        workspace = Workspace(folder / "ws", model_dir=folder / "model")
        server = await serve_http(workspace, "127.0.0.1", 0)
        headers = {"Authorization": f"Bearer {server.policy.token}"}
        rows = []
        try:
            workspace.complete(PROMPT, max_tokens=16)
            direct = []
            for _ in range(repeats):
                start = time.perf_counter()
                workspace.complete(PROMPT, max_tokens=16)
                direct.append((time.perf_counter() - start) * 1000)
            rows.append(("direct Workspace.complete", *percentiles(direct)))
            async with aiohttp.ClientSession() as session:
                url = f"{server.url}/v1/completions"
                rows.append(("POST /v1/completions", *percentiles(await time_requests(session, url, headers, BODY, repeats))))
                rows.append(("POST /v1/completions stream",
                             *percentiles(await time_requests(session, url, headers, {**BODY, "stream": True}, repeats))))
            rate = await event_throughput(server, workspace, headers, listeners, events)
        finally:
            await server.close()
            workspace.close()
    print(f"{'scenario (16 tokens)':<32}{'p50 ms':>10}{'p95 ms':>10}")
    for name, p50, p95 in rows:
        print(f"{name:<32}{p50:>10.2f}{p95:>10.2f}")
    print(f"\n/v1/events: {rate:,.0f} step events/s delivered to each of {listeners} listeners "
          f"(the trainer sends at most 4/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--listeners", type=int, default=8)
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.repeats, args.listeners, args.events))
