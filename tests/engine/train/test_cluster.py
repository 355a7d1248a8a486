"""engine/train/cluster.py on a local Ray cluster the tests start: bitwise the thread result, restarts, failures, and
`cllm train --ray` losing its head node.

Ray is an optional dependency: without it these tests are skipped, unless CLLM_REQUIRE_E2E=1 (as in CI, whose test
extra installs it), where its absence is a failure."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cllm.engine.model.checkpoint import load_checkpoint
from cllm.engine.config import ModelConfig, TrainConfig
from cllm.engine.events import StartEvent, TrainingMetadata
from cllm.engine.faults import FAULT_ENV
from cllm.engine.model.network import forward_backward
from cllm.engine.model.params import init_params
from cllm.engine.paths import acquire_training_lock, release_training_lock
from cllm.engine.train.spheres import SphereError, Spheres
from cllm.engine.train.loop import train
from conftest import missing_prerequisite, write_c_workspace

CFG = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=16, dropout=0.1)
SEQ, SPHERES, SHARD = 16, 3, 5


@pytest.fixture(scope="module")
def ray():
    """A local Ray cluster of 2 CPUs (worker processes, loopback only), started for these tests."""
    try:
        import ray
    except ImportError:
        missing_prerequisite("ray is not installed (pip install '.[cluster]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _batches(seed: int, rows: int = 13):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        tokens = rng.integers(0, CFG.vocab_size, size=(rows, SEQ + 1)).astype(np.int32)
        targets = tokens[:, 1:].copy()
        targets[-1, -3:] = -1
        out.append((tokens[:, :-1].copy(), targets))
    return out


def _three_steps(spheres, params):
    """Three steps (a plain SGD update in between, so each step sees new weights): final weights and results."""
    params, grads, results = params.copy(), np.zeros_like(params), []
    for step in range(3):
        results.append(spheres.step(params, _batches(step), grads, dropout=0.1, seed=7, step=step))
        params -= np.float32(0.1) * grads
    return params, results


def test_the_cluster_gives_bitwise_the_weights_of_the_threads(ray):
    from cllm.engine.train.cluster import ClusterSpheres

    params = init_params(CFG, 0)
    with Spheres(CFG, SPHERES, 2, SHARD, SEQ) as spheres:
        on_threads, thread_results = _three_steps(spheres, params)
        thread_eval = spheres.evaluate(on_threads, *_batches(9)[0])
    with ClusterSpheres(CFG, SPHERES, SHARD, SEQ) as spheres:
        on_ray, ray_results = _three_steps(spheres, params)
        ray_eval = spheres.evaluate(on_ray, *_batches(9)[0])
        assert len(spheres.actors) == SPHERES
    assert np.array_equal(on_threads, on_ray)
    assert [r.sq_norm for r in thread_results] == [r.sq_norm for r in ray_results]
    assert [r.loss_sum for r in thread_results] == [r.loss_sum for r in ray_results]
    assert thread_eval == ray_eval
    assert [r.sequences for r in ray_results[-1].spheres] == [10, 8, 8]  # 2 x 13 rows over 3 spheres: 5, 4, 4
    assert [r.tokens for r in ray_results[-1].spheres] == [r.tokens for r in thread_results[-1].spheres]
    record = ray_results[-1].spheres[0]
    assert record.node and record.transfer > 0
    assert thread_results[-1].spheres[0].node == "" and thread_results[-1].spheres[0].transfer == 0.0


def test_a_sphere_killed_mid_step_is_restarted_and_the_step_recomputed_bitwise(ray, tmp_path):
    from cllm.engine.train.cluster import ClusterSpheres

    marker = str(tmp_path / "killed")

    def dies_once(params, grads, inputs, targets, cfg, scratch, **kw):
        """Sphere 1's process exits in its first forward/backward of the second step (the marker says so)."""
        if kw["seed"] == sphere_one_seed and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return forward_backward(params, grads, inputs, targets, cfg, scratch, **kw)

    from cllm.engine.train.spheres import sphere_seed

    sphere_one_seed = sphere_seed(7, 1, 0, 1)
    params = init_params(CFG, 0)
    with Spheres(CFG, SPHERES, 2, SHARD, SEQ) as spheres:
        expected, _ = _three_steps(spheres, params)
    with ClusterSpheres(CFG, SPHERES, SHARD, SEQ, forward_backward=dies_once) as spheres:
        pid = ray.get(spheres.actors[1].pid.remote())
        got, _ = _three_steps(spheres, params)
        assert ray.get(spheres.actors[1].pid.remote()) != pid  # a new process took over
    assert os.path.exists(marker)
    assert np.array_equal(expected, got)


def test_a_sphere_ray_cannot_restart_fails_the_step_with_a_sphere_error(ray):
    from cllm.engine.train.cluster import ClusterSpheres

    params = init_params(CFG, 0)
    with ClusterSpheres(CFG, SPHERES, SHARD, SEQ) as spheres:
        ray.kill(spheres.actors[2], no_restart=True)
        with pytest.raises(SphereError, match="Ray cluster failed in step 1"):
            spheres.step(params, _batches(0), np.zeros_like(params), dropout=0.1, seed=7, step=0)


def test_train_on_the_cluster_writes_the_model_threads_write(ray, c_workspace, tmp_path):
    model = ModelConfig(vocab_size=400, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32, dropout=0.1)
    cfg = TrainConfig(epochs=1, max_steps=3, batch_size=8, seq_len=32, grad_accum=2, spheres=SPHERES, threads=2,
                      val_fraction=0.25)
    on_threads = train(c_workspace, model, cfg, tmp_path / "threads.cllm")
    events = []
    on_ray = train(c_workspace, model, replace(cfg, threads=0), tmp_path / "ray.cllm", events.append, cluster="auto")
    assert on_ray.steps == on_threads.steps == 3 and on_ray.threads == SPHERES
    a = load_checkpoint(tmp_path / "threads.cllm", with_optimizer=True)
    b = load_checkpoint(tmp_path / "ray.cllm", with_optimizer=True)
    assert np.array_equal(a.optimizer["params"], b.optimizer["params"])
    assert np.array_equal(a.params, b.params)
    start = next(event for event in events if isinstance(event, StartEvent))
    assert start.threads == SPHERES


def test_nothing_imports_ray_unless_asked():
    """Ray is optional: the trainer, the cluster module and the CLI load without importing it."""
    code = ("import sys, cllm.engine.train.loop, cllm.engine.train.cluster, cllm.server.cli; "
            "print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


# Ray's token authentication off for the head the test starts and its driver: a token file some other Ray left in
# ~/.ray would otherwise switch it on for `ray start` alone.
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}
RUN = ["--json", "--no-base", "--epochs", "100", "--batch-size", "4", "--seq-len", "32", "--vocab-size", "300",
       "--d-model", "32", "--layers", "1", "--heads", "2", "--ffn", "64", "--spheres", "3"]


def _processes_of(folder: str) -> list[int]:
    """The ids of the processes whose command line names `folder` (the head's GCS, raylet and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and folder in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:  # ended meanwhile
            pass
    return found


def _start_head(env: dict) -> tuple[str, str]:
    """`ray start --head` on loopback in a new temporary folder, with `env`: (address, folder)."""
    folder = tempfile.mkdtemp(prefix="cllm-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([shutil.which("ray", path=os.path.dirname(sys.executable)), "start", "--head",
                    "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", f"--temp-dir={folder}",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=120)
    return f"127.0.0.1:{port}", folder


def _stop_head(folder: str) -> None:
    """Kill a head's processes by id (they are the ones naming its folder), whatever the test did, and remove it."""
    for pid in _processes_of(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def head(ray):
    """A Ray head node started with `ray start --head` on loopback in a temporary folder: (address, folder).
    Its processes are killed at the end. It asks for the `ray` fixture for its check that Ray is installed."""
    address, folder = _start_head(RAY_ENV)
    yield address, folder
    _stop_head(folder)


def _assert_one_line_error(code: int, out: str, errors: str) -> None:
    """The run failed (status 1) with one line on stderr saying the cluster failed and the checkpoint is intact,
    and an error event last on stdout (--json). Whether the trainer noticed the lost head itself ("lost the Ray
    cluster's head node") or Ray ended it first (cllm train says so) depends on where the kill lands."""
    assert code == 1
    assert errors.splitlines() == [errors.strip()] and errors.startswith("cllm train: error: "), (errors, out[-2000:])
    assert "Ray cluster" in errors and "the last checkpoint, if any, is intact" in errors
    assert json.loads(out.splitlines()[-1])["event"] == "error"


def test_a_training_process_ray_ends_by_itself_is_reported_in_one_line(head, tmp_path):
    """Ray ends a driver whose node is lost with a quick exit (no Python error, nothing said): here the training
    process kills itself after its third step (a fail point) the same way, and `cllm train --ray` says it."""
    workspace, out = write_c_workspace(tmp_path / "ws"), tmp_path / "model.cllm"
    run = subprocess.run([sys.executable, "-m", "cllm.server.cli", "train", str(workspace), "--out", str(out),
                          "--ray", head[0], *RUN],
                         env={**RAY_ENV, FAULT_ENV: "step:3"}, capture_output=True, text=True, timeout=300)
    _assert_one_line_error(run.returncode, run.stdout, run.stderr)
    assert "the Ray cluster ended the training process" in run.stderr
    release_training_lock(acquire_training_lock(workspace))  # the lock went with the watching process


def test_the_head_lost_ends_the_run_in_one_line_with_the_last_checkpoint_intact(head, tmp_path):
    address, folder = head
    workspace, out = write_c_workspace(tmp_path / "ws"), tmp_path / "model.cllm"
    run = subprocess.Popen([sys.executable, "-m", "cllm.server.cli", "train", str(workspace), "--out", str(out),
                            "--ray", address, *RUN], env=RAY_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        for line in run.stdout:  # until the first checkpoint is written (an epoch's end)
            if json.loads(line)["event"] == "checkpoint":
                break
        for pid in _processes_of(folder):
            os.kill(pid, signal.SIGKILL)
        rest, errors = run.communicate(timeout=120)
    finally:
        run.kill()
    _assert_one_line_error(run.returncode, rest, errors)
    kept = load_checkpoint(out, with_optimizer=True)
    position = TrainingMetadata.from_json(kept.metadata).resume
    assert position.step > 0 and position.epoch >= 1
    release_training_lock(acquire_training_lock(workspace))  # no stale lock
    resumed = subprocess.run([sys.executable, "-m", "cllm.server.cli", "train", str(workspace), "--out", str(out),
                              "--resume", str(out), "--max-steps", str(position.step + 2), "--threads", "1",
                              "--json"], env=RAY_ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    done = json.loads(resumed.stdout.splitlines()[-1])
    assert done["event"] == "done" and done["steps"] == position.step + 2


def test_nodes_are_named_by_address_and_by_id_where_they_share_one():
    from cllm.engine.train.cluster import node_names

    nodes = [{"NodeID": "ab12cd34", "NodeManagerAddress": "10.0.0.1"},
             {"NodeID": "ef56ab78", "NodeManagerAddress": "10.0.0.2"},
             {"NodeID": "99aa88bb", "NodeManagerAddress": "10.0.0.2"}]
    assert node_names(nodes) == {"ab12cd34": "10.0.0.1", "ef56ab78": "10.0.0.2 (ef56ab)", "99aa88bb": "10.0.0.2 (99aa88)"}


# A cluster with Ray's token authentication (RAY_AUTH_MODE=token on the head). The drivers run with a HOME of their
# own, so that no ~/.ray/auth_token of this machine is read or written.
CLUSTER_TOKEN = "cllm-test-token-5d1e8c"
NO_AUTH_ENV = {key: value for key, value in RAY_ENV.items() if not key.startswith("RAY_AUTH_")}


@pytest.fixture(scope="module")
def token_head(ray, tmp_path_factory):
    """A head node that requires CLUSTER_TOKEN: (address, a workspace to train on)."""
    home = tmp_path_factory.mktemp("head-home")
    address, folder = _start_head({**NO_AUTH_ENV, "HOME": str(home), "RAY_AUTH_MODE": "token",
                                   "RAY_AUTH_TOKEN": CLUSTER_TOKEN})
    yield address, write_c_workspace(tmp_path_factory.mktemp("token-ws") / "ws")
    _stop_head(folder)


def _train_on(address: str, workspace: Path, home: Path, env: dict) -> subprocess.CompletedProcess:
    """`cllm train --ray ADDRESS` of three steps, as a user whose home folder is `home`, with `env` added."""
    return subprocess.run([sys.executable, "-m", "cllm.server.cli", "train", str(workspace), "--out",
                           str(home / "model.cllm"), "--ray", address, *RUN, "--max-steps", "3"],
                          env={**NO_AUTH_ENV, "HOME": str(home), **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("env, says", [
    ({}, "requires a token"),  # nothing: Ray sends no token
    ({"RAY_AUTH_TOKEN": CLUSTER_TOKEN}, "requires a token"),  # Ray sends a token only with RAY_AUTH_MODE=token
    ({"RAY_AUTH_MODE": "token"}, "no Ray token could be read (~/.ray/auth_token)"),
    ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"},
     "refused this machine's token (from RAY_AUTH_TOKEN)"),
])
def test_a_driver_without_the_clusters_token_ends_in_one_line_saying_how_to_give_it(token_head, tmp_path, env, says):
    """Ray's own connection would retry for 20 s and then report a connection failure (or abort the process): the
    run ends at once, status 1, with one line naming the cluster and the ways to give the token, never the token."""
    address, workspace = token_head
    run = _train_on(address, workspace, tmp_path, env)
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.stderr.splitlines() == [run.stderr.strip()] and run.stderr.startswith("cllm train: error: "), run.stderr
    assert says in run.stderr and address in run.stderr
    assert "RAY_AUTH_MODE=token" in run.stderr and "RAY_AUTH_TOKEN" in run.stderr and "~/.ray/auth_token" in run.stderr
    event = json.loads(run.stdout.splitlines()[-1])
    assert event["event"] == "error" and event["message"] == run.stderr.strip().removeprefix("cllm train: error: ")
    assert CLUSTER_TOKEN not in run.stderr + run.stdout and "not-the-token" not in run.stderr + run.stdout
    release_training_lock(acquire_training_lock(workspace))  # no stale lock


def test_a_driver_with_the_clusters_token_in_its_token_file_trains_on_it(token_head, tmp_path):
    address, workspace = token_head
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(CLUSTER_TOKEN)
    run = _train_on(address, workspace, tmp_path, {"RAY_AUTH_MODE": "token"})
    assert run.returncode == 0, run.stderr[-2000:]
    done = json.loads(run.stdout.splitlines()[-1])
    assert done["event"] == "done" and done["steps"] == 3 and done["spheres"] == 3
    assert CLUSTER_TOKEN not in run.stderr + run.stdout


def test_a_token_file_left_in_home_does_not_stop_a_cluster_without_token_auth(head, tmp_path):
    """Ray sends no token to an address it was given unless RAY_AUTH_MODE=token: a left-over ~/.ray/auth_token is
    harmless."""
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("left-over-token")
    run = _train_on(head[0], write_c_workspace(tmp_path / "ws"), tmp_path, {})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.splitlines()[-1])["event"] == "done"


def _ray_command(*args: str, env: dict) -> subprocess.CompletedProcess:
    """The `ray` command of this Python's environment with `args`, its output captured (a token is never shown)."""
    return subprocess.run([shutil.which("ray", path=os.path.dirname(sys.executable)), *args], env=env, check=True,
                          capture_output=True, text=True, timeout=120)


def test_a_head_started_with_rays_defaults_trains_with_the_token_where_ray_keeps_it(ray, tmp_path):
    """As a Ray user does: a token made once with Ray's own command (it lands in ~/.ray/auth_token), then
    `ray start --head` with no RAY_AUTH_* variable, which turns token authentication on because a token is there.
    `cllm train --ray ADDRESS` as the same user needs nothing more; another user without the token is refused."""
    home = tmp_path / "home"
    home.mkdir()
    user = {**NO_AUTH_ENV, "HOME": str(home)}
    _ray_command("get-auth-token", "--generate", env=user)
    token = (home / ".ray" / "auth_token").read_text().strip()
    address, folder = _start_head(user)
    try:
        workspace = write_c_workspace(tmp_path / "ws")
        stranger = tmp_path / "stranger"
        stranger.mkdir()
        refused = _train_on(address, workspace, stranger, {})
        assert refused.returncode == 1 and "requires a token" in refused.stderr, refused.stderr[-2000:]
        run = _train_on(address, workspace, home, {})
        assert run.returncode == 0, run.stderr[-2000:]
        done = json.loads(run.stdout.splitlines()[-1])
        assert done["event"] == "done" and done["steps"] == 3 and done["spheres"] == 3
        assert token and token not in run.stderr + run.stdout + refused.stderr + refused.stdout
    finally:
        _stop_head(folder)
