"""Where a training step's CPU time goes at the seed configuration: BLAS against everything outside it.

    python benchmarks/step_profile.py [--shard-batch 3] [--repeats 8]

Runs one sphere's forward_backward (a shard of --shard-batch sequences of 128 tokens; the seed step has 48 such
shards: 12 spheres x 4 micro-batches) on one thread with BLAS limited to one thread, as the spheres run it, and
times every numba kernel and matrix product it calls in thread CPU time, so other work on a shared machine
does not inflate the numbers. Each product's GFLOP/s is printed beside two ceilings of this core: what numpy's
BLAS reaches on a 2048^3 sgemm, and the clock (measured as in train_throughput.py) x the FLOPs per cycle of the
vector width BLAS runs (OPENBLAS_CORETYPE may pin narrower kernels than the CPU has). Then the control sphere's
per-step work: the fixed-order sum of twelve gradient buffers, the gradient norm, clipping and AdamW.
The timers add about a microsecond per call; "the rest" is a timed call's CPU time minus every timed line.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import blas_kernels, measured_ghz  # noqa: E402

from cllm.engine.model import kernels, network as model  # noqa: E402
from cllm.engine.config import ModelConfig, TrainConfig  # noqa: E402
from cllm.engine.model.params import decay_mask, init_params  # noqa: E402
from cllm.engine.train.spheres import _add_rows, grad_sq_norm  # noqa: E402
from cllm.engine.train.loop import apply_update  # noqa: E402


def cpu_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The least thread CPU time of `repeats` calls of fn (after one untimed call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


class _Timed:
    """Stands in for a module: attribute lookups return the module's callables wrapped in a CPU timer.

    np.matmul calls are keyed by their shapes (and counted in FLOPs) so each product of the step is a line."""

    def __init__(self, module, seconds: dict, flops: dict):
        self._module, self._seconds, self._flops = module, seconds, flops

    def __getattr__(self, name: str):
        attr = getattr(self._module, name)
        if not callable(attr) or isinstance(attr, type):
            return attr
        if attr is np.matmul:
            return self._matmul
        return self.wrap(name, attr)

    def wrap(self, key: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self._seconds[key] += time.thread_time() - start
        return timed

    def _matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        key = f"matmul {a.shape[0]}x{a.shape[1]} @ {b.shape[0]}x{b.shape[1]}"
        self._flops[key] += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return self.wrap(key, np.matmul)(a, b, out=out)


def profile_shard(cfg: ModelConfig, shard_batch: int, seq_len: int, repeats: int) -> tuple[float, dict, dict]:
    """(CPU seconds of one forward_backward, seconds per kernel or product, FLOPs per product), per call;
    seconds["(timed run)"] is a whole call with the timers in place."""
    params = init_params(cfg, 0)
    grads = np.zeros_like(params)
    scratch = model.make_scratch(cfg, shard_batch, seq_len)
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(shard_batch, seq_len + 1), dtype=np.int32)
    inputs, targets = tokens[:, :-1].copy(), tokens[:, 1:].copy()

    def shard() -> None:
        model.forward_backward(params, grads, inputs, targets, cfg, scratch, dropout=cfg.dropout, seed=1,
                               loss_scale=1.0 / tokens.size)

    total = cpu_seconds(shard, repeats)
    seconds: dict[str, float] = collections.defaultdict(float)
    flops: dict[str, float] = collections.defaultdict(float)
    timed_kernels = _Timed(kernels, seconds, flops)
    with mock.patch.object(model, "K", timed_kernels), mock.patch.object(model, "np", _Timed(np, seconds, flops)), \
            mock.patch.object(kernels, "causal_softmax_stack", timed_kernels.wrap(
                "  attention: causal_softmax_stack", kernels.causal_softmax_stack)), \
            mock.patch.object(kernels, "causal_softmax_stack_backward", timed_kernels.wrap(
                "  attention: causal_softmax_stack_backward", kernels.causal_softmax_stack_backward)):
        start = time.thread_time()
        for _ in range(repeats):
            shard()
        seconds["(timed run)"] = time.thread_time() - start
    return total, {k: v / repeats for k, v in seconds.items()}, {k: v / repeats for k, v in flops.items()}


def blas_ceiling(repeats: int) -> float:
    """GFLOP/s of one 2048^3 sgemm on this core: what BLAS reaches when shape is no limit."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((2048, 2048), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    return 2 * 2048 ** 3 / cpu_seconds(lambda: np.matmul(a, b, out=out), repeats) / 1e9


def profile_update(cfg: ModelConfig, spheres: int, repeats: int) -> dict[str, float]:
    """CPU seconds of the control sphere's per-step work on full-size buffers."""
    params = init_params(cfg, 0)
    buffers = np.ones((spheres, params.size), dtype=np.float32)
    out, m, v = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
    decay, train = decay_mask(cfg), TrainConfig()
    rows = np.arange(spheres, dtype=np.int64)
    return {
        f"sum of {spheres} gradient buffers in sphere order": cpu_seconds(lambda: _add_rows(out, buffers, rows), repeats),
        "gradient norm (float64 chunks)": cpu_seconds(lambda: grad_sq_norm(out), repeats),
        "clip + AdamW": cpu_seconds(lambda: apply_update(params, out, m, v, decay, 4.0, 1e-3, 1, train), repeats),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard-batch", type=int, default=3, help="sequences per shard (the seed step: 2 or 3)")
    parser.add_argument("--seq-len", type=int, default=TrainConfig.seq_len)
    parser.add_argument("--repeats", type=int, default=8, help="timed calls per measurement (the least is kept)")
    args = parser.parse_args()
    if args.shard_batch <= 0 or args.repeats <= 0:
        print("--shard-batch and --repeats must be positive", file=sys.stderr)
        return 2
    cfg = ModelConfig()
    with threadpool_limits(limits=1):
        total, seconds, flops = profile_shard(cfg, args.shard_batch, args.seq_len, args.repeats)
        ceiling = blas_ceiling(3)
        update = profile_update(cfg, TrainConfig.spheres, 3)
    ghz = measured_ghz()
    lanes = 16 if any(arch in blas_kernels() for arch in ("SkylakeX", "Cooperlake", "SapphireRapids")) else 8
    print(blas_kernels())
    print(f"one shard of {args.shard_batch} x {args.seq_len} tokens: {total * 1e3:.1f} ms CPU; BLAS ceilings on this "
          f"core: 2048^3 sgemm {ceiling:.0f} GFLOP/s, {ghz:.2f} GHz x {4 * lanes} FLOP/cycle = {ghz * 4 * lanes:.0f}")
    print(f"{'':54} {'ms':>7} {'share':>6} {'GFLOP/s':>8}")
    blas, timed_run = 0.0, seconds.pop("(timed run)")
    for key, sec in sorted(seconds.items(), key=lambda kv: -kv[1]):
        rate = f"{flops[key] / sec / 1e9:8.0f}" if key in flops else ""
        blas += sec if key in flops else 0.0
        print(f"{key:54} {sec * 1e3:7.2f} {sec / total:6.1%} {rate}")
    rest = timed_run - sum(sec for key, sec in seconds.items() if not key.startswith("  "))
    print(f"{'the rest (python, weight-gradient +=)':54} {rest * 1e3:7.2f} {rest / total:6.1%}")
    print(f"{'matrix products outside attention':54} {blas * 1e3:7.2f} {blas / total:6.1%}")
    print(f"per step: {TrainConfig.grad_accum * TrainConfig.spheres} shards ~ "
          f"{TrainConfig.grad_accum * TrainConfig.spheres * total:.2f} s CPU, then the control sphere:")
    for key, sec in update.items():
        print(f"  {key:52} {sec * 1e3:7.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
