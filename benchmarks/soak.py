"""Soak: a user typing against `cllm lsp` while the workspace trains twice and a second client hammers `cllm serve`.

    python benchmarks/soak.py [--minutes 10] [--quick] [--idle-sockets 200]

The workspace is a copy of the demo corpus (training_data/brotli, from training_data/fetch_demo.py), served from
the start by a model trained on it for PRETRAIN_SECONDS beforehand (the transformer and the workspace cache, as
a user's would be), which each training replaces. All traffic stays on loopback. For `--minutes`:

- LSP: a simulated user types through the real C files, one character every 20 ms (50 inlineCompletion requests
  per second, each after its didChange); every request still pending when the next key comes is cancelled
  ($/cancelRequest), except every tenth, as an editor keeps the request of a pause;
- training: "Train on Workspace" (cllm.trainWorkspace) at 15 % and 55 % of the run (the second once the first
  is over), each with a time budget of a fifth of the run (`--train-seconds`); a status poll each second says
  whether a training runs;
- HTTP: `cllm serve` on the same workspace and model folder gets completions (`--http-rate` per second, one in
  four streamed), /v1/events listeners that connect, read a few seconds and drop, and `--idle-sockets`
  connections that send half a request header and then nothing (reopened when the server closes them).

Prints per interval (`--interval`, a minute by default): LSP completion latency p50/p95/p99 (answered requests,
from request to answer), the LSP requests answered/cancelled/errors, the HTTP completions answered/refused
(429, 503)/dropped (no response)/500s/other errors, and RSS and open descriptors of both servers (from /proc).
Then the totals against the goals: zero errors and 500s, RSS and descriptor growth after the first interval
under 10 %, LSP p95 within 50 ms idle and 150 ms while training. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

DEMO = Path(__file__).resolve().parent.parent / "training_data" / "brotli"
CLI = [sys.executable, "-m", "cllm.server.cli"]
KEY_INTERVAL = 0.02  # 50 keystrokes (and completion requests) per second
KEPT_EVERY = 10  # one request in ten is never cancelled
OPEN_CHARS, TYPED_CHARS = 600, 400  # each file opens with this much text; the user types this much more
PRETRAIN_SECONDS = 30  # the first model's training, before the soak starts
ANSWER_TIMEOUT = 30.0  # seconds without an answer after which a request counts as dropped
REQUEST_CANCELLED = -32800
GOALS = {"idle p95 ms": 50.0, "training p95 ms": 150.0, "growth": 0.10}


@dataclass
class Interval:
    """What one reporting interval saw."""

    lsp_ms: list[float] = field(default_factory=list)
    http_ms: list[float] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    trained: bool = False
    lsp_rss_mb: float = 0.0
    lsp_fds: int = 0
    http_rss_mb: float = 0.0
    http_fds: int = 0


class Soak:
    """Shared state of the clients: the current interval, whether training runs, the latency by phase."""

    def __init__(self, interval: float):
        self.interval = interval
        self.started = time.perf_counter()
        self.rows: list[Interval] = [Interval()]
        self.training = False
        self.by_phase: dict[str, list[float]] = {"idle": [], "training": []}
        self.trainings: list[tuple[float, str]] = []  # (seconds into the run, new training state)

    @property
    def now(self) -> Interval:
        return self.rows[-1]

    def count(self, what: str, n: int = 1) -> None:
        self.now.counts[what] += n

    def latency(self, ms: float, training: bool) -> None:
        self.now.lsp_ms.append(ms)
        self.by_phase["training" if training else "idle"].append(ms)


def proc_usage(pid: int) -> tuple[float, int]:
    """(RSS in MB, open file descriptors) of a process, from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


# -- the language server client ---------------------------------------------------------------------------


class LspClient:
    """A minimal JSON-RPC client of `cllm lsp` over stdio: requests with futures, cancellation, and an empty
    answer to every request the server makes (work-done progress creation)."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.reader = asyncio.ensure_future(self._read())

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params: dict) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: dict) -> tuple[int, asyncio.Future]:
        msg_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        self.send({"id": msg_id, "method": method, "params": params})
        return msg_id, future

    async def call(self, method: str, params: dict, timeout: float = 60.0) -> object:
        _, future = self.request(method, params)
        answer = await asyncio.wait_for(future, timeout)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result")

    async def _read(self) -> None:
        stdout = self.process.stdout
        while True:
            length = None
            while (line := await stdout.readline()) not in (b"\r\n", b"\n"):
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            message = json.loads(await stdout.readexactly(length))
            if "method" in message and "id" in message:  # a request of the server's: accept it
                self.send({"id": message["id"], "result": None})
            elif "id" in message and message["id"] in self.pending:
                future = self.pending.pop(message["id"])
                if not future.done():
                    future.set_result(message)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def type_files(client: LspClient, soak: Soak, files: list[Path], until: float) -> None:
    """Type through `files` one character per KEY_INTERVAL until `until`, cancelling stale requests."""
    stale: int | None = None  # the request the next keystroke cancels if it is still unanswered
    for path in itertools.cycle(files):
        text, uri = path.read_text(errors="replace"), path.as_uri()
        typed = text[:OPEN_CHARS]
        version = 1
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "c", "version": 1,
                                                                "text": typed}})
        lines = typed.split("\n")
        line, column = len(lines) - 1, utf16_len(lines[-1])
        for char in text[OPEN_CHARS:OPEN_CHARS + TYPED_CHARS]:
            if time.perf_counter() >= until:
                return
            tick = time.perf_counter()
            here = {"line": line, "character": column}
            line, column = (line + 1, 0) if char == "\n" else (line, column + utf16_len(char))
            version += 1
            client.notify("textDocument/didChange", {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"range": {"start": here, "end": here}, "text": char}]})
            if stale in client.pending:
                client.notify("$/cancelRequest", {"id": stale})
            msg_id, future = client.request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": line, "character": column},
                "context": {"triggerKind": 2}})
            stale = msg_id if version % KEPT_EVERY else None
            future.add_done_callback(_answered(soak, tick, soak.training))
            soak.count("lsp sent")
            await asyncio.sleep(max(0.0, KEY_INTERVAL - (time.perf_counter() - tick)))
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


def _answered(soak: Soak, sent: float, training: bool):
    def done(future: asyncio.Future) -> None:
        answer = future.result()
        if "result" in answer:
            soak.latency((time.perf_counter() - sent) * 1000.0, training)
            soak.count("lsp answered")
        elif answer["error"].get("code") == REQUEST_CANCELLED:
            soak.count("lsp cancelled")
        else:
            soak.count("lsp errors")
            soak.count(f"lsp error {answer['error'].get('code')}")
    return done


async def watch_dropped(client: LspClient, soak: Soak) -> None:
    """Count requests left unanswered for ANSWER_TIMEOUT seconds as dropped (and forget them); runs until
    cancelled."""
    sent_at: dict[int, float] = {}
    while True:
        now = time.perf_counter()
        for msg_id in list(client.pending):
            if now - sent_at.setdefault(msg_id, now) > ANSWER_TIMEOUT:
                client.pending.pop(msg_id, None)
                soak.count("lsp dropped")
        await asyncio.sleep(1.0)


async def settle(client: LspClient, soak: Soak) -> None:
    """Wait for the answers still due when the typing stops; those not there in ANSWER_TIMEOUT are dropped."""
    deadline = time.perf_counter() + ANSWER_TIMEOUT
    while client.pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    soak.count("lsp dropped", len(client.pending))


async def train_twice(client: LspClient, soak: Soak, duration: float) -> None:
    """Start "Train on Workspace" at 15 % and 55 % of the run (the second once the first is over); poll
    cllm.status every second meanwhile, noting when each training starts and ends."""
    starts = [soak.started + 0.15 * duration, soak.started + 0.55 * duration]
    end = soak.started + duration
    while time.perf_counter() < end:
        if starts and time.perf_counter() >= starts[0] and not soak.training:
            result = await client.call("workspace/executeCommand", {"command": "cllm.trainWorkspace"})
            if result.get("started"):
                starts.pop(0)
                soak.count("trainings started")
        status = await client.call("workspace/executeCommand", {"command": "cllm.status"})
        training = status["training"]["state"] == "training"
        if training != soak.training:
            soak.trainings.append((time.perf_counter() - soak.started, status["training"]["state"]))
        soak.training = training
        soak.now.trained |= training
        await asyncio.sleep(1.0)


# -- the HTTP clients -------------------------------------------------------------------------------------


@dataclass
class Http:
    url: str
    headers: dict
    pid: int


async def http_completions(http: Http, soak: Soak, prompts: list[str], rate: float, until: float) -> None:
    """POST /v1/completions at `rate` per second (one in four streamed), one at a time."""
    async with aiohttp.ClientSession(headers=http.headers, timeout=aiohttp.ClientTimeout(total=ANSWER_TIMEOUT)) as session:
        for n in itertools.count():
            if time.perf_counter() >= until:
                return
            tick = time.perf_counter()
            body = {"prompt": random.choice(prompts), "max_tokens": 16, "temperature": 0, "stream": n % 4 == 0}
            try:
                async with session.post(f"{http.url}/v1/completions", json=body) as response:
                    await response.read()
                    soak.count(_status_kind(response.status))
                    if response.status == 200:
                        soak.now.http_ms.append((time.perf_counter() - tick) * 1000.0)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                soak.count("http dropped")
            await asyncio.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - tick)))


def _status_kind(status: int) -> str:
    if status == 200:
        return "http answered"
    if status in (429, 503):
        return "http refused"
    return "http 500s" if status >= 500 else "http errors"


async def event_listener(http: Http, soak: Soak, until: float) -> None:
    """Connect to /v1/events, read for one to five seconds, drop the connection; again."""
    while time.perf_counter() < until:
        try:
            async with aiohttp.ClientSession(headers=http.headers) as session:
                async with session.get(f"{http.url}/v1/events") as response:
                    soak.count("events " + _status_kind(response.status).split(" ", 1)[1])
                    if response.status != 200:
                        await asyncio.sleep(1.0)  # refused: retry a second later
                        continue
                    leave = time.perf_counter() + random.uniform(1.0, 5.0)
                    with contextlib.suppress(asyncio.TimeoutError):
                        while not response.content.at_eof():
                            await asyncio.wait_for(response.content.readany(), leave - time.perf_counter())
        except aiohttp.ClientError:
            soak.count("events dropped")
        await asyncio.sleep(0.1)


async def idle_sockets(http: Http, soak: Soak, limit: int, until: float) -> None:
    """Keep `limit` connections open that sent half a request header; reopen those the server closes."""
    host, port = re.match(r"http://([^:/]+):(\d+)", http.url).groups()
    open_: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        while time.perf_counter() < until:
            still = []
            for reader, writer in open_:
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                    soak.count("idle closed by server")
                else:
                    still.append((reader, writer))
            open_ = still
            for _ in range(min(50, limit - len(open_))):  # at most 50 new ones a second
                try:
                    reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(f"GET /v1/status HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
                    open_.append((reader, writer))
                except OSError:
                    soak.count("idle refused")
                    break
            await asyncio.sleep(1.0)
    finally:
        for _, writer in open_:
            writer.close()


# -- set-up, report ---------------------------------------------------------------------------------------


def make_workspace(folder: Path, quick: bool, env: dict) -> tuple[Path, Path, list[Path]]:
    """A copy of the demo corpus, a model folder holding a first model trained on it for PRETRAIN_SECONDS (so
    the servers start as a user's would, with the transformer and the workspace cache, and a new training swaps
    like for like), and the C files to type through (those long enough for OPEN_CHARS + TYPED_CHARS)."""
    if not DEMO.is_dir():
        raise SystemExit(f"no demo corpus in {DEMO}: run `python training_data/fetch_demo.py` first")
    root, models = folder / "brotli", folder / "models"
    shutil.copytree(DEMO, root)
    sources = sorted(root.rglob("*.[ch]"))
    files = [p for p in sources if p.suffix == ".c" and p.stat().st_size > OPEN_CHARS + TYPED_CHARS]
    if quick:  # a smaller workspace trains and tokenizes faster
        for path in sources[40:]:
            if path not in files[:8]:
                path.unlink()
        files = files[:8]
    subprocess.run([*CLI, "train", str(root), "--out", str(models / "model.cllm"), "--time-budget",
                    str(PRETRAIN_SECONDS), "--json"], env=env, check=True, stdout=subprocess.DEVNULL)
    return root, models, files


def prompts_from(files: list[Path], n: int = 64) -> list[str]:
    """Prefixes of real code cut at random points, as HTTP prompts."""
    rng = random.Random(0)
    texts = [p.read_text(errors="replace") for p in files]
    return [text[max(0, cut - 1500):cut] for text in (rng.choice(texts) for _ in range(n))
            for cut in [rng.randrange(200, len(text))]]


def percentile(samples: list[float], q: float) -> str:
    return f"{np.percentile(samples, q):.0f}" if samples else "-"


def report(soak: Soak) -> None:
    rows = [row for row in soak.rows if row.lsp_rss_mb]
    head = (f"{'t':>5} {'train':>5} {'lsp n':>6} {'p50':>5} {'p95':>5} {'p99':>5} {'ans':>5} {'cxl':>5} {'err':>4} "
            f"{'drop':>4} | {'p95':>5} {'http ok':>7} {'refused':>7} {'drop':>4} {'500':>4} {'err':>4} {'ev ok':>5} | "
            f"{'lsp MB':>6} {'fds':>4} {'srv MB':>6} {'fds':>4}")
    print(head)
    for i, row in enumerate(rows, 1):
        c = row.counts
        print(f"{i * soak.interval / 60:>4.1f}m {'yes' if row.trained else 'no':>5} {c['lsp sent']:>6} "
              f"{percentile(row.lsp_ms, 50):>5} {percentile(row.lsp_ms, 95):>5} {percentile(row.lsp_ms, 99):>5} "
              f"{c['lsp answered']:>5} {c['lsp cancelled']:>5} {c['lsp errors']:>4} {c['lsp dropped']:>4} | "
              f"{percentile(row.http_ms, 95):>5} {c['http answered']:>7} {c['http refused']:>7} {c['http dropped']:>4} "
              f"{c['http 500s']:>4} {c['http errors']:>4} {c['events answered']:>5} | {row.lsp_rss_mb:>6.0f} {row.lsp_fds:>4} "
              f"{row.http_rss_mb:>6.0f} {row.http_fds:>4}")
    total = sum((row.counts for row in soak.rows), Counter())
    print(f"\ntotals: {dict(sorted(total.items()))}")
    errors = sum(total[k] for k in ("lsp errors", "lsp dropped", "http dropped", "http errors", "events dropped",
                                    "events errors"))
    print(f"errors {errors}, 500s {total['http 500s'] + total['events 500s']} (goal: 0 and 0)")
    print("training state changes (seconds into the run): "
          + ", ".join(f"{seconds:.0f} s {state}" for seconds, state in soak.trainings))
    first_trained = next((i for i, row in enumerate(rows) if row.trained), len(rows))
    after_training = next((i for i in range(first_trained, len(rows)) if not rows[i].trained), None)
    for name, since in (("the first interval", 0), ("the first training's model was loaded", after_training)):
        if since is None or since >= len(rows) - 1:
            continue
        for what, first, last in (("lsp RSS", rows[since].lsp_rss_mb, rows[-1].lsp_rss_mb),
                                  ("lsp fds", rows[since].lsp_fds, rows[-1].lsp_fds),
                                  ("serve RSS", rows[since].http_rss_mb, rows[-1].http_rss_mb),
                                  ("serve fds", rows[since].http_fds, rows[-1].http_fds)):
            print(f"{what} growth since {name}: {(last - first) / first:+.1%} (goal < {GOALS['growth']:.0%})")
    for phase in ("idle", "training"):
        samples = soak.by_phase[phase]
        print(f"lsp p95 {phase}: {percentile(samples, 95)} ms over {len(samples)} answers "
              f"(goal <= {GOALS[phase + ' p95 ms']:.0f} ms)")
    print(f"({os.cpu_count()} cores; the numbers include whatever else the machine runs)")


async def sample(soak: Soak, lsp_pid: int, http_pid: int, duration: float) -> None:
    """Close an interval every soak.interval seconds, recording both servers' RSS and descriptors."""
    for i in range(1, int(round(duration / soak.interval)) + 1):
        await asyncio.sleep(max(0.0, soak.started + i * soak.interval - time.perf_counter()))
        soak.now.lsp_rss_mb, soak.now.lsp_fds = proc_usage(lsp_pid)
        soak.now.http_rss_mb, soak.now.http_fds = proc_usage(http_pid)
        soak.now.trained |= soak.training
        soak.rows.append(Interval())


async def start_serve(root: Path, models: Path, env: dict) -> tuple[asyncio.subprocess.Process, Http]:
    process = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--workspace", str(root), "--model-dir", str(models), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
    line = (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
    url = re.search(r"at (http://\S+)/v1", line).group(1)
    token = (models / "token").read_text().strip()
    return process, Http(url, {"Authorization": f"Bearer {token}"}, process.pid)


async def run(args: argparse.Namespace) -> None:
    duration = args.minutes * 60.0
    with tempfile.TemporaryDirectory(prefix="cllm-soak-") as tmp:
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        root, models, files = make_workspace(Path(tmp), args.quick, env)
        serve, http = await start_serve(root, models, env)
        lsp = await asyncio.create_subprocess_exec(*CLI, "lsp", stdin=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                                                   env=env)
        client = LspClient(lsp)
        budget = args.train_seconds or max(20.0, duration / 5)
        await client.call("initialize", {
            "processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {"window": {"workDoneProgress": True}},
            "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
            "initializationOptions": {"modelDir": str(models), "maxTokens": 16, "training": {"timeBudget": budget}}},
            timeout=120)
        client.notify("initialized", {})
        soak = Soak(args.interval)
        until = soak.started + duration
        prompts = prompts_from(files)
        watcher = asyncio.ensure_future(watch_dropped(client, soak))
        try:
            await asyncio.gather(
                type_files(client, soak, files, until), train_twice(client, soak, duration),
                sample(soak, lsp.pid, serve.pid, duration), http_completions(http, soak, prompts, args.http_rate, until),
                idle_sockets(http, soak, args.idle_sockets, until),
                *(event_listener(http, soak, until) for _ in range(args.listeners)))
            await settle(client, soak)
        finally:
            with contextlib.suppress(Exception):
                await client.call("workspace/executeCommand", {"command": "cllm.cancelTraining"}, timeout=10)
                await client.call("shutdown", {}, timeout=30)
                client.notify("exit", {})
            serve.terminate()
            for process in (lsp, serve):
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except asyncio.TimeoutError:
                    process.kill()
            client.reader.cancel()
            watcher.cancel()
        late = soak.rows.pop()  # the interval opened after the last one closed: answers that came late
        soak.rows[-1].counts += late.counts
        print(f"soak: {args.minutes:g} min, {len(files)} C files typed at {1 / KEY_INTERVAL:.0f} requests/s, "
              f"{args.http_rate:g} HTTP completions/s, {args.listeners} event listeners, {args.idle_sockets} idle sockets; "
              f"lsp exit {lsp.returncode}, serve exit {serve.returncode}")
        report(soak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="2 minutes on a smaller workspace, 20 s rows")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per table row")
    parser.add_argument("--train-seconds", type=float, help="each training's time budget (default: a fifth of the run)")
    parser.add_argument("--http-rate", type=float, default=10.0, help="HTTP completions per second")
    parser.add_argument("--listeners", type=int, default=4, help="concurrent /v1/events listeners")
    parser.add_argument("--idle-sockets", type=int, default=200, help="idle connections held open")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.interval = 2.0, 20.0
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
