"""Training throughput of the twelve spheres on the seed configuration, against PyTorch's standard eager loop.

    python benchmarks/train_throughput.py [--threads 1,2] [--steps 4] [--rounds 3] [--compare-torch] [--reference DIR]
                                          [--unpinned] [--position-encoding rope]

Synthetic token batches of the seed shape (vocab 10,000, d 256, 4 layers, 8 heads, FFN 1024, batch 32 x 128,
dropout 0.1). A step is one optimizer step exactly as training does it: grad_accum micro-batches through the
spheres, the fixed-order reduction, clipping and AdamW.

Every measurement runs in a child process of its own (clean peak RSS, fresh BLAS and OpenMP state, nobody's
thread pool spinning beside the other's). With --compare-torch the children alternate, cllm and PyTorch (each
side leading a round in turn), for --rounds rounds at each thread count, so both see the same machine load; the ratio is the median of the rounds'
ratios. The PyTorch side is the loop a PyTorch user writes: torch.set_num_threads(threads), the model and
torch.optim.AdamW built once, F.cross_entropy, zero_grad(set_to_none=True), clip_grad_norm_, the same
micro-batches and the same warm-up steps excluded. --torch-compile adds torch.compile(model) as a third column.

On a machine busy with other work the wall-clock ratio flatters cllm (PyTorch's OpenMP threads wait for each
other at every operator when one is descheduled); the CPU-time ratio (tokens per CPU-second) is printed beside it.
--reference DIR times an older engine (DIR/cllm/engine, e.g. `git archive OLD engine | tar -x -C DIR/cllm`) as
cllm-ref in the same alternation: before/after in one run. Where the environment pins OpenBLAS's kernels
(OPENBLAS_CORETYPE, e.g. Haswell's AVX2 kernels on an AVX-512 machine; PyTorch's MKL ignores it), --unpinned adds
cllm-unpinned, the same engine with that variable removed (OpenBLAS picks this CPU's kernels, as on a machine with
no pin), and prints its ratios to PyTorch too. Each ratio column is cllm's rate over that side's.
Printed per thread count (medians): tokens/s, step ms, load imbalance (max/mean thread busy - 1), sync overhead
(share of the step's thread time outside sphere forward/backward), peak RSS, tokens per CPU-second, and the
share of the machine's fp32 peak the step reaches: model FLOPs (6 x matmul parameters x tokens + 12 x layers x
seq_len x d_model x tokens for attention, the PaLM convention) over threads x clock x FLOPs per cycle, where the
clock is measured (a chain of dependent integer operations, 2 cycles per link) and FLOPs per cycle assume two
FMA units of the widest vector the CPU flags show (AVX-512: 64, AVX2: 32, else 16).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numba
import numpy as np
from threadpoolctl import threadpool_info

from cllm.engine.config import POSITIONS, ModelConfig, TrainConfig
from cllm.engine.model.params import decay_mask, init_params
from cllm.engine.train.spheres import Spheres
from cllm.engine.train.loop import apply_update, learning_rate


def _batches(cfg: ModelConfig, train: TrainConfig, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(train.grad_accum):
        tokens = rng.integers(0, cfg.vocab_size, size=(train.batch_size, train.seq_len + 1), dtype=np.int32)
        out.append((tokens[:, :-1].copy(), tokens[:, 1:].copy()))
    return out


def step_flops(cfg: ModelConfig, tokens: int, seq_len: int) -> float:
    """Model FLOPs of one training step over `tokens` tokens (forward + backward, PaLM convention)."""
    d, ff = cfg.d_model, cfg.d_ff
    matmul_params = cfg.vocab_size * d + cfg.n_layers * (4 * d * d + 2 * d * ff)
    return tokens * (6.0 * matmul_params + 12.0 * cfg.n_layers * seq_len * d)


@numba.njit(cache=True)
def _chain(n: int, x: np.uint64) -> np.uint64:
    for _ in range(n):
        x = x + (x >> np.uint64(1))  # shift then add: 2 cycles of latency per link on any x86 core
    return x


def measured_ghz() -> float:
    """The core clock while busy, from the CPU time of a dependent chain (best of several tries)."""
    _chain(10, np.uint64(3))
    n, best = 50_000_000, 0.0
    for _ in range(5):
        start = time.thread_time()
        _chain(n, np.uint64(3))
        best = max(best, 2 * n / (time.thread_time() - start) / 1e9)
    return best


def fp32_flops_per_cycle() -> tuple[int, str]:
    """FLOPs per cycle per core for fp32 (two FMA units of the widest vector in the CPU flags) and its name."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "avx512f" in flags:
        return 2 * 2 * 16, "AVX-512"
    if "avx2" in flags and "fma" in flags:
        return 2 * 2 * 8, "AVX2+FMA"
    return 2 * 2 * 4, "SSE (no FMA flags found)"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.machine())
    except OSError:
        return platform.machine()


def blas_kernels() -> str:
    """numpy's BLAS and the kernel set it runs (and OPENBLAS_CORETYPE when the environment forces one)."""
    info = next((i for i in threadpool_info() if i["user_api"] == "blas"), None)
    if info is None:
        return "numpy BLAS unknown"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return (f"numpy BLAS {info['internal_api']} {info.get('architecture', '?')} kernels"
            + (f" (OPENBLAS_CORETYPE={forced} from the environment)" if forced else ""))


def _torch_stepper(cfg: ModelConfig, train: TrainConfig, threads: int, compile_model: bool):
    """The same network in PyTorch, stepped the way a PyTorch user writes it: returns step(batches)."""
    import torch
    import torch.nn.functional as F
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
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
            return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh")))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(cfg.vocab_size, cfg.d_model), nn.Embedding(cfg.max_seq_len, cfg.d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layers))
            self.ln_f, self.drop = nn.LayerNorm(cfg.d_model), nn.Dropout(cfg.dropout)
            self.register_buffer("pos", torch.arange(cfg.max_seq_len), persistent=False)

        def forward(self, idx):
            x = self.drop(self.wte(idx) + self.wpe(self.pos[:idx.shape[1]]))
            for block in self.blocks:
                x = block(x)
            return self.ln_f(x) @ self.wte.weight.T

    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=(train.beta1, train.beta2), eps=train.eps,
                            weight_decay=train.weight_decay)
    forward = torch.compile(model) if compile_model else model

    def step(batches) -> None:
        for inputs, targets in batches:
            logits = forward(torch.from_numpy(inputs).long())
            loss = F.cross_entropy(logits.view(-1, cfg.vocab_size), torch.from_numpy(targets).long().view(-1))
            (loss / len(batches)).backward()
        nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def worker(args: argparse.Namespace) -> dict:
    """Time `args.steps` optimizer steps of one side at one thread count, after `args.warmup` untimed ones."""
    cfg = ModelConfig(positions=args.position_encoding)
    train = TrainConfig(grad_accum=args.grad_accum, spheres=args.spheres, batch_size=args.batch_size, seq_len=args.seq_len)
    rng = np.random.default_rng(0)
    rows: dict[str, list[float]] = {"seconds": [], "cpu": [], "imbalance": [], "sync": []}
    if args.side.startswith("cllm"):
        params = init_params(cfg, 0)
        grad, m, v = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
        decay = decay_mask(cfg)
        shard = -(-train.batch_size // train.spheres)
        with Spheres(cfg, train.spheres, args.threads, shard, train.seq_len) as spheres:
            for step in range(args.warmup + args.steps):
                batches = _batches(cfg, train, rng)
                start, cpu_start = time.perf_counter(), time.process_time()
                result = spheres.step(params, batches, grad, dropout=cfg.dropout, seed=0, step=step)
                apply_update(params, grad, m, v, decay, result.sq_norm, learning_rate(step, train, 1000), step, train)
                wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                if step >= args.warmup:
                    rows["seconds"].append(wall)
                    rows["cpu"].append(cpu)
                    rows["imbalance"].append(result.load_imbalance)
                    rows["sync"].append(max(0.0, 1.0 - float(result.busy.sum()) / spheres.n_threads / wall))
    else:
        torch_step = _torch_stepper(cfg, train, args.threads, args.side == "torch-compile")
        for step in range(args.warmup + args.steps):
            batches = _batches(cfg, train, rng)
            start, cpu_start = time.perf_counter(), time.process_time()
            torch_step(batches)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if step >= args.warmup:
                rows["seconds"].append(wall)
                rows["cpu"].append(cpu)
    tokens = train.grad_accum * train.batch_size * train.seq_len
    median = statistics.median(rows["seconds"])
    return {
        "side": args.side, "threads": args.threads, "tokens_per_second": tokens / median, "step_ms": 1000 * median,
        "tokens_per_cpu_second": tokens / statistics.median(rows["cpu"]),
        "load_imbalance": statistics.median(rows["imbalance"]) if rows["imbalance"] else None,
        "sync_overhead": statistics.median(rows["sync"]) if rows["sync"] else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _run(args: argparse.Namespace, side: str, threads: int) -> dict:
    env = dict(os.environ)
    if side == "cllm-ref":  # the reference checkout's engine first on the path, as cllm.engine
        env["PYTHONPATH"] = os.pathsep.join(p for p in (args.reference, env.get("PYTHONPATH")) if p)
    if side == "cllm-unpinned":
        env.pop("OPENBLAS_CORETYPE", None)
    cmd = [sys.executable, __file__, "--worker", "--side", side, "--threads", str(threads), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--grad-accum", str(args.grad_accum), "--batch-size", str(args.batch_size),
           "--seq-len", str(args.seq_len), "--spheres", str(args.spheres), "--position-encoding", args.position_encoding]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per child process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (numba cache load, BLAS warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="children per side and thread count, alternating sides")
    parser.add_argument("--grad-accum", type=int, default=TrainConfig.grad_accum)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--seq-len", type=int, default=TrainConfig.seq_len)
    parser.add_argument("--spheres", type=int, default=TrainConfig.spheres)
    parser.add_argument("--compare-torch", action="store_true", help="also time PyTorch's standard eager loop")
    parser.add_argument("--torch-compile", action="store_true", help="with --compare-torch: also torch.compile")
    parser.add_argument("--reference", metavar="DIR", help="also time the engine in DIR/cllm/engine (e.g. an older "
                        "commit's engine/ from git archive) as cllm-ref, alternating with the others")
    parser.add_argument("--unpinned", action="store_true", help="also time cllm without the environment's "
                        "OPENBLAS_CORETYPE (OpenBLAS's own kernel choice for this CPU) as cllm-unpinned")
    parser.add_argument("--position-encoding", choices=POSITIONS,
                        help=f"the model's positions (default {ModelConfig.positions}; learned with --compare-torch: "
                             "the torch sides model learned ones only)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", default="cllm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        print(json.dumps(worker(args)))
        return 0
    if args.compare_torch and args.position_encoding not in (None, "learned"):
        print("--compare-torch: the torch sides have learned positions only", file=sys.stderr)
        return 2
    args.position_encoding = args.position_encoding or ("learned" if args.compare_torch else ModelConfig.positions)
    args.torch_compile = args.torch_compile and args.compare_torch
    if args.compare_torch and not _torch_available():
        print("--compare-torch: torch is not installed; measuring cllm only", file=sys.stderr)
        args.compare_torch = False
    if args.reference and not os.path.isfile(os.path.join(args.reference, "cllm", "engine", "model.py")):
        print(f"--reference: no cllm/engine/model.py under {args.reference}", file=sys.stderr)
        return 2
    if args.unpinned and "OPENBLAS_CORETYPE" not in os.environ:
        print("--unpinned: OPENBLAS_CORETYPE is not set; nothing to unpin", file=sys.stderr)
        args.unpinned = False
    sides = ["cllm"] + (["cllm-ref"] if args.reference else []) + (["cllm-unpinned"] if args.unpinned else [])
    sides += (["torch"] if args.compare_torch else []) + (["torch-compile"] if args.torch_compile else [])
    cfg = ModelConfig(positions=args.position_encoding)
    tokens = args.grad_accum * args.batch_size * args.seq_len
    flops = step_flops(cfg, tokens, args.seq_len)
    per_cycle, vector = fp32_flops_per_cycle()
    ghz = measured_ghz()
    load = os.getloadavg()[0]
    table = []
    for threads in (int(t) for t in args.threads.split(",")):
        runs: dict[str, list[dict]] = {side: [] for side in sides}
        for round_ in range(args.rounds):
            for side in sides[round_ % len(sides):] + sides[:round_ % len(sides)]:  # each side leads a round in turn
                try:
                    runs[side].append(_run(args, side, threads))
                except RuntimeError as exc:
                    print(exc, file=sys.stderr)
                    return 1
                print(f"{threads} threads, {side}: {runs[side][-1]['tokens_per_second']:,.0f} tok/s", file=sys.stderr)
        table.append((threads, runs))
    print(f"{cpu_model()}, {os.cpu_count()} cores, {vector}; fp32 peak assumed = threads x {ghz:.2f} GHz (measured) x "
          f"{per_cycle} FLOP/cycle (2 FMA units x {per_cycle // 4} lanes x 2); {flops / tokens / 1e6:.1f} MFLOP/token")
    print(blas_kernels())
    print(f"seed config ({args.position_encoding} positions), {args.spheres} spheres, {tokens:,} tokens/step (batch {args.batch_size} x {args.seq_len} x "
          f"accum {args.grad_accum}), medians of {args.steps} steps x {args.rounds} rounds per side, "
          f"sides alternating, load avg before {load:.2f}")
    header = (f"{'threads':>7} {'tokens/s':>9} {'step ms':>8} {'peak':>5} {'imbal':>6} {'sync':>6} {'RSS MB':>6} "
              f"{'tok/CPU-s':>9}")
    for side in sides[1:]:
        header += f" {side + ' tok/s':>18} {'peak':>5} {'ratio':>6} {'tok/CPU-s':>9} {'CPU ratio':>9}"
    print(header)
    for threads, runs in table:
        peak = threads * ghz * 1e9 * per_cycle
        med = {side: statistics.median(r["tokens_per_second"] for r in runs[side]) for side in sides}
        c = runs["cllm"]
        line = (f"{threads:>7} {med['cllm']:>9,.0f} {statistics.median(r['step_ms'] for r in c):>8,.0f} "
                f"{med['cllm'] * flops / tokens / peak:>5.0%} {statistics.median(r['load_imbalance'] for r in c):>6.1%} "
                f"{statistics.median(r['sync_overhead'] for r in c):>6.1%} {max(r['peak_rss_mb'] for r in c):>6,.0f} "
                f"{statistics.median(r['tokens_per_cpu_second'] for r in c):>9,.0f}")
        for side in sides[1:]:
            ratio = statistics.median(a["tokens_per_second"] / b["tokens_per_second"] for a, b in zip(c, runs[side]))
            cpu_rate = statistics.median(r["tokens_per_cpu_second"] for r in runs[side])
            cpu_ratio = statistics.median(a["tokens_per_cpu_second"] / b["tokens_per_cpu_second"]
                                          for a, b in zip(c, runs[side]))
            line += (f" {med[side]:>18,.0f} {med[side] * flops / tokens / peak:>5.0%} {ratio:>5.2f}x"
                     f" {cpu_rate:>9,.0f} {cpu_ratio:>8.2f}x")
        print(line)
        for side in sides:
            print(f"{'':>7} {side} per round: " + ", ".join(f"{r['tokens_per_second']:,.0f}" for r in runs[side]))
        if "cllm-unpinned" in runs and "torch" in runs:
            pairs = list(zip(runs["cllm-unpinned"], runs["torch"]))
            wall = statistics.median(a["tokens_per_second"] / b["tokens_per_second"] for a, b in pairs)
            cpu = statistics.median(a["tokens_per_cpu_second"] / b["tokens_per_cpu_second"] for a, b in pairs)
            print(f"{'':>7} cllm-unpinned over torch: {wall:.2f}x wall, {cpu:.2f}x CPU time")
    if len(table) > 1:
        first, last = table[0], table[-1]
        rate = lambda runs: statistics.median(r["tokens_per_second"] for r in runs["cllm"])  # noqa: E731
        print(f"cllm scaling {first[0]} -> {last[0]} threads: {rate(last[1]) / rate(first[1]):.2f}x")
    print(f"load avg after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
