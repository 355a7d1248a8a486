"""The spheres on a Ray cluster: one Ray actor per sphere, behind the same step/evaluate contract as Spheres.

Per optimizer step the control side puts the weights and each sphere's shard in Ray's object store once, calls
every actor's `step` (spheres.run_shard, the function a thread runs) and adds the gradients in sphere-id order, so
the same sphere count and seed give bitwise the weights threads give. Actors are placed one per bundle (SPREAD by
default) with BLAS limited to their node's share of CPUs. A dead actor is restarted and its pure step recomputed;
when Ray gives up, or the head stops answering (checked every HEARTBEAT seconds), step raises SphereError and the
run ends with its last checkpoint. A missing or wrong auth token is one ClusterAuthError before ray.init retries; a cluster that requires a token
gets the one in ~/.ray/auth_token (where `ray start --head` keeps it) when RAY_AUTH_MODE is unset here.
Ray is optional (`pip install 'cllm[cluster]'`), imported only when a ClusterSpheres is built.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ..model import network as model
from ..config import ModelConfig
from ..data.windows import count_targets
from ..errors import CllmError
from ..events import SphereRecord
from ..model.params import num_params
from .spheres import SphereError, StepResult, grad_sq_norm, plan_step, run_shard, shard_bounds, sphere_shards

MAX_RESTARTS = 3  # restarts of a dead sphere actor (and retries of its pending call) before the run fails
CONNECT_TIMEOUT = 5.0  # seconds for the head node to accept a connection
PLACEMENT_TIMEOUT = 120.0  # seconds to wait for the cluster to place every sphere
HEARTBEAT = 1.0  # seconds between checks that the head node answers, while waiting for the spheres
CALL_TIMEOUT = 900.0  # seconds the spheres' answers to one step or validation may take before the run fails
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

    Connects to `address` ("auto", "HOST:PORT" or "ray://HOST:PORT") unless already connected, and disconnects on
    close() only if it connected. `forward_backward` replaces the model's function in the actors (tests kill an actor
    mid-step with it). A context manager: it owns the actors and the placement group."""

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
            _check_cluster(address)
            # Ray's C++ core would print each retry against a lost head for a minute; the run's SphereError says it
            # in one line. With the level set, the core announces it on stderr once, at start: that goes to null.
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
            try:
                with _stderr_to_null():
                    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                             log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(f"cannot connect to a Ray cluster at {address!r}: {_first_line(exc)}") from None
        self.head = ray.get_runtime_context().gcs_address  # HOST:PORT of the head node's GCS
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

        nodes = [node for node in ray.nodes() if node["Alive"]]
        node_cpus = {node["NodeID"]: node["Resources"].get("CPU", 0.0) for node in nodes}
        self.node_names = node_names(nodes)
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
        if self._head_answers():  # else the actors and the placement group went with the cluster
            self._free()
        if self._owns_ray:
            self._ray.shutdown()

    def _free(self) -> None:
        """Stop the actors and remove the placement group."""
        for actor in self.actors:
            self._ray.kill(actor, no_restart=True)
        if self._placement is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self._placement)

    def _head_answers(self) -> bool:
        """True when the head node's GCS port accepts a connection (Ray's calls to a lost head block for minutes)."""
        try:
            _connect(self.head)
        except OSError:
            return False
        return True

    def _await(self, refs: list, what: str) -> list:
        """ray.get(refs), checking every HEARTBEAT seconds that the head node still answers: SphereError when it
        does not, or when the answers take more than CALL_TIMEOUT seconds, instead of waiting on Ray."""
        ray, pending = self._ray, list(refs)
        deadline = time.monotonic() + CALL_TIMEOUT
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=HEARTBEAT)
            if not pending:
                break
            if not self._head_answers():
                raise SphereError(f"lost the Ray cluster's head node {self.head} in {what}: it no longer answers")
            if time.monotonic() > deadline:
                raise SphereError(f"the spheres on the Ray cluster gave no answer in {what} for {CALL_TIMEOUT:.0f} s")
        return ray.get(list(refs))

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
            what = f"step {step + 1}"
            answered = iter(self._await([call[0] for call in calls if call is not None], what))
            stats = [None if call is None else next(answered) for call in calls]
            parallel_end = time.perf_counter()
            out.fill(0.0)
            gather, reduce_seconds = np.zeros(self.n_spheres), 0.0
            for sphere, call in enumerate(calls):
                if call is not None:
                    begin = time.perf_counter()
                    grads, = self._await([call[1]], what)
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
                            reduce_seconds + ended - norm_begin, self.node_names)

    def evaluate(self, params: np.ndarray, inputs: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """Total nats (float64, summed in sphere order) and counted targets of one batch in eval mode."""
        ray = self._ray
        weights = ray.put(params)
        calls = [actor.evaluate.remote([weights, ray.put((inputs[begin:end], targets[begin:end]))])
                 if end > begin else None
                 for actor, (begin, end) in zip(self.actors, shard_bounds(len(inputs), self.n_spheres))]
        try:
            answered = iter(self._await([call for call in calls if call is not None], "validation"))
            nats = np.array([0.0 if call is None else next(answered) for call in calls])
        except ray.exceptions.RayError as exc:
            raise SphereError(f"the Ray cluster failed in validation: {type(exc).__name__}: {_first_line(exc)}") from exc
        return float(nats.sum()), count_targets(targets)


def sphere_cpus(total_cpus: float, spheres: int) -> float:
    """CPUs to reserve per sphere: an equal share of the cluster's, at most one, rounded down to Ray's 1/10,000
    resource granularity so that the shares always fit."""
    return math.floor(min(1.0, total_cpus / spheres) * 10_000) / 10_000


def node_names(nodes: list[dict]) -> dict[str, str]:
    """A readable name for each Ray node id of `nodes` (ray.nodes() entries): its IP address, followed by the start
    of its id when several nodes share that address (nodes started on one machine)."""
    shared = Counter(node["NodeManagerAddress"] for node in nodes)
    return {node["NodeID"]: node["NodeManagerAddress"] + (f" ({node['NodeID'][:6]})"
                                                         if shared[node["NodeManagerAddress"]] > 1 else "")
            for node in nodes}


def _step_result(stats: list, gather: np.ndarray, tokens: int, sq_norm: float, seconds: float, parallel: float,
                 reduce_seconds: float, names: dict[str, str]) -> StepResult:
    """The StepResult of one cluster step from the actors' stats (None for a sphere with an empty shard); `names`
    turns the actors' node ids into the node names the records carry."""
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
                node="" if stats[k] is None else names.get(stats[k]["node"], stats[k]["node"]),
                transfer=float(fetch[k] + gather[k]),
            )
            for k in range(n)
        ],
    )


def check_address(address: str) -> None:
    """ClusterError now, before any work, when Ray is not installed, no cluster answers at `address` or the
    cluster refuses this process's credentials (ClusterAuthError)."""
    import_ray()
    _check_cluster(address)


def _check_cluster(address: str) -> None:
    """_check_reachable, then _check_credentials for a HOST:PORT address."""
    _check_reachable(address)
    if address != "auto" and not address.startswith("ray://"):
        _check_credentials(address)


def _check_reachable(address: str) -> None:
    """ClusterError at once when a HOST:PORT address (or ray://HOST:PORT) does not accept a TCP connection:
    Ray itself would retry for minutes before failing. "auto" is left to Ray, which fails fast without a cluster."""
    if address == "auto":
        return
    _, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray takes 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        _connect(address)
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {address}: {exc.strerror or exc}") from None


class ClusterAuthError(ClusterError):
    """The cluster uses Ray's token authentication and this process has no token for it, or not its token."""


TOKEN_HELP = ("put the cluster's token in ~/.ray/auth_token, or set RAY_AUTH_MODE=token and the token in "
              "RAY_AUTH_TOKEN (`ray get-auth-token` prints it on the head node)")
DEFAULT_TOKEN_FILE = "~/.ray/auth_token"  # where `ray start` and `ray.init` keep the token


def _check_credentials(address: str) -> None:
    """ClusterAuthError at once when the GCS at HOST:PORT refuses this process's credentials (Ray's token auth),
    instead of ray.init's 20 s of retries; asks for the cluster id with the token Ray would send, never shown. A
    cluster that requires a token gets the one in ~/.ray/auth_token when RAY_AUTH_MODE is unset here, as Ray does
    for a cluster it finds on this machine."""
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:  # a Ray before 2.52 has no token authentication
        return

    if get_authentication_mode() != AuthenticationMode.TOKEN:
        if not _refuses(address):
            return
        if not _use_default_token_file():
            raise ClusterAuthError(f"the Ray cluster at {address} requires a token (token authentication): "
                                   f"{TOKEN_HELP}")
    _check_token_found(address)
    if _refuses(address):
        raise ClusterAuthError(f"the Ray cluster at {address} refused this machine's token (from "
                               f"{_token_source()}): {TOKEN_HELP}")


def _check_token_found(address: str) -> None:
    """ClusterAuthError when Ray finds no token to send (RAY_AUTH_MODE=token here): without one Ray's client
    would abort the process."""
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError

    try:
        found = AuthenticationTokenLoader.instance().has_token()
    except AuthenticationError:  # none found, or RAY_AUTH_TOKEN_PATH unreadable
        found = False
    if not found:
        raise ClusterAuthError(f"RAY_AUTH_MODE=token but no Ray token could be read ({_token_source()}) for the "
                               f"cluster at {address}: {TOKEN_HELP}")


def _refuses(address: str) -> bool:
    """Whether the cluster's GCS at HOST:PORT refuses the credentials Ray's client sends from here (False for
    anything else, no GCS at that port, ...: that is ray.init's to report, in its words)."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with _stderr_to_null():  # Ray's C++ client logs each refusal
            GcsClient(address=address)
    except AuthenticationError:
        return True
    except Exception:
        return False
    return False


def _use_default_token_file() -> bool:
    """Token authentication on for this process and the processes it starts (RAY_AUTH_MODE=token, as `ray start`
    and `ray.init` turn it on when they find a token), when RAY_AUTH_MODE is unset and the token is in the file
    where Ray keeps it: no RAY_AUTH_TOKEN nor RAY_AUTH_TOKEN_PATH, which without RAY_AUTH_MODE=token mean nothing
    to Ray's client either. False, and nothing changed, otherwise."""
    if any(os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        return False
    if not os.path.isfile(os.path.expanduser(DEFAULT_TOKEN_FILE)):
        return False
    from ray._raylet import AuthenticationTokenLoader, Config

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # Ray caches its configuration: read RAY_AUTH_MODE again
    AuthenticationTokenLoader.instance().reset_cache()
    return True


def _token_source() -> str:
    """Where Ray reads this process's token from (its precedence order), without the token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH, {os.environ['RAY_AUTH_TOKEN_PATH']}"
    return DEFAULT_TOKEN_FILE


def _connect(address: str) -> None:
    """Open and close a TCP connection to HOST:PORT (or ray://HOST:PORT); OSError when nothing accepts it."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()


@contextlib.contextmanager
def _stderr_to_null():
    """File descriptor 2 (where C++ libraries write) points at /dev/null for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
