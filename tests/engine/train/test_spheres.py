"""The spheres: shard sizes, a correct reduced gradient, bitwise determinism across thread counts, errors."""

import threading
from dataclasses import replace

import numpy as np
import pytest

from cllm.engine.config import ModelConfig
from cllm.engine.model.kernels import adamw_step
from cllm.engine.model.network import forward_backward, make_scratch
from cllm.engine.model.params import decay_mask, init_params
from cllm.engine.train.spheres import SphereError, Spheres, resolve_threads, shard_bounds

CFG = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=16, dropout=0.1)
SEQ = 16


def _batches(seed: int, n_micro: int = 2, rows: int = 13):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_micro):
        tokens = rng.integers(0, CFG.vocab_size, size=(rows, SEQ + 1)).astype(np.int32)
        targets = tokens[:, 1:].copy()
        targets[-1, -3:] = -1  # some ignored positions
        out.append((tokens[:, :-1].copy(), targets))
    return out


@pytest.mark.parametrize("batch, spheres", [(32, 12), (13, 12), (5, 12), (24, 12), (7, 3)])
def test_shards_cover_the_batch_and_differ_by_at_most_one(batch, spheres):
    bounds = shard_bounds(batch, spheres)
    sizes = [end - begin for begin, end in bounds]
    assert len(bounds) == spheres and sum(sizes) == batch
    assert max(sizes) - min(sizes) <= 1
    assert all(b[1] == n[0] for b, n in zip(bounds, bounds[1:]))


def test_resolve_threads_caps_at_spheres_and_defaults_to_cores():
    assert resolve_threads(3, 2) == 2
    assert resolve_threads(1, 12) == 1
    assert 1 <= resolve_threads(0, 12) <= 12


@pytest.mark.parametrize("rows", [13, 5])  # 5 rows: seven spheres have nothing to do
def test_reduced_gradient_is_the_mean_loss_gradient_of_the_whole_step(rows):
    params = init_params(CFG, 0)
    batches = _batches(1, rows=rows)
    out = np.full_like(params, 7.0)  # overwritten, not added to
    with Spheres(CFG, 12, 2, 2, SEQ) as spheres:
        result = spheres.step(params, batches, out, dropout=0.0, seed=0, step=0)
    reference = np.zeros_like(params)
    scratch = make_scratch(CFG, rows, SEQ)
    tokens = sum(int((t != -1).sum()) for _, t in batches)
    loss = sum(forward_backward(params, reference, i, t, CFG, scratch, dropout=0.0, seed=0, loss_scale=1.0 / tokens)
               for i, t in batches)
    assert result.tokens == tokens
    assert result.loss_sum == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-7)
    assert result.sq_norm == pytest.approx(float(np.dot(reference.astype(np.float64), reference)), rel=1e-4)
    stats = result.spheres
    assert [s.id for s in stats] == list(range(12))
    assert sum(s.sequences for s in stats) == 2 * rows and sum(s.tokens for s in stats) == tokens
    working = [s for s in stats if s.sequences]
    assert len(working) == min(rows, 12)
    assert all(s.busy > 0 and s.wait >= 0 and s.loss > 0 for s in working)


def _train(threads: int, cfg: ModelConfig, steps: int = 3) -> np.ndarray:
    params = init_params(cfg, 0)
    m, v, grad = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
    mask = decay_mask(cfg)
    with Spheres(cfg, 12, threads, 2, SEQ) as spheres:
        for step in range(steps):
            spheres.step(params, _batches(step), grad, dropout=cfg.dropout, seed=7, step=step)
            adamw_step(params, grad, m, v, mask, 1e-2, 0.9, 0.95, 1e-8, 0.1, step + 1)
    return params


@pytest.mark.parametrize("cfg", [CFG, replace(CFG, positions="rope")], ids=["learned", "rope"])
def test_weights_are_bitwise_identical_for_any_thread_count(cfg):
    one = _train(1, cfg)
    assert not np.array_equal(one, init_params(cfg, 0))
    for threads in (2, 3, 12):
        assert np.array_equal(_train(threads, cfg), one), f"threads={threads} differs from threads=1"


def test_a_failing_sphere_stops_the_step_with_its_cause_and_leaves_no_thread():
    def failing(params, grads, inputs, targets, cfg, scratch, **kw):
        if kw["seed"] == failing.bad_seed:
            raise FloatingPointError("boom in sphere")
        return forward_backward(params, grads, inputs, targets, cfg, scratch, **kw)

    from cllm.engine.train.spheres import sphere_seed

    failing.bad_seed = sphere_seed(0, 0, 0, 5)
    params = init_params(CFG, 0)
    out = np.zeros_like(params)
    before = threading.active_count()
    spheres = Spheres(CFG, 12, 2, 2, SEQ, forward_backward=failing)
    with pytest.raises(SphereError, match="sphere 5 failed: FloatingPointError: boom") as info:
        spheres.step(params, _batches(0), out, dropout=0.0, seed=0, step=0)
    assert isinstance(info.value.__cause__, FloatingPointError)
    # the pool is still usable after a failed step
    result = spheres.step(params, _batches(0), out, dropout=0.0, seed=0, step=1)
    assert result.tokens > 0
    spheres.close()
    assert threading.active_count() == before
    assert not [t for t in threading.enumerate() if t.name.startswith("cllm-sphere")]
