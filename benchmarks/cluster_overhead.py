"""The spheres on Ray against the spheres on threads: per-step overhead, and what it projects for a cluster.

    python benchmarks/cluster_overhead.py [--spheres 2] [--steps 4] [--json]   # measure (needs '.[cluster]')
    python benchmarks/cluster_overhead.py --project measured.json               # the projection from a saved run

Measures, on this machine, the same optimizer steps of the default model (ModelConfig()) run by Spheres (threads)
and by ClusterSpheres on a local Ray cluster (`ray.init` with one CPU per core, worker processes): median step
time of each, the Ray step's per-sphere busy, wait and transfer time, the object-store round trip of one
gradient-sized array (ray.put + ray.get, i.e. serialization and copy) and the in-order reduction's rate. The
gradient is 4 bytes x parameters.

The projection (docs/scaling.md) then estimates the training throughput of 1, 4 and 16 nodes of 16 cores on
the kernel tree with a 10 Gb/s network, for the current design (every sphere's gradient goes to the control
node; the weights go once to every other node), from these inputs only:
    compute  = tokens_per_step x core_seconds_per_token / (16 x nodes)
    gather   = 16 x (nodes - 1) x gradient_bytes / bandwidth      (the control node's link, serial)
    weights  = (nodes - 1) x gradient_bytes / bandwidth
    reduce   = 16 x nodes x gradient_bytes / reduce_bytes_per_second
    control  = 16 x nodes x ray_overhead_per_sphere   (measured: Ray step - slowest sphere's busy time, per sphere)
    step     = compute + gather + weights + reduce + control;  tokens/s = tokens_per_step / step
With --json the measurement and the projection print as one JSON object; --project FILE recomputes the table from
such a file (or from its inputs changed by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from cllm.engine.config import ModelConfig, TrainConfig
from cllm.engine.model.params import init_params, num_params
from cllm.engine.train.spheres import Spheres

KERNEL_TOKENS = 298e6  # training tokens of Debian's linux-source-6.1 (issue 16)
NODE_CORES = 16
NETWORK_BYTES_PER_SECOND = 10e9 / 8  # 10 Gb/s
NODES = (1, 4, 16)


def _batches(cfg: ModelConfig, batch: int, seq: int, step: int):
    rng = np.random.default_rng(step)
    tokens = rng.integers(0, cfg.vocab_size, size=(batch, seq + 1)).astype(np.int32)
    return [(tokens[:, :-1].copy(), tokens[:, 1:].copy())]


def _time_steps(spheres, cfg: ModelConfig, batch: int, seq: int, steps: int) -> tuple[list[float], list]:
    """Wall seconds and results of `steps` steps after one warm-up step (compilation, worker start)."""
    params = init_params(cfg, 0)
    grads = np.zeros_like(params)
    walls, results = [], []
    for step in range(steps + 1):
        begin = time.perf_counter()
        result = spheres.step(params, _batches(cfg, batch, seq, step), grads, dropout=cfg.dropout, seed=0, step=step)
        if step:
            walls.append(time.perf_counter() - begin)
            results.append(result)
    return walls, results


def measure(n_spheres: int, steps: int) -> dict:
    """Threads and Ray on this machine: the inputs of the projection."""
    import ray

    from cllm.engine.train.cluster import ClusterSpheres

    cfg, train_cfg = ModelConfig(), TrainConfig()
    batch, seq = train_cfg.batch_size, train_cfg.seq_len
    shard = -(-batch // n_spheres)
    cores = len(os.sched_getaffinity(0))
    with Spheres(cfg, n_spheres, n_spheres, shard, seq) as spheres:
        thread_walls, thread_results = _time_steps(spheres, cfg, batch, seq, steps)
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        with ClusterSpheres(cfg, n_spheres, shard, seq) as spheres:
            ray_walls, ray_results = _time_steps(spheres, cfg, batch, seq, steps)
        gradient = np.random.default_rng(0).standard_normal(num_params(cfg), dtype=np.float32)
        round_trips = []
        for _ in range(5):
            begin = time.perf_counter()
            np.copyto(gradient, ray.get(ray.put(gradient)))
            round_trips.append(time.perf_counter() - begin)
    finally:
        ray.shutdown()
    add = gradient.copy()
    begin = time.perf_counter()
    for _ in range(10):
        add += gradient
    reduce_rate = 10 * gradient.nbytes / (time.perf_counter() - begin)
    tokens = thread_results[0].tokens
    busy = [float(r.busy.sum()) for r in thread_results]
    ray_busy = [float(r.busy.sum()) for r in ray_results]
    thread_step, ray_step = statistics.median(thread_walls), statistics.median(ray_walls)
    records = [s for r in ray_results for s in r.spheres]
    return {
        "machine": {"cores": cores, "note": "shared with other jobs; medians of few steps"},
        "model": {"params": num_params(cfg), "gradient_bytes": 4 * num_params(cfg)},
        "spheres": n_spheres, "steps": steps, "tokens_per_step_measured": tokens,
        "threads": {"step_seconds": thread_step, "tokens_per_second": tokens / thread_step,
                    "core_seconds_per_token": statistics.median(busy) / tokens},
        "ray": {
            "step_seconds": ray_step, "tokens_per_second": tokens / ray_step,
            "core_seconds_per_token": statistics.median(ray_busy) / tokens,
            "sphere_busy_seconds": statistics.median(s.busy for s in records),
            "sphere_wait_seconds": statistics.median(s.wait for s in records),
            "sphere_transfer_seconds": statistics.median(s.transfer for s in records),
        },
        "object_store_round_trip_seconds": statistics.median(round_trips),
        "inputs": {
            # the less disturbed of the two runs (the machine is shared): compute per token is the same code
            "core_seconds_per_token": min(statistics.median(busy), statistics.median(ray_busy)) / tokens,
            "ray_overhead_per_sphere_seconds": statistics.median(
                wall - float(r.busy.max()) for wall, r in zip(ray_walls, ray_results)) / n_spheres,
            "reduce_bytes_per_second": reduce_rate,
            "gradient_bytes": 4 * num_params(cfg),
            "tokens_per_step": train_cfg.batch_size * train_cfg.seq_len * train_cfg.grad_accum,
            "node_cores": NODE_CORES, "network_bytes_per_second": NETWORK_BYTES_PER_SECOND,
            "corpus_tokens": KERNEL_TOKENS,
        },
    }


def project(inputs: dict, nodes: int, cluster: bool = True) -> dict:
    """Seconds of each part of one step, tokens/s and hours per pass over the corpus on `nodes` nodes.
    cluster=False is one node on threads (no Ray: no transfers, no control overhead)."""
    spheres = inputs["node_cores"] * nodes
    g, bw = inputs["gradient_bytes"], inputs["network_bytes_per_second"]
    parts = {
        "compute": inputs["tokens_per_step"] * inputs["core_seconds_per_token"] / spheres,
        "gather": inputs["node_cores"] * (nodes - 1) * g / bw,
        "weights": (nodes - 1) * g / bw,
        "reduce": spheres * g / inputs["reduce_bytes_per_second"],
        "control": spheres * inputs["ray_overhead_per_sphere_seconds"] if cluster else 0.0,
    }
    step = sum(parts.values())
    tokens_per_second = inputs["tokens_per_step"] / step
    return {"nodes": nodes, "ray": cluster, **parts, "step": step, "tokens_per_second": tokens_per_second,
            "communication_share": (parts["gather"] + parts["weights"] + parts["control"]) / step,
            "hours_per_epoch": inputs["corpus_tokens"] / tokens_per_second / 3600}


def projection(inputs: dict) -> list[dict]:
    return [project(inputs, 1, cluster=False)] + [project(inputs, n) for n in NODES]


def print_tables(result: dict) -> None:
    if "threads" in result:
        print(f"measured on {result['machine']['cores']} cores ({result['machine']['note']}), "
              f"{result['spheres']} spheres, {result['tokens_per_step_measured']} tokens/step:")
        t, r = result["threads"], result["ray"]
        print(f"  threads {t['step_seconds'] * 1000:8.1f} ms/step {t['tokens_per_second']:8.0f} tok/s")
        print(f"  ray     {r['step_seconds'] * 1000:8.1f} ms/step {r['tokens_per_second']:8.0f} tok/s   per sphere: busy "
              f"{r['sphere_busy_seconds'] * 1000:.1f} ms, wait {r['sphere_wait_seconds'] * 1000:.1f} ms, "
              f"transfer {r['sphere_transfer_seconds'] * 1000:.1f} ms")
        print(f"  gradient {result['model']['gradient_bytes'] / 1e6:.1f} MB ({result['model']['params']:,} params x 4 B); "
              f"object store put+get {result['object_store_round_trip_seconds'] * 1000:.1f} ms")
    print("inputs: " + ", ".join(f"{k}={v:.4g}" for k, v in result["inputs"].items()))
    print(f"{'nodes':>6} {'ray':>4} {'compute':>8} {'gather':>8} {'weights':>8} {'reduce':>8} {'control':>8} "
          f"{'step s':>8} {'tok/s':>9} {'comm %':>7} {'h/epoch':>8}")
    for row in result["projection"]:
        print(f"{row['nodes']:>6} {'yes' if row['ray'] else 'no':>4} " + " ".join(
            f"{row[k]:8.3f}" for k in ("compute", "gather", "weights", "reduce", "control", "step"))
            + f" {row['tokens_per_second']:9.0f} {100 * row['communication_share']:6.1f}% {row['hours_per_epoch']:8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spheres", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print the measurement and projection as JSON")
    parser.add_argument("--project", metavar="FILE", help="recompute the projection from a --json output")
    args = parser.parse_args()
    if args.project:
        with open(args.project) as f:
            result = json.load(f)
    else:
        try:
            result = measure(args.spheres, args.steps)
        except ImportError:
            print("this benchmark needs Ray: pip install '.[cluster]'", file=sys.stderr)
            return 2
    result["projection"] = projection(result["inputs"])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
