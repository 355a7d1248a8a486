"""The spheres on a Ray cluster: one Ray actor per sphere, behind the same step/evaluate contract as Spheres.

`cllm train PATH --ray ADDRESS|auto [--spheres N]` runs the spheres here instead of on engine/spheres.py's
thread pool. Each sphere is an actor (a worker process on some node) holding its scratch and gradient buffer.
Per optimizer step the control side (the `cllm train` process):
1. puts the current weights in Ray's object store once (ray.put) and each sphere's shard of the step's
   micro-batches once, so a node pulls the weights and only the shards of its own spheres;
2. calls every actor's `step`, which reads the weights and its shard by reference and runs spheres.run_shard
   (the very function a thread runs);
3. gathers the gradients and adds them into `out` strictly in sphere-id order, out = ((0 + g0) + g1) + ..., the
   same elementwise float32 additions as the thread reduction, then takes the same fixed-chunk norm. So the same
   sphere count and seed give bitwise-identical weights on threads and on Ray; the trainer steps AdamW once.

Placement: a placement group with one bundle per sphere (SPREAD over the nodes by default, or PACK); each actor
limits BLAS to its node's CPUs divided by the spheres placed on that node.
Faults: an actor that dies is restarted by Ray (MAX_RESTARTS) and its pending call retried; the call re-reads the
step's weights reference and run_shard is a pure function of its arguments, so the recomputed step is bitwise
the same. When Ray gives up (restarts exhausted, the cluster lost), step raises SphereError and the trainer ends
the run with the last checkpoint intact.
Telemetry: each SphereRecord carries its node and its transfer seconds (weights and shard in, gradient out);
the step's wall time minus the spheres' busy time (the trainer's sync overhead) includes that network time.
Ray is an optional dependency (`pip install 'cllm[cluster]'`), imported only when a ClusterSpheres is built.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from . import model
from .config import ModelConfig
from .data import count_targets
from .errors import CllmError
from .events import SphereRecord
from .params import num_params
from .spheres import SphereError, StepResult, grad_sq_norm, plan_step, run_shard, shard_bounds, sphere_shards

MAX_RESTARTS = 3  # restarts of a dead sphere actor (and retries of its pending call) before the run fails
CONNECT_TIMEOUT = 5.0  # seconds for the head node to accept a connection
PLACEMENT_TIMEOUT = 120.0  # seconds to wait for the cluster to place every sphere
STRATEGIES = ("SPREAD", "PACK")


class ClusterError(CllmError, RuntimeError):
    """The Ray cluster cannot run the spheres: Ray not installed, no cluster at the address, too few CPUs."""


def import_ray():
    """The ray module, or ClusterError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray, which is not installed: pip install 'cllm[cluster]'") from None
    return ray


class SphereActor:
    """One sphere in a Ray worker process: its scratch, its gradient buffer and its share of the node's BLAS
    threads. Ray builds it again with the same arguments when it restarts a dead actor."""

    def __init__(self, cfg: ModelConfig, sphere: int, max_shard_batch: int, seq_len: int, blas_threads: int,
                 forward_backward: Callable | None = None):
        import ray

        self.cfg, self.sphere = cfg, sphere
        self.forward_backward = forward_backward or model.forward_backward
        self.scratch = model.make_scratch(cfg, max_shard_batch, seq_len)
        self.grads = np.zeros(num_params(cfg), dtype=np.float32)
        self.node = ray.get_runtime_context().get_node_id()
        self.blas = threadpool_limits(limits=blas_threads)

    def step(self, refs: list, dropout: float, seed: int, step: int, loss_scale: float):
        """Forward/backward of this sphere's shards. `refs` is [weights, shards] as object references, in a list
        so that Ray hands them over unresolved and the fetch is timed here. Returns (stats, gradient)."""
        import ray

        begin = time.perf_counter()
        params, shards = ray.get(refs)
        fetched = time.perf_counter()
        loss, tokens, rows = run_shard(self.forward_backward, self.cfg, params, self.grads, self.scratch, shards,
                                       sphere=self.sphere, seed=seed, step=step, dropout=dropout,
                                       loss_scale=loss_scale)
        stats = {"loss": loss, "tokens": tokens, "rows": rows, "busy": time.perf_counter() - fetched,
                 "fetch": fetched - begin, "node": self.node}
        return stats, self.grads

    def evaluate(self, refs: list) -> float:
        """Total nats (float64) of this sphere's shard [inputs, targets] of one batch, in eval mode."""
        import ray

        params, (inputs, targets) = ray.get(refs)
        return float(model.token_losses(params, inputs, targets, self.cfg, self.scratch).sum(dtype=np.float64))

    def pid(self) -> int:
        return os.getpid()


class ClusterSpheres:
    """N sphere actors on a Ray cluster plus the control side's fixed-order reduction (see the module doc).

    Connects to `address` ("auto", "HOST:PORT" or "ray://HOST:PORT") unless this process is already connected,
    and disconnects on close() only if it connected. `forward_backward` replaces the model's function in the
    actors (tests use it to kill an actor mid-step); it must be picklable by value or importable by the workers.
    Use as a context manager (or call close()): it owns the actors and the placement group."""

    def __init__(self, cfg: ModelConfig, n_spheres: int, max_shard_batch: int, seq_len: int,
                 address: str = "auto", *, strategy: str = "SPREAD", forward_backward: Callable | None = None):
        if n_spheres <= 0 or max_shard_batch <= 0:
            raise ValueError("spheres and shard batch must be positive")
        if strategy not in STRATEGIES:
            raise ValueError(f"placement strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        ray = self._ray = import_ray()
        self.cfg, self.n_spheres, self.max_shard_batch, self.seq_len = cfg, n_spheres, max_shard_batch, seq_len
        self.n_threads = n_spheres  # every sphere is a worker process of its own
        self._owns_ray = not ray.is_initialized()
        self._placement = None
        self.actors: list = []
        if self._owns_ray:
            _check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(f"cannot connect to a Ray cluster at {address!r}: {_first_line(exc)}") from None
        try:
            self._place(strategy, forward_backward)
        except BaseException:
            self.close()
            raise
        self._closed = False

    def __enter__(self) -> "ClusterSpheres":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _place(self, strategy: str, forward_backward: Callable | None) -> None:
        """Reserve one bundle of CPUs per sphere in a placement group and start an actor in each."""
        ray = self._ray
        from ray.util.placement_group import placement_group, placement_group_table
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        node_cpus = {node["NodeID"]: node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]}
        cpus = sphere_cpus(sum(node_cpus.values()), self.n_spheres)
        if cpus <= 0:
            raise ClusterError("the Ray cluster has no CPUs to run spheres on")
        self._placement = placement_group([{"CPU": cpus}] * self.n_spheres, strategy=strategy)
        try:
            ray.get(self._placement.ready(), timeout=PLACEMENT_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise ClusterError(f"Ray could not place {self.n_spheres} spheres of {cpus} CPU ({strategy}) "
                               f"within {PLACEMENT_TIMEOUT:.0f} s") from None
        bundle_nodes = placement_group_table(self._placement)["bundles_to_node_id"]
        per_node = Counter(bundle_nodes.values())
        remote = ray.remote(SphereActor)
        for sphere in range(self.n_spheres):
            node = bundle_nodes[sphere]
            blas_threads = max(1, int(node_cpus.get(node, 1)) // per_node[node])
            options = remote.options(
                num_cpus=cpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._placement, placement_group_bundle_index=sphere),
            )
            self.actors.append(options.remote(self.cfg, sphere, self.max_shard_batch, self.seq_len, blas_threads,
                                              forward_backward))

    def close(self) -> None:
        """Stop the actors, free the placement group, and disconnect if this object connected. Safe to call twice."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        if self._placement is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self._placement)
        if self._owns_ray:
            self._ray.shutdown()

    def step(self, params: np.ndarray, batches: Sequence[tuple[np.ndarray, np.ndarray]], out: np.ndarray, *,
             dropout: float, seed: int, step: int) -> StepResult:
        """Spheres.step on the cluster: the spheres' forward/backward over `batches` and the sphere-order sum of
        their gradients into `out`. Raises SphereError when the cluster fails beyond Ray's restarts."""
        if self._closed:
            raise RuntimeError("these spheres are closed")
        ray = self._ray
        tokens, loss_scale, shards = plan_step(batches, self.n_spheres, self.max_shard_batch)
        started = time.perf_counter()
        try:
            weights = ray.put(params)
            calls: list = [None] * self.n_spheres
            for sphere, actor in enumerate(self.actors):
                mine = sphere_shards(batches, shards, sphere)
                if mine:
                    calls[sphere] = actor.step.options(num_returns=2).remote(
                        [weights, ray.put(mine)], dropout, seed, step, loss_scale)
            stats = [None if call is None else ray.get(call[0]) for call in calls]
            parallel_end = time.perf_counter()
            out.fill(0.0)
            gather, reduce_seconds = np.zeros(self.n_spheres), 0.0
            for sphere, call in enumerate(calls):
                if call is not None:
                    begin = time.perf_counter()
                    grads = ray.get(call[1])
                    added = time.perf_counter()
                    out += grads
                    gather[sphere] = added - begin
                    reduce_seconds += time.perf_counter() - added
        except ray.exceptions.RayError as exc:
            raise SphereError(f"the Ray cluster failed in step {step + 1}: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from exc
        norm_begin = time.perf_counter()
        sq_norm = grad_sq_norm(out)
        ended = time.perf_counter()
        return _step_result(stats, gather, tokens, sq_norm, ended - started, parallel_end - started,
                            reduce_seconds + ended - norm_begin)

    def evaluate(self, params: np.ndarray, inputs: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """Total nats (float64, summed in sphere order) and counted targets of one batch in eval mode."""
        ray = self._ray
        weights = ray.put(params)
        calls = [actor.evaluate.remote([weights, ray.put((inputs[begin:end], targets[begin:end]))])
                 if end > begin else None
                 for actor, (begin, end) in zip(self.actors, shard_bounds(len(inputs), self.n_spheres))]
        try:
            nats = np.array([0.0 if call is None else ray.get(call) for call in calls])
        except ray.exceptions.RayError as exc:
            raise SphereError(f"the Ray cluster failed in validation: {type(exc).__name__}: {_first_line(exc)}") from exc
        return float(nats.sum()), count_targets(targets)


def sphere_cpus(total_cpus: float, spheres: int) -> float:
    """CPUs to reserve per sphere: an equal share of the cluster's, at most one, rounded down to Ray's 1/10,000
    resource granularity so that the shares always fit."""
    return math.floor(min(1.0, total_cpus / spheres) * 10_000) / 10_000


def _step_result(stats: list, gather: np.ndarray, tokens: int, sq_norm: float, seconds: float, parallel: float,
                 reduce_seconds: float) -> StepResult:
    """The StepResult of one cluster step from the actors' stats (None for a sphere with an empty shard)."""
    n = len(stats)
    busy = np.array([0.0 if s is None else s["busy"] for s in stats])
    fetch = np.array([0.0 if s is None else s["fetch"] for s in stats])
    loss = np.array([0.0 if s is None else s["loss"] for s in stats])
    return StepResult(
        loss_sum=float(loss.sum()), tokens=tokens, sq_norm=sq_norm, seconds=seconds, reduce_seconds=reduce_seconds,
        busy=busy, thread_busy=busy.copy(),
        spheres=[
            SphereRecord(
                id=k,
                sequences=0 if stats[k] is None else stats[k]["rows"],
                tokens=0 if stats[k] is None else stats[k]["tokens"],
                busy=float(busy[k]),
                wait=max(0.0, parallel - float(busy[k]) - float(fetch[k])),
                loss=float(loss[k] / stats[k]["tokens"]) if stats[k] is not None and stats[k]["tokens"] else 0.0,
                node="" if stats[k] is None else stats[k]["node"],
                transfer=float(fetch[k] + gather[k]),
            )
            for k in range(n)
        ],
    )


def check_address(address: str) -> None:
    """ClusterError now, before any work, when Ray is not installed or no cluster answers at `address`."""
    import_ray()
    _check_reachable(address)


def _check_reachable(address: str) -> None:
    """ClusterError at once when a HOST:PORT address (or ray://HOST:PORT) does not accept a TCP connection:
    Ray itself would retry for minutes before failing. "auto" is left to Ray, which fails fast without a cluster."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray takes 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {address}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
