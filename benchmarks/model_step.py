"""Speed of the model: forward_backward on one sphere's shard (1 and 2 threads), prefill and KV-cache decode.

Usage: .venv/bin/python benchmarks/model_step.py [--batch 3] [--seq-len 128] [--context 256] [--repeats 20]
Prints a table of medians for the seed configuration (engine/config.py defaults) with BLAS
limited to one thread, which is how a sphere (and the completer) runs it.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cllm.engine.config import ModelConfig
from cllm.engine.model.network import forward_backward, greedy_head, infer, make_scratch, new_cache
from cllm.engine.model.params import init_params

FLOP_PER_TOKEN = 35.8e6


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of this thread (CPU time is less disturbed by other load)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.thread_time() - start_cpu)
    return float(np.median(wall)), float(np.median(cpu))


def _threads_rate(cfg: ModelConfig, params: np.ndarray, inputs: np.ndarray, threads: int,
                  repeats: int) -> tuple[float, float]:
    """forward_backward on `threads` threads at once, each with its own scratch and gradients (as the
    spheres run it). Returns (wall tokens/s, tokens/s implied by each thread's median CPU time):
    on a machine busy with other work the second shows what free cores would give."""
    cpu: list[float] = []
    barrier = threading.Barrier(threads)

    def work(seed: int) -> None:
        grads, scratch = np.zeros_like(params), make_scratch(cfg, *inputs.shape)
        times = []
        for i in range(repeats + 1):
            if i == 1:
                barrier.wait()
            start = time.thread_time()
            forward_backward(params, grads, inputs, inputs, cfg, scratch, dropout=cfg.dropout, seed=seed + i,
                             loss_scale=1.0)
            times.append(time.thread_time() - start)
        cpu.append(float(np.median(times[1:])))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    wall = time.perf_counter() - start
    return threads * (repeats + 1) * inputs.size / wall, sum(inputs.size / c for c in cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--context", type=int, default=256, help="prompt tokens for prefill; cached tokens for decode")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    cfg = ModelConfig()
    params = init_params(cfg, 0)
    grads = np.zeros_like(params)
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, cfg.vocab_size, (args.batch, args.seq_len)).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, (args.batch, args.seq_len)).astype(np.int32)
    scratch = make_scratch(cfg, args.batch, args.seq_len)
    tokens = inputs.size
    prompt = rng.integers(0, cfg.vocab_size, args.context).astype(np.int32)
    cache = new_cache(cfg)

    def step():
        forward_backward(params, grads, inputs, targets, cfg, scratch, dropout=cfg.dropout, seed=1, loss_scale=1.0)

    decode_at = min(args.context, cfg.max_seq_len - 1)

    head = greedy_head(params, cfg)

    def decode(greedy=None):
        cache.length = decode_at
        infer(params, cfg, prompt[:1], cache, greedy=greedy)

    def prefill():
        cache.length = 0
        infer(params, cfg, prompt, cache)

    rows = []
    with threadpool_limits(1):
        t, cpu = _median_seconds(step, args.repeats)
        rows.append((f"forward_backward {args.batch}x{args.seq_len}, 1 thread", t, cpu,
                     f"{tokens / t:,.0f} tok/s wall, {tokens / cpu:,.0f} tok/s cpu, "
                     f"{tokens * FLOP_PER_TOKEN / cpu / 1e9:.1f} GFLOP/s cpu"))
        prefill()
        t, cpu = _median_seconds(prefill, args.repeats)
        rows.append((f"prefill {args.context} tokens, 1 thread", t, cpu, f"{args.context / t:,.0f} tok/s wall"))
        t, cpu = _median_seconds(decode, args.repeats * 20)
        rows.append((f"decode at {decode_at} cached, 1 thread", t, cpu, f"{1 / t:,.0f} tok/s wall"))
        t, cpu = _median_seconds(lambda: decode(head), args.repeats * 20)
        rows.append((f"decode at {decode_at} cached, int8 greedy head", t, cpu, f"{1 / t:,.0f} tok/s wall"))
        wall_rate, cpu_rate = _threads_rate(cfg, params, inputs, 2, args.repeats)
        rows.append((f"forward_backward {args.batch}x{args.seq_len}, 2 threads at once", None, None,
                     f"{wall_rate:,.0f} tok/s wall, {cpu_rate:,.0f} tok/s cpu"))
    print(f"{'measurement':<48} {'wall ms':>9} {'cpu ms':>9}  rate")
    for name, wall, cpu, rate in rows:
        ms = "".join(f" {'-' if v is None else f'{v * 1e3:.3f}':>9}" for v in (wall, cpu))
        print(f"{name:<48}{ms}  {rate}")


if __name__ == "__main__":
    main()
