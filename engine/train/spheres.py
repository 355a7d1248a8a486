"""The twelve spheres: deterministic data-parallel forward/backward on a pool of OS threads.

A global batch is cut into one shard per sphere (the cut depends only on the sphere count); each sphere runs its
shard of every micro-batch into a gradient buffer of its own, so the hot path has no shared writes. The buffers are
added in sphere-id order (((0 + g0) + g1) + ...) with BLAS at one thread per call, so the weights are bitwise the
same for any thread count. Per sphere and step it records sequences, tokens, busy and wait seconds and loss.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from ..model import network as model
from ..config import ModelConfig
from ..data.windows import count_targets
from ..errors import CllmError
from ..events import SphereRecord
from ..model.params import num_params

REDUCE_CHUNKS = 64  # fixed, so the float64 norm partials are grouped identically for any thread count


class SphereError(CllmError, RuntimeError):
    """A worker sphere raised during a step; the step was abandoned and no thread is left running."""


@dataclass
class StepResult:
    """What one optimizer step of the spheres produced (the gradient itself is in the `out` buffer)."""

    loss_sum: float  # nats summed over every target token of the step
    tokens: int  # target tokens of the step
    sq_norm: float  # squared L2 norm of the reduced gradient
    seconds: float  # wall time of the parallel phase plus the reduction
    reduce_seconds: float
    busy: np.ndarray  # (spheres,) seconds each sphere computed
    thread_busy: np.ndarray  # (threads,) seconds each thread computed
    spheres: list[SphereRecord]  # per sphere: sequences, tokens, busy and wait seconds, loss

    @property
    def load_imbalance(self) -> float:
        """max/mean busy time of the threads (the cores' share of the work) minus 1."""
        mean = float(self.thread_busy.mean())
        return float(self.thread_busy.max()) / mean - 1.0 if mean > 0 else 0.0


def resolve_threads(threads: int, spheres: int) -> int:
    """OS threads to run `spheres` on: `threads`, or one per usable core when 0, capped at the sphere count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = threads if threads > 0 else cores
    return max(1, min(wanted, spheres))


def shard_bounds(batch: int, spheres: int) -> list[tuple[int, int]]:
    """Row ranges [begin, end) of each sphere's shard; the first batch % spheres shards get one row more."""
    base, extra = divmod(batch, spheres)
    bounds, begin = [], 0
    for sphere in range(spheres):
        end = begin + base + (1 if sphere < extra else 0)
        bounds.append((begin, end))
        begin = end
    return bounds


def sphere_seed(seed: int, step: int, micro: int, sphere: int) -> int:
    """The dropout seed of one sphere's shard of one micro-batch: independent of threads and timing."""
    return int(np.random.SeedSequence([seed, step, micro, sphere]).generate_state(1)[0])


@numba.njit(cache=True, nogil=True)
def _sq_norm(x: np.ndarray, begin: int, end: int) -> float:
    """Sum of squares of x[begin:end] in float64."""
    sq = 0.0
    for i in range(begin, end):
        sq += float(x[i]) * float(x[i])
    return sq


def plan_step(batches: Sequence[tuple[np.ndarray, np.ndarray]], n_spheres: int,
              max_shard_batch: int) -> tuple[int, float, list[list[tuple[int, int]]]]:
    """The target tokens of a step's micro-batches, the loss scale 1 / tokens and each micro-batch's shard bounds;
    ValueError when a micro-batch has more rows than n_spheres x max_shard_batch."""
    for inputs, _ in batches:
        if len(inputs) > n_spheres * max_shard_batch:
            raise ValueError(f"micro-batch of {len(inputs)} rows exceeds {n_spheres} spheres x {max_shard_batch}")
    tokens = sum(count_targets(t) for _, t in batches)
    return tokens, 1.0 / max(tokens, 1), [shard_bounds(len(inputs), n_spheres) for inputs, _ in batches]


def sphere_shards(batches: Sequence[tuple[np.ndarray, np.ndarray]], shards: Sequence[list[tuple[int, int]]],
                  sphere: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """One sphere's non-empty shards of a step's micro-batches: (micro-batch index, inputs, targets) each."""
    return [(micro, inputs[bounds[sphere][0]:bounds[sphere][1]], targets[bounds[sphere][0]:bounds[sphere][1]])
            for micro, ((inputs, targets), bounds) in enumerate(zip(batches, shards))
            if bounds[sphere][1] > bounds[sphere][0]]


def run_shard(forward_backward: Callable, cfg: ModelConfig, params: np.ndarray, grads: np.ndarray, scratch,
              shards: Sequence[tuple[int, np.ndarray, np.ndarray]], *, sphere: int, seed: int, step: int,
              dropout: float, loss_scale: float) -> tuple[float, int, int]:
    """One sphere's forward/backward over its shards (see sphere_shards) into `grads`, zeroed first.

    Returns the nats summed over its target tokens, the target tokens and the sequences. A pure function of its
    arguments, so a thread and a Ray actor (engine/train/cluster.py) compute bitwise the same gradient."""
    grads.fill(0.0)
    loss, tokens, rows = 0.0, 0, 0
    for micro, inputs, targets in shards:
        loss += forward_backward(params, grads, inputs, targets, cfg, scratch, dropout=dropout,
                                 seed=sphere_seed(seed, step, micro, sphere), loss_scale=loss_scale)
        tokens += count_targets(targets)
        rows += len(inputs)
    return loss, tokens, rows


def grad_sq_norm(out: np.ndarray, map_chunks: Callable = map) -> float:
    """Squared L2 norm of `out` from float64 partials over REDUCE_CHUNKS fixed chunks, summed in chunk order
    (`map_chunks` may be a thread pool's map: the result is the same)."""
    edges = [out.size * c // REDUCE_CHUNKS for c in range(REDUCE_CHUNKS + 1)]
    return float(sum(map_chunks(lambda c: _sq_norm(out, edges[c], edges[c + 1]), range(REDUCE_CHUNKS))))


EMPTY = -1  # "buffer" of a sphere whose shard is empty (a batch smaller than the sphere count)


@numba.njit(cache=True, nogil=True)
def _add_rows(out: np.ndarray, buffers: np.ndarray, rows: np.ndarray) -> None:
    """out += buffers[rows[0]]; out += buffers[rows[1]]; ... in that order for every element (one pass over
    `out`, blocked for the cache; bitwise the same as separate additions)."""
    for block in range(0, out.size, 4096):
        stop = min(block + 4096, out.size)
        for r in rows:
            src = buffers[r]
            for i in range(block, stop):
                out[i] += src[i]


class _StepWork:
    """Shared state of one step's workers: the next sphere, the buffer pool and the in-order reduction."""

    def __init__(self, n_spheres: int, n_buffers: int):
        self.next_sphere = 0
        self.cond = threading.Condition()
        self.free = list(range(n_buffers))
        self.done: list[int | None] = [None] * n_spheres  # buffer holding sphere k's gradient, EMPTY if none
        self.next_reduce = 0
        self.reducing = False
        self.reduce_seconds = 0.0
        self.error: tuple[int, BaseException] | None = None


class Spheres:
    """N worker spheres on a thread pool plus the control sphere's fixed-order reduction.

    Gradient buffers come from a pool of 2 x threads (not one per sphere: 12 x the parameters in RAM); finished ones
    are added to the output in sphere-id order, several per fused pass. A context manager: it owns the threads and
    limits BLAS to one thread while open. `forward_backward` is a parameter so that tests can make a sphere fail."""

    def __init__(
        self,
        cfg: ModelConfig,
        n_spheres: int,
        n_threads: int,
        max_shard_batch: int,
        seq_len: int,
        *,
        forward_backward: Callable | None = None,
    ):
        if n_spheres <= 0 or n_threads <= 0 or max_shard_batch <= 0:
            raise ValueError("spheres, threads and shard batch must be positive")
        self.cfg = cfg
        self.n_spheres = n_spheres
        self.n_threads = min(n_threads, n_spheres)
        self.max_shard_batch = max_shard_batch
        self.seq_len = seq_len
        self._forward_backward = forward_backward or model.forward_backward
        self.buffers = np.zeros((min(n_spheres, 2 * self.n_threads), num_params(cfg)), dtype=np.float32)
        # Scratch is per thread, not per sphere: it carries nothing between calls and twelve would cost RSS.
        self._scratch = [model.make_scratch(cfg, max_shard_batch, seq_len) for _ in range(self.n_threads)]
        self._blas = threadpool_limits(limits=1)
        self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="cllm-sphere")
        self._thread_ids: dict[int, int] = {}
        self._thread_lock = threading.Lock()
        self._busy = np.zeros(n_spheres)
        self._loss = np.zeros(n_spheres)
        self._tokens = np.zeros(n_spheres, dtype=np.int64)
        self._rows = np.zeros(n_spheres, dtype=np.int64)
        self._thread_busy = np.zeros(self.n_threads)
        self._closed = False

    def __enter__(self) -> "Spheres":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Join the threads and restore the BLAS thread count. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True)
            self._blas.restore_original_limits()

    def step(
        self,
        params: np.ndarray,
        batches: Sequence[tuple[np.ndarray, np.ndarray]],
        out: np.ndarray,
        *,
        dropout: float,
        seed: int,
        step: int,
    ) -> StepResult:
        """One optimizer step's forward/backward over `batches` (micro-batches of (inputs, targets), each at most
        n_spheres * max_shard_batch rows), the gradient of the step's mean token loss summed in sphere order into `out`.
        SphereError (caused by the sphere's exception) when a sphere fails."""
        if self._closed:
            raise RuntimeError("these spheres are closed")
        tokens, loss_scale, shards = plan_step(batches, self.n_spheres, self.max_shard_batch)
        for array in (self._busy, self._loss, self._tokens, self._rows, self._thread_busy):
            array.fill(0)
        out.fill(0.0)
        work = _StepWork(self.n_spheres, len(self.buffers))
        started = time.perf_counter()

        def worker() -> None:
            thread = self._thread_index()
            while (claim := self._claim(work, shards)) is not None:
                sphere, buffer = claim
                try:
                    if buffer != EMPTY:
                        self._run_sphere(sphere, buffer, thread, params, batches, shards, loss_scale, dropout, seed, step)
                    self._finish(work, sphere, buffer, out)
                except BaseException as exc:  # noqa: BLE001 - handed to the control sphere below
                    with work.cond:
                        work.error = work.error or (sphere, exc)
                        work.cond.notify_all()
                    return

        futures = [self._pool.submit(worker) for _ in range(self.n_threads)]
        try:
            for future in futures:
                future.result()
        except BaseException as exc:  # e.g. KeyboardInterrupt in the caller: stop the workers, let them drain
            with work.cond:
                work.error = work.error or (-1, exc)
                work.cond.notify_all()
            for future in futures:
                future.exception()
            raise
        parallel_end = time.perf_counter()
        if work.error is not None:
            sphere, exc = work.error
            raise SphereError(f"sphere {sphere} failed: {type(exc).__name__}: {exc}") from exc
        sq_norm = grad_sq_norm(out, self._pool.map)
        ended = time.perf_counter()
        return self._result(tokens, sq_norm, started, parallel_end, ended, work.reduce_seconds)

    def _result(self, tokens: int, sq_norm: float, started: float, parallel_end: float, ended: float,
                reduce_seconds: float) -> StepResult:
        """The step's StepResult from the spheres' counters (each sphere's wait: the parallel part minus its busy
        time)."""
        parallel = parallel_end - started
        return StepResult(
            loss_sum=float(self._loss.sum()), tokens=tokens, sq_norm=sq_norm, seconds=ended - started,
            reduce_seconds=reduce_seconds + ended - parallel_end, busy=self._busy.copy(),
            thread_busy=self._thread_busy.copy(),
            spheres=[
                SphereRecord(id=s, sequences=int(self._rows[s]), tokens=int(self._tokens[s]), busy=float(self._busy[s]),
                             wait=max(0.0, parallel - float(self._busy[s])),
                             loss=float(self._loss[s] / self._tokens[s]) if self._tokens[s] else 0.0)
                for s in range(self.n_spheres)
            ],
        )

    def evaluate(self, params: np.ndarray, inputs: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """Total nats (float64, summed in sphere order) and counted targets of one batch in eval mode."""
        bounds = shard_bounds(len(inputs), self.n_spheres)
        nats = np.zeros(self.n_spheres)

        def shard(sphere: int) -> None:
            begin, end = bounds[sphere]
            if end > begin:
                scratch = self._scratch[self._thread_index()]
                losses = model.token_losses(params, inputs[begin:end], targets[begin:end], self.cfg, scratch)
                nats[sphere] = float(losses.sum(dtype=np.float64))

        list(self._pool.map(shard, range(self.n_spheres)))
        return float(nats.sum()), count_targets(targets)

    def _thread_index(self) -> int:
        """A stable 0..n_threads-1 index of the calling pool thread (for per-thread scratch and telemetry)."""
        ident = threading.get_ident()
        with self._thread_lock:
            return self._thread_ids.setdefault(ident, len(self._thread_ids))

    def _claim(self, work: _StepWork, shards) -> tuple[int, int] | None:
        """The next sphere in id order with a free buffer (EMPTY for an empty shard), or None when there is no
        more work. Taking both under one lock means the earliest unreduced sphere always holds its buffer, so
        the in-order reduction can always progress and the pool cannot deadlock."""
        with work.cond:
            while work.error is None and work.next_sphere < self.n_spheres and not work.free:
                work.cond.wait()
            if work.error is not None or work.next_sphere >= self.n_spheres:
                return None
            sphere = work.next_sphere
            work.next_sphere += 1
            if all(bounds[sphere][0] == bounds[sphere][1] for bounds in shards):
                return sphere, EMPTY
            return sphere, work.free.pop()

    def _run_sphere(self, sphere, buffer, thread, params, batches, shards, loss_scale, dropout, seed, step) -> None:
        """Forward/backward of one sphere's shard of each micro-batch into its pool buffer."""
        begin_time = time.perf_counter()
        self._loss[sphere], self._tokens[sphere], self._rows[sphere] = run_shard(
            self._forward_backward, self.cfg, params, self.buffers[buffer], self._scratch[thread],
            sphere_shards(batches, shards, sphere), sphere=sphere, seed=seed, step=step, dropout=dropout,
            loss_scale=loss_scale,
        )
        busy = time.perf_counter() - begin_time
        self._busy[sphere] = busy
        self._thread_busy[thread] += busy

    def _finish(self, work: _StepWork, sphere: int, buffer: int, out: np.ndarray) -> None:
        """Record a finished sphere; unless another thread is reducing, add the buffers that are next in sphere-id
        order into `out` (see _ready) and return them to the pool. The order never depends on timing."""
        with work.cond:
            work.done[sphere] = buffer
            if work.reducing:
                return  # the active reducer re-checks `done` under the lock before it stops
            work.reducing = True
        while True:
            with work.cond:
                ready = self._ready(work)
                if not ready:
                    work.reducing = False
                    return
            begin = time.perf_counter()
            rows = [b for b in ready if b != EMPTY]
            if rows:
                _add_rows(out, self.buffers, np.array(rows, dtype=np.int64))
            with work.cond:
                work.reduce_seconds += time.perf_counter() - begin
                work.next_reduce += len(ready)
                work.free.extend(rows)
                work.cond.notify_all()

    def _ready(self, work: _StepWork) -> list[int]:
        """The finished buffers next in sphere order, once it is time to add them: when the pool is empty (a
        worker may be waiting for a buffer) or every sphere is claimed. Waiting until then lets one fused pass
        over `out` add several buffers. Called under work.cond."""
        if work.error is not None or (work.free and work.next_sphere < self.n_spheres):
            return []
        ready, k = [], work.next_reduce
        while k < self.n_spheres and work.done[k] is not None:
            ready.append(work.done[k])
            k += 1
        return ready

