"""Completion latency of the seed configuration at batch 1: decode, cold prompt, keystrokes.

    python benchmarks/completion_latency.py [--repeats 30] [--keystrokes 120] [--compare-torch] [--position-encoding rope]

The model is the seed shape (vocab 10,000, d 256, 4 layers, 8 heads, FFN 1024, 512 positions) with random
weights (latency does not depend on training); the tokenizer is trained on synthetic C. Scenarios:

- decode: one token through the KV cache with 256+ positions cached (ms per token), with the fp32 output head
  (sampling, healing-restricted picks) and with the int8 greedy head (greedy picks; the same tokens);
- cold: a fresh document, a prompt filling the context minus 24 tokens (488 with 512 positions: prompt +
  completion stay within the model's context), then 24 new tokens, through `Completer.complete`;
- keystroke: the user types on (1-3 characters per request) in a ~400-token document, single-line completion of
  up to 24 tokens, reusing the document's cache; "+suffix" is the same with text after the cursor (FIM prompt).

Prints wall-clock p50/p95/p99 per scenario next to the issue's targets, and p50/p95 of the thread's CPU time
(on a machine busy with other work the wall clock includes waiting for a core; CPU time is the idle-machine cost).
BLAS runs on one thread, as in `Completer.complete`. With --compare-torch (only when torch is importable;
it is not a dependency) the same weights run a PyTorch eager KV-cache decode in the same process.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import ThreadpoolController

from cllm.engine import Completer, CompletionOptions, Model
from cllm.engine.config import POSITIONS, ModelConfig
from cllm.engine.events import TrainingMetadata
from cllm.engine.model.network import infer, new_cache
from cllm.engine.model.params import init_params, views
from cllm.engine.model.tokenizer import Tokenizer

TARGETS = {"decode": 1.0, "cold": 80.0, "keystroke": 40.0}  # ms: decode per token p50, cold p50, keystroke p95


def synthetic_c(n_functions: int, seed: int) -> str:
    """Plausible, varied C source (function definitions with loops and calls) for tokenizer and prompts."""
    rng = np.random.default_rng(seed)
    names = ["count", "total", "index", "buffer", "length", "value", "result", "offset", "node", "state"]
    types = ["int", "size_t", "uint32_t", "const char *", "double", "struct node *"]
    parts = ["#include <stdio.h>\n#include <stdlib.h>\n\n"]
    for f in range(n_functions):
        a, b, c = (names[i] + str(rng.integers(100)) for i in rng.choice(len(names), 3, replace=False))
        t = types[rng.integers(len(types))]
        parts.append(
            f"static {t} compute_{a}_{f}({t} {b}, int {c}) {{\n"
            f"    int {a} = {rng.integers(1000)};\n"
            f"    for (int i = 0; i < {c}; i++) {{\n"
            f"        {a} += process_{b}(i, {rng.integers(64)});\n"
            f"        if ({a} > {rng.integers(10_000)}) {{\n            break;\n        }}\n    }}\n"
            f"    /* {a} now holds the sum of the processed {b} values */\n"
            f"    return ({t}){a};\n}}\n\n")
    return "".join(parts)


def seed_model(positions: str = ModelConfig.positions) -> Model:
    """The seed-configuration model (with the given positions) with random weights and a tokenizer trained on
    synthetic C.

    Tokens that would end a completion early (special tokens, newlines, brackets) get zero embeddings, so their
    logits stay near 0 and the random model generates every requested token: the timings then cover 24 tokens."""
    cfg = ModelConfig(positions=positions)
    tokenizer = Tokenizer.train([synthetic_c(400, 1)], vocab_size=cfg.vocab_size)
    params = init_params(cfg, seed=0)
    wte = views(params, cfg)["wte"]
    for i in range(tokenizer.vocab_size):
        if i < 5 or any(c in tokenizer.token_bytes(i) for c in b"\n{}()[];"):
            wte[i] = 0.0
    return Model(cfg, params, tokenizer, TrainingMetadata())


def percentiles(samples_ms: list[float]) -> tuple[float, float, float]:
    p = np.percentile(np.asarray(samples_ms), [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


def bench_decode(model: Model, steps: int, greedy: bool) -> tuple[list[float], list[float]]:
    """Wall and CPU ms per decode step (one token through infer) with 256 to 256 + steps positions cached,
    through the fp32 head or (greedy) the model's int8 greedy head."""
    head = model.greedy_head if greedy else None
    cfg = model.config
    rng = np.random.default_rng(0)
    cache = new_cache(cfg)
    infer(model.params, cfg, rng.integers(5, cfg.vocab_size, 256).astype(np.int32), cache)
    token = np.zeros(1, np.int32)
    wall, cpu = [], []
    for _ in range(steps):
        token[0] = rng.integers(5, cfg.vocab_size)
        t, c = time.perf_counter(), time.thread_time()
        infer(model.params, cfg, token, cache, greedy=head)
        wall.append((time.perf_counter() - t) * 1000.0)
        cpu.append((time.thread_time() - c) * 1000.0)
    return wall, cpu


def timed_complete(completer: Completer, *args, **kwargs) -> tuple[float, float, int]:
    """One request: (wall ms as the Completion reports it, CPU ms of this thread, tokens generated)."""
    cpu = time.thread_time()
    result = completer.complete(*args, **kwargs)
    return result.ms, (time.thread_time() - cpu) * 1000.0, result.tokens


def bench_cold(model: Model, repeats: int) -> tuple[list[float], list[float], list[int], int]:
    """Fresh-document completions of 24 tokens after a context-filling prompt: wall ms, CPU ms, tokens, prompt."""
    completer = Completer(model, cache_slots=2)
    text = synthetic_c(60, 2)
    options = CompletionOptions(max_tokens=24, multiline=True, max_ms=1e9)
    wall, cpu, tokens = [], [], []
    for i in range(repeats + 1):
        # A new header each time: nothing of the previous prompt can be reused.
        ms, cpu_ms, n = timed_complete(completer, text, "", options, path=f"src/file_{i}.c", doc_key="cold")
        if i:
            wall.append(ms)
            cpu.append(cpu_ms)
            tokens.append(n)
    prompt_tokens = len(completer.cached_ids("cold")) - max(0, tokens[-1] - 1)
    return wall, cpu, tokens, prompt_tokens


def bench_keystrokes(model: Model, keystrokes: int,
                     with_suffix: bool) -> tuple[list[float], list[float], list[int], float]:
    """Typing 1-3 characters per request into the middle of a document (the text after the cursor stays):
    wall ms, CPU ms, tokens, and the mean share of each prompt that came from the cache."""
    completer = Completer(model)
    text = synthetic_c(40, 3)
    cursor = text.index("\n", len(text) // 2) + 1
    before, after = text[:cursor], text[cursor:] if with_suffix else ""
    typed = synthetic_c(20, 5)
    rng = np.random.default_rng(4)
    options = CompletionOptions(max_tokens=24, max_ms=1e9)
    wall, cpu, tokens, reuse = [], [], [], []
    at = 0
    for i in range(keystrokes + 1):
        run, reused = completer.tokens_run, completer.tokens_reused
        ms, cpu_ms, n = timed_complete(completer, before + typed[:at], after, options, path="src/typing.c",
                                       doc_key="typing")
        if i:
            wall.append(ms)
            cpu.append(cpu_ms)
            tokens.append(n)
            hit = completer.tokens_reused - reused
            fresh = completer.tokens_run - run - max(0, n - 1)
            reuse.append(hit / max(1, hit + fresh))
        at += int(rng.integers(1, 4))
    return wall, cpu, tokens, float(np.mean(reuse))


def torch_decode(model: Model, steps: int) -> list[float] | None:
    """The same weights in PyTorch eager with a KV cache: ms per decode step at 256+ cached, or None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    cfg, P = model.config, {k: torch.from_numpy(v) for k, v in views(model.params, model.config).items()}
    H, hd = cfg.n_heads, cfg.head_dim
    ln = torch.nn.functional.layer_norm
    ks = [torch.zeros(H, cfg.max_seq_len, hd) for _ in range(cfg.n_layers)]
    vs = [torch.zeros(H, cfg.max_seq_len, hd) for _ in range(cfg.n_layers)]

    def step(token: int, pos: int) -> torch.Tensor:
        x = P["wte"][token] + P["wpe"][pos]
        for layer in range(cfg.n_layers):
            W = {k.split(".", 2)[2]: v for k, v in P.items() if k.startswith(f"layers.{layer}.")}
            h = ln(x, (cfg.d_model,), W["ln1.weight"], W["ln1.bias"], 1e-5)
            qkv = h @ W["attn.qkv.weight"] + W["attn.qkv.bias"]
            q, k, v = qkv.view(3, H, hd)
            ks[layer][:, pos], vs[layer][:, pos] = k, v
            att = torch.softmax((ks[layer][:, :pos + 1] @ q.unsqueeze(-1)).squeeze(-1) / hd ** 0.5, -1)
            y = (att.unsqueeze(1) @ vs[layer][:, :pos + 1]).reshape(-1)
            x = x + y @ W["attn.proj.weight"] + W["attn.proj.bias"]
            h = ln(x, (cfg.d_model,), W["ln2.weight"], W["ln2.bias"], 1e-5)
            g = torch.nn.functional.gelu(h @ W["mlp.fc.weight"] + W["mlp.fc.bias"], approximate="tanh")
            x = x + g @ W["mlp.proj.weight"] + W["mlp.proj.bias"]
        return P["wte"] @ ln(x, (cfg.d_model,), P["ln_f.weight"], P["ln_f.bias"], 1e-5)

    times = []
    with torch.inference_mode():
        for pos in range(256 + steps):
            t = time.perf_counter()
            step(pos % cfg.vocab_size, pos)
            if pos >= 256:
                times.append((time.perf_counter() - t) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="cold completions to time")
    parser.add_argument("--keystrokes", type=int, default=120, help="keystroke completions to time per variant")
    parser.add_argument("--decode-steps", type=int, default=200)
    parser.add_argument("--compare-torch", action="store_true", help="(learned positions only)")
    parser.add_argument("--position-encoding", choices=POSITIONS,
                        help=f"the model's positions (default {ModelConfig.positions}; learned with --compare-torch)")
    args = parser.parse_args()
    if args.compare_torch and args.position_encoding not in (None, "learned"):
        parser.error("--compare-torch: the torch decode has learned positions only")
    args.position_encoding = args.position_encoding or ("learned" if args.compare_torch else ModelConfig.positions)

    model = seed_model(args.position_encoding)
    Completer(model).complete("int x", "")  # compile / load the kernels
    rows = []
    with ThreadpoolController().limit(limits=1, user_api="blas"):  # as Completer.complete runs it
        for greedy, name in ((False, "fp32 head"), (True, "int8 greedy head")):
            decode, decode_cpu = bench_decode(model, args.decode_steps, greedy)
            rows.append((f"decode, {name} (ms/token, 256+ cached)", decode, decode_cpu,
                         f"target p50 <= {TARGETS['decode']}"))
    cold, cold_cpu, cold_tokens, prompt_tokens = bench_cold(model, args.repeats)
    rows.append((f"cold: {prompt_tokens}-token prompt + {np.mean(cold_tokens):.0f} tokens", cold, cold_cpu,
                 f"target p50 <= {TARGETS['cold']:.0f}"))
    for with_suffix in (False, True):
        keys, keys_cpu, key_tokens, reuse = bench_keystrokes(model, args.keystrokes, with_suffix)
        name = "keystroke" + (" +suffix" if with_suffix else "")
        rows.append((f"{name}: +1-3 chars, {np.mean(key_tokens):.0f} tokens, {reuse:.0%} reused", keys, keys_cpu,
                     f"target p95 <= {TARGETS['keystroke']:.0f}"))
    if args.compare_torch:
        torch_times = torch_decode(model, args.decode_steps)
        if torch_times is None:
            print("--compare-torch: torch is not installed; skipped")
        else:
            rows.append(("torch eager decode (ms/token, 256+ cached)", torch_times, None, "reference"))
    print(f"{'scenario':<52} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'cpu p95':>8}  note")
    for name, samples, cpu, note in rows:
        p50, p95, p99 = percentiles(samples)
        cpu_cols = "".join(f" {v:8.2f}" for v in percentiles(cpu)[:2]) if cpu else " " * 18
        print(f"{name:<52} {len(samples):>4} {p50:>8.2f} {p95:>8.2f} {p99:>8.2f}{cpu_cols}  {note}")
    print("ms = wall clock (what the user waits); cpu = this thread's CPU time (the cost on an idle machine)")


if __name__ == "__main__":
    main()
