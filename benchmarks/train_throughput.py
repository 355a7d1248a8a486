"""Training throughput of the twelve spheres on the seed configuration, per thread count.

    python benchmarks/train_throughput.py [--threads 1,2] [--steps 8] [--grad-accum 4] [--compare-torch]

Each thread count runs in its own child process (clean peak RSS, fresh BLAS state) on synthetic token batches of
the seed shape (vocab 10,000, d 256, 4 layers, 8 heads, FFN 1024, batch 32 x 128, dropout 0.1). A step is one
optimizer step exactly as training does it: grad_accum micro-batches through the spheres, the fixed-order
reduction, clipping and AdamW. Prints medians over the timed steps: tokens/s, step ms, load imbalance (max/mean
thread busy - 1), sync overhead (share of the step's thread time outside sphere forward/backward), peak RSS and
tokens per CPU-second (on a busy shared machine the wall-clock numbers drop; this one shows the work per token).
With --compare-torch (only when torch is importable) the same model is built in PyTorch and stepped on the same
batches, interleaved with the cllm steps, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cllm.engine.config import ModelConfig, TrainConfig
from cllm.engine.params import decay_mask, init_params
from cllm.engine.spheres import Spheres
from cllm.engine.train import apply_update, learning_rate


def _batches(cfg: ModelConfig, train: TrainConfig, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(train.grad_accum):
        tokens = rng.integers(0, cfg.vocab_size, size=(train.batch_size, train.seq_len + 1), dtype=np.int32)
        out.append((tokens[:, :-1].copy(), tokens[:, 1:].copy()))
    return out


def _torch_stepper(cfg: ModelConfig, train: TrainConfig, threads: int):
    """The same network in PyTorch (eager, fp32): returns step(batches) running one AdamW step."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
            self.qkv, self.proj = nn.Linear(cfg.d_model, 3 * cfg.d_model), nn.Linear(cfg.d_model, cfg.d_model)
            self.fc, self.out = nn.Linear(cfg.d_model, cfg.d_ff), nn.Linear(cfg.d_ff, cfg.d_model)
            self.drop = nn.Dropout(cfg.dropout)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, cfg.n_heads, d // cfg.n_heads).permute(2, 0, 3, 1, 4)
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
            return x + self.drop(self.out(nn.functional.gelu(self.fc(self.ln2(x)), approximate="tanh")))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(cfg.vocab_size, cfg.d_model), nn.Embedding(cfg.max_seq_len, cfg.d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.ln_f, self.drop = nn.LayerNorm(cfg.d_model), nn.Dropout(cfg.dropout)

        def forward(self, idx):
            x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))
            for block in self.blocks:
                x = block(x)
            return self.ln_f(x) @ self.wte.weight.T

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps,
                            weight_decay=train.weight_decay)

    def step(batches) -> None:
        with threadpool_limits(limits=threads):  # lift the spheres' one-thread BLAS limit for torch's own pool
            torch.set_num_threads(threads)
            opt.zero_grad(set_to_none=True)
            for inputs, targets in batches:
                logits = model(torch.from_numpy(inputs).long())
                loss = nn.functional.cross_entropy(logits.view(-1, cfg.vocab_size), torch.from_numpy(targets).long().view(-1))
                (loss / len(batches)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            opt.step()

    return step


def worker(args: argparse.Namespace) -> dict:
    """Time `args.steps` optimizer steps at one thread count (after warm-up); returns medians and peak RSS."""
    cfg = ModelConfig()
    train = TrainConfig(grad_accum=args.grad_accum, spheres=args.spheres, batch_size=args.batch_size, seq_len=args.seq_len)
    rng = np.random.default_rng(0)
    params = init_params(cfg, 0)
    grad, m, v = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
    decay = decay_mask(cfg)
    torch_step = _torch_stepper(cfg, train, args.threads) if args.compare_torch else None
    rows = {"seconds": [], "cpu": [], "imbalance": [], "sync": [], "torch_seconds": []}
    shard = -(-train.batch_size // train.spheres)
    with Spheres(cfg, train.spheres, args.threads, shard, train.seq_len) as spheres:
        for step in range(args.warmup + args.steps):
            batches = _batches(cfg, train, rng)
            start, cpu_start = time.perf_counter(), time.process_time()
            result = spheres.step(params, batches, grad, dropout=cfg.dropout, seed=0, step=step)
            apply_update(params, grad, m, v, decay, result.sq_norm, learning_rate(step, train, 1000), step, train)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if torch_step is not None:
                torch_start = time.perf_counter()
                torch_step(batches)
                torch_wall = time.perf_counter() - torch_start
            if step < args.warmup:
                continue
            rows["seconds"].append(wall)
            rows["cpu"].append(cpu)
            rows["imbalance"].append(result.load_imbalance)
            rows["sync"].append(max(0.0, 1.0 - float(result.busy.sum()) / spheres.n_threads / wall))
            if torch_step is not None:
                rows["torch_seconds"].append(torch_wall)
    tokens = train.grad_accum * train.batch_size * train.seq_len
    median = statistics.median(rows["seconds"])
    out = {
        "threads": args.threads, "tokens_per_second": tokens / median, "step_ms": 1000 * median,
        "tokens_per_cpu_second": tokens / statistics.median(rows["cpu"]),
        "load_imbalance": statistics.median(rows["imbalance"]), "sync_overhead": statistics.median(rows["sync"]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if rows["torch_seconds"]:
        out["torch_tokens_per_second"] = tokens / statistics.median(rows["torch_seconds"])
    return out


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per thread count")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (numba cache load, BLAS warm-up)")
    parser.add_argument("--grad-accum", type=int, default=TrainConfig.grad_accum)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--seq-len", type=int, default=TrainConfig.seq_len)
    parser.add_argument("--spheres", type=int, default=TrainConfig.spheres)
    parser.add_argument("--compare-torch", action="store_true", help="also time PyTorch eager (needs torch)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        print(json.dumps(worker(args)))
        return 0
    if args.compare_torch and not _torch_available():
        print("--compare-torch: torch is not installed; measuring cllm only", file=sys.stderr)
        args.compare_torch = False
    load = os.getloadavg()[0]
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--grad-accum", str(args.grad_accum), "--batch-size", str(args.batch_size),
               "--seq-len", str(args.seq_len), "--spheres", str(args.spheres)] + (["--compare-torch"] if args.compare_torch else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.splitlines()[-1]))
    tokens = args.grad_accum * args.batch_size * args.seq_len
    print(f"seed config, {args.spheres} spheres, {tokens:,} tokens/step (batch {args.batch_size} x {args.seq_len} x "
          f"accum {args.grad_accum}), medians of {args.steps} steps, {os.cpu_count()} cores, load avg before {load:.2f}")
    header = f"{'threads':>7} {'tokens/s':>9} {'step ms':>9} {'imbalance':>9} {'sync':>6} {'peak RSS':>9} {'tok/CPU-s':>9}"
    if args.compare_torch:
        print("(peak RSS includes the PyTorch model of the same process)")
    if args.compare_torch:
        header += f" {'torch tok/s':>11} {'ratio':>6}"
    print(header)
    for r in results:
        line = (f"{r['threads']:>7} {r['tokens_per_second']:>9,.0f} {r['step_ms']:>9,.0f} {r['load_imbalance']:>9.1%} "
                f"{r['sync_overhead']:>6.1%} {r['peak_rss_mb']:>6,.0f} MB {r['tokens_per_cpu_second']:>9,.0f}")
        if "torch_tokens_per_second" in r:
            line += f" {r['torch_tokens_per_second']:>11,.0f} {r['tokens_per_second'] / r['torch_tokens_per_second']:>5.2f}x"
        print(line)
    if len(results) > 1:
        print(f"scaling {results[0]['threads']} -> {results[-1]['threads']} threads: "
              f"{results[-1]['tokens_per_second'] / results[0]['tokens_per_second']:.2f}x")
    print(f"load avg after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
