"""The whole network: gradients against finite differences, dropout, training, threads and the KV cache."""

import threading
from dataclasses import replace

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from cllm.engine.model import kernels
from cllm.engine.model import network as model_module
from cllm.engine.config import ModelConfig
from cllm.engine.model.network import forward_backward, greedy_head, infer, make_scratch, new_cache, token_losses
from cllm.engine.model.params import decay_mask, init_params, param_specs, views

CFG = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=32, positions="learned")
ROPE = replace(CFG, positions="rope")
BOTH = pytest.mark.parametrize("cfg", [CFG, ROPE], ids=["learned", "rope"])


def batch(b=2, t=16, seed=0, cfg=CFG):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, cfg.vocab_size, (b, t)).astype(np.int32)
    targets = rng.integers(0, cfg.vocab_size, (b, t)).astype(np.int32)
    return inputs, targets


def random_params(cfg=CFG, seed=0, dtype=np.float32):
    """Initialised parameters with non-trivial LayerNorm weights and biases, so every path carries signal."""
    flat = init_params(cfg, seed).astype(dtype)
    rng = np.random.default_rng(seed + 100)
    for name, view in views(flat, cfg).items():
        if view.ndim == 1:
            view += rng.normal(0.0, 0.1, view.shape)
        else:
            view *= 5.0
    return flat


@BOTH
def test_gradient_matches_central_differences_float64(cfg):
    params = random_params(cfg, dtype=np.float64)
    inputs, targets = batch()
    targets[0, 3] = -1
    targets[1, :5] = -1
    scratch = make_scratch(cfg, 2, 16, dtype=np.float64)
    grads = np.zeros_like(params)
    forward_backward(params, grads, inputs, targets, cfg, scratch, dropout=0.2, seed=5, loss_scale=0.5)

    def loss_at(flat):
        dummy = np.zeros_like(flat)
        return forward_backward(flat, dummy, inputs, targets, cfg, scratch, dropout=0.2, seed=5, loss_scale=1.0)

    rng = np.random.default_rng(1)
    eps = 1e-5
    offset = 0
    for name, shape in param_specs(cfg):
        size = int(np.prod(shape))
        for i in offset + rng.choice(size, size=min(4, size), replace=False):
            if name == "wte" or name == "wpe":
                i = offset + rng.choice(np.unique(inputs)) * shape[1] + rng.integers(shape[1])
            plus, minus = params.copy(), params.copy()
            plus[i] += eps
            minus[i] -= eps
            numeric = 0.5 * (loss_at(plus) - loss_at(minus)) / (2 * eps)
            assert abs(grads[i] - numeric) <= 1e-6 + 1e-5 * abs(numeric), (name, i - offset, grads[i], numeric)
        offset += size


def test_gradients_add_scaled_and_loss_is_a_sum():
    params = random_params()
    inputs, targets = batch()
    scratch = make_scratch(CFG, 2, 16)
    once = np.zeros_like(params)
    loss = forward_backward(params, once, inputs, targets, CFG, scratch, dropout=0.0, seed=0, loss_scale=1.0)
    assert loss == pytest.approx(float(token_losses(params, inputs, targets, CFG, scratch).sum()), rel=1e-5)
    twice = np.zeros_like(params)
    for scale in (0.25, 0.75):
        forward_backward(params, twice, inputs, targets, CFG, scratch, dropout=0.0, seed=0, loss_scale=scale)
    assert np.abs(once).max() > 0
    np.testing.assert_allclose(twice, once, rtol=1e-4, atol=1e-5 * np.abs(once).max())


def test_smaller_shard_in_a_larger_scratch_gives_the_same_result():
    params = random_params()
    inputs, targets = batch(1, 8)
    small, large = np.zeros_like(params), np.zeros_like(params)
    a = forward_backward(params, small, inputs, targets, CFG, make_scratch(CFG, 1, 8),
                         dropout=0.1, seed=2, loss_scale=1.0)
    b = forward_backward(params, large, inputs, targets, CFG, make_scratch(CFG, 3, 16),
                         dropout=0.1, seed=2, loss_scale=1.0)
    assert a == pytest.approx(b, rel=1e-6)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-8)


def test_dropout_is_deterministic_in_its_seed():
    params = random_params()
    inputs, targets = batch()
    scratch = make_scratch(CFG, 2, 16)

    def run(seed, p=0.1):
        grads = np.zeros_like(params)
        loss = forward_backward(params, grads, inputs, targets, CFG, scratch, dropout=p, seed=seed, loss_scale=1.0)
        return loss, grads

    l1, g1 = run(7)
    l2, g2 = run(7)
    l3, g3 = run(8)
    l0, _ = run(7, p=0.0)
    assert l1 == l2 and np.array_equal(g1, g2)
    assert l1 != l3 and not np.array_equal(g1, g3)
    assert l1 != l0


def test_threads_with_their_own_scratch_match_sequential_runs():
    with threadpool_limits(1):      # as the spheres run it: one BLAS thread per call, bitwise reproducible
        _threads_match_sequential_runs()


def _threads_match_sequential_runs():
    params = random_params()
    shards = [batch(2, 16, seed=s) for s in range(4)]
    expected = []
    for i, (x, y) in enumerate(shards):
        g = np.zeros_like(params)
        forward_backward(params, g, x, y, CFG, make_scratch(CFG, 2, 16), dropout=0.1, seed=i, loss_scale=1.0)
        expected.append(g)
    got = [np.zeros_like(params) for _ in shards]

    def work(i):
        scratch = make_scratch(CFG, 2, 16)
        for _ in range(3):
            got[i][...] = 0.0
            forward_backward(params, got[i], *shards[i], CFG, scratch, dropout=0.1, seed=i, loss_scale=1.0)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(shards))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_tiny_model_overfits_one_batch_with_adamw():
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=16, dropout=0.0)
    params = init_params(cfg, 0)
    mask = decay_mask(cfg)
    m, v, grads = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
    inputs, targets = batch(2, 16, seed=3, cfg=cfg)
    scratch = make_scratch(cfg, 2, 16)
    first = None
    for step in range(1, 151):
        grads[...] = 0.0
        loss = forward_backward(params, grads, inputs, targets, cfg, scratch, dropout=0.0, seed=step,
                                loss_scale=1.0 / inputs.size)
        first = first if first is not None else loss / inputs.size
        kernels.adamw_step(params, grads, m, v, mask, 3e-3, 0.9, 0.95, 1e-8, 0.0, step)
    final = token_losses(params, inputs, targets, cfg, scratch).mean()
    assert first > 3.5
    assert final < 0.05


@BOTH
def test_kv_cache_token_by_token_equals_prefill_and_token_losses(cfg):
    params = random_params(cfg)
    inputs, targets = batch(1, 20)
    seq = inputs[0]
    prefill = infer(params, cfg, seq, new_cache(cfg), all_logits=True)
    assert prefill.shape == (20, cfg.vocab_size)
    cache = new_cache(cfg, 24)
    stepwise = np.stack([infer(params, cfg, seq[i:i + 1], cache) for i in range(20)])
    assert cache.length == 20
    np.testing.assert_allclose(stepwise, prefill, rtol=1e-4, atol=1e-5)
    top = prefill.max(1, keepdims=True)
    logp = prefill - top - np.log(np.exp(prefill - top).sum(1, keepdims=True))
    expected = -logp[np.arange(20), targets[0]]
    losses = token_losses(params, inputs, targets, cfg, make_scratch(cfg, 1, 20))[0]
    np.testing.assert_allclose(losses, expected, rtol=1e-4, atol=1e-5)


@BOTH
@pytest.mark.parametrize("total", [12, 30])   # few new rows (numba attention) and many (BLAS attention)
def test_truncated_cache_reuses_a_prefix(total, cfg):
    params = random_params(cfg)
    seq_a = batch(1, total, seed=1)[0][0]
    seq_b = seq_a.copy()
    seq_b[8:] = batch(1, total, seed=2)[0][0, 8:]
    cache = new_cache(cfg)
    infer(params, cfg, seq_a, cache)
    cache.length = 8
    reused = infer(params, cfg, seq_b[8:], cache, all_logits=True)
    fresh = infer(params, cfg, seq_b, new_cache(cfg), all_logits=True)[8:]
    np.testing.assert_allclose(reused, fresh, rtol=1e-4, atol=1e-5)
    assert cache.length == total
    last = infer(params, cfg, seq_b[:1], cache)
    cache.length = total
    np.testing.assert_allclose(infer(params, cfg, seq_b[:1], cache, all_logits=True)[0], last, rtol=1e-6)


@BOTH
def test_long_prompt_attention_in_row_blocks_matches_decoding(monkeypatch, cfg):
    monkeypatch.setattr(model_module, "_ROW_BLOCK", 7)   # several blocks, the last one partial
    params = random_params(cfg)
    seq = batch(1, 30, seed=4)[0][0]
    cache = new_cache(cfg)
    infer(params, cfg, seq[:5], cache)
    blocked = infer(params, cfg, seq[5:], cache, all_logits=True)
    stepwise = new_cache(cfg)
    expected = np.stack([infer(params, cfg, seq[i:i + 1], stepwise) for i in range(30)])[5:]
    np.testing.assert_allclose(blocked, expected, rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    params = random_params()
    scratch = make_scratch(CFG, 2, 16)
    grads = np.zeros_like(params)
    inputs, targets = batch()
    with pytest.raises(ValueError, match="does not fit"):
        forward_backward(params, grads, *batch(3, 16), CFG, scratch, dropout=0.0, seed=0, loss_scale=1.0)
    bad = inputs.copy()
    bad[0, 0] = CFG.vocab_size
    with pytest.raises(ValueError, match="inputs"):
        forward_backward(params, grads, bad, targets, CFG, scratch, dropout=0.0, seed=0, loss_scale=1.0)
    with pytest.raises(ValueError, match="params"):
        token_losses(params[:-1], inputs, targets, CFG, scratch)
    with pytest.raises(ValueError, match="max_seq_len"):
        make_scratch(CFG, 1, CFG.max_seq_len + 1)
    cache = new_cache(CFG, 8)
    with pytest.raises(ValueError, match="do not fit"):
        infer(params, CFG, np.zeros(9, np.int32), cache)
    with pytest.raises(ValueError, match="at least one"):
        infer(params, CFG, np.zeros(0, np.int32), cache)


# ---------------------------------------------------------------- greedy decoding through the int8 head

def _greedy_matches_fp32(params, cfg, prompt, steps):
    """Decode `steps` tokens greedily twice, through the fp32 head and the int8 GreedyHead, feeding back the
    fp32 pick; every step's candidates must carry the fp32 logits bit for bit and include every maximum."""
    head = greedy_head(params, cfg)
    plain, fast = new_cache(cfg), new_cache(cfg)
    a, b = infer(params, cfg, prompt, plain), infer(params, cfg, prompt, fast, greedy=head)
    rescored = []
    for _ in range(steps):
        kept = np.isfinite(b)
        np.testing.assert_array_equal(b[kept], a[kept])
        assert kept[a == a.max()].all()
        assert int(np.argmax(b)) == int(np.argmax(a))
        rescored.append(int(kept.sum()))
        token = np.array([np.argmax(a)], np.int32)
        a, b = infer(params, cfg, token, plain), infer(params, cfg, token, fast, greedy=head)
    return rescored


def test_greedy_head_picks_the_fp32_token_on_a_seed_sized_model():
    cfg = ModelConfig()   # the seed configuration: vocab 10k, d 256, 4 layers
    params = init_params(cfg, seed=3)
    prompt = np.random.default_rng(3).integers(0, cfg.vocab_size, 256).astype(np.int32)
    rescored = _greedy_matches_fp32(params, cfg, prompt, 120)
    assert np.mean(rescored) < 0.01 * cfg.vocab_size   # the point: almost every row is ruled out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_head_picks_the_fp32_token_on_a_tiny_model(seed):
    params = random_params(seed=seed)
    prompt = batch(1, 4, seed=seed)[0][0]
    _greedy_matches_fp32(params, CFG, prompt, CFG.max_seq_len - 5)


def test_greedy_head_breaks_ties_like_argmax():
    params = random_params()
    wte = views(params, CFG)["wte"]
    wte[1::2] = wte[0::2]   # every even token ties with the odd one after it: argmax takes the first
    cache = new_cache(CFG)
    logits = infer(params, CFG, np.arange(3, dtype=np.int32), cache, greedy=greedy_head(params, CFG))
    best = int(np.argmax(logits))
    assert best % 2 == 0 and logits[best + 1] == logits[best]


def test_greedy_error_bound_holds_on_random_data():
    rng = np.random.default_rng(5)
    params = random_params()
    wte = views(params, CFG)["wte"]
    wte[:] = rng.standard_normal(wte.shape) * rng.lognormal(0.0, 2.0, (wte.shape[0], 1))
    wte[7] = 0.0
    wte[9, 3] = 1e3    # one outlier: a coarse scale for its row
    head = greedy_head(params, CFG)
    bounds, logits, exact = np.empty(CFG.vocab_size, np.float32), np.empty(CFG.vocab_size, np.float32), \
        np.empty(CFG.vocab_size, np.float32)
    for _ in range(50):
        h = (rng.standard_normal(CFG.d_model) * rng.lognormal(0.0, 2.0)).astype(np.float32)
        h[rng.random(CFG.d_model) < 0.3] = 0.0
        approx = head.scale.astype(np.float64) * (head.q.astype(np.float64) @ h.astype(np.float64))
        kernels.gemv_rows(exact, wte, h)
        assert (np.abs(approx - exact) <= head.err.astype(np.float64) * np.abs(h).sum()).all()
        rescored = kernels.head_greedy(logits, bounds, wte, head.q, head.scale, head.err, h)
        assert (exact <= bounds).all()
        assert rescored == np.isfinite(logits).sum()
        np.testing.assert_array_equal(logits[np.isfinite(logits)], exact[np.isfinite(logits)])
        assert np.isfinite(logits[exact == exact.max()]).all()


def test_greedy_head_rescues_near_ties_the_int8_scores_get_wrong():
    rng = np.random.default_rng(6)
    params = random_params()
    wte = views(params, CFG)["wte"]
    base = rng.standard_normal(CFG.d_model)
    base[0] = 2.0   # a coarse int8 step for every row, about as large as the rows' differences
    wte[:] = base + 0.03 * rng.standard_normal(wte.shape)
    head = greedy_head(params, CFG)
    bounds, logits, exact = (np.empty(CFG.vocab_size, np.float32) for _ in range(3))
    flipped, rescored = 0, 0
    for _ in range(30):
        h = rng.standard_normal(CFG.d_model).astype(np.float32)
        kernels.gemv_rows(exact, wte, h)
        approx = head.scale * (head.q.astype(np.float32) @ h)
        flipped += int(np.argmax(approx) != np.argmax(exact))
        rescored += kernels.head_greedy(logits, bounds, wte, head.q, head.scale, head.err, h)
        assert int(np.argmax(logits)) == int(np.argmax(exact))
    assert flipped >= 5                          # the int8 argmax alone would have been wrong
    assert rescored < 30 * CFG.vocab_size * 0.8  # while still ruling rows out


def test_greedy_head_covers_only_its_rows_and_refuses_bad_input():
    params = random_params()
    head = greedy_head(params, CFG, rows=100)
    logits = infer(params, CFG, np.arange(3, dtype=np.int32), new_cache(CFG), greedy=head)
    assert np.isneginf(logits[100:]).all()
    assert int(np.argmax(logits)) == int(np.argmax(infer(params, CFG, np.arange(3, dtype=np.int32),
                                                         new_cache(CFG))[:100]))
    with pytest.raises(ValueError, match="other weights"):
        infer(params.copy(), CFG, np.zeros(1, np.int32), new_cache(CFG), greedy=head)
    with pytest.raises(ValueError, match="all_logits"):
        infer(params, CFG, np.zeros(2, np.int32), new_cache(CFG), greedy=head, all_logits=True)
    with pytest.raises(ValueError, match="rows"):
        greedy_head(params, CFG, rows=CFG.vocab_size + 1)
    views(params, CFG)["wte"][5, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        greedy_head(params, CFG)
