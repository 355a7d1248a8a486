"""Each numba kernel, forward and backward, against a plain NumPy reference or central differences."""

import math

import numpy as np
import pytest
from numba import njit

from cllm.engine.model import kernels as K

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (modified in place)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return g


@njit
def _exp_all(out, x):
    for i in range(x.size):
        out[i] = K.fast_exp(x[i])


@njit
def _gelu_all(g, dg, x):
    for i in range(x.size):
        g[i], dg[i] = K.gelu_and_grad(x[i])


def test_fast_exp_float32_is_accurate_and_float64_exact():
    x = np.linspace(-87.0, 88.0, 200_001).astype(np.float32)
    out = np.empty_like(x)
    _exp_all(out, x)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - ref) / ref) < 5e-7
    x64 = x.astype(np.float64)
    out64 = np.empty_like(x64)
    _exp_all(out64, x64)
    np.testing.assert_allclose(out64, np.exp(x64), rtol=1e-15)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-15)])
def test_gelu_and_its_derivative(dtype, tol):
    x = np.linspace(-12, 12, 4001).astype(dtype)
    g, dg = np.empty_like(x), np.empty_like(x)
    _gelu_all(g, dg, x)
    xs = x.astype(np.float64)

    def ref(v):
        return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))

    np.testing.assert_allclose(g, ref(xs), atol=tol * 10, rtol=tol)
    np.testing.assert_allclose(dg, (ref(xs + 1e-6) - ref(xs - 1e-6)) / 2e-6, atol=1e-5)


def test_bias_gelu_forward_and_backward():
    f, bias = rand(5, 7), rand(7)
    g, dgelu = np.empty_like(f), np.empty_like(f)
    K.bias_gelu_forward(g, dgelu, f, bias)
    ref_g, ref_d = np.empty_like(f), np.empty_like(f)
    _gelu_all(ref_g.reshape(-1), ref_d.reshape(-1), (f + bias).reshape(-1))
    np.testing.assert_allclose(g, ref_g)
    upstream = rand(5, 7)
    dg, dbias = upstream.copy(), np.ones(7)
    K.bias_gelu_backward(dg, dbias, dgelu)
    np.testing.assert_allclose(dg, upstream * ref_d)
    np.testing.assert_allclose(dbias, 1 + (upstream * ref_d).sum(0))


def test_embedding_forward_and_backward():
    wte, wpe = rand(11, 4), rand(6, 4)
    tokens = np.array([3, 3, 0, 10, 5, 3], np.int32)       # 2 sequences of 3, positions from 2
    out = np.empty((6, 4))
    K.embedding_forward(out, tokens, wte, wpe, 3, 2)
    pos = 2 + np.arange(6) % 3
    np.testing.assert_allclose(out, wte[tokens] + wpe[pos])
    dout = rand(6, 4)
    dwte, dwpe = np.ones((11, 4)), np.zeros((6, 4))
    K.embedding_backward(dwte, dwpe, dout, tokens, 3, 2)
    ref_wte, ref_wpe = np.ones((11, 4)), np.zeros((6, 4))
    np.add.at(ref_wte, tokens, dout)
    np.add.at(ref_wpe, pos, dout)
    np.testing.assert_allclose(dwte, ref_wte)
    np.testing.assert_allclose(dwpe, ref_wpe)


def test_embedding_without_a_position_table_is_the_token_embedding():
    wte, tokens = rand(11, 4), np.array([3, 3, 0, 10], np.int32)
    out = np.empty((4, 4))
    K.embedding_forward(out, tokens, wte, np.zeros((0, 4)), 2, 0)
    np.testing.assert_allclose(out, wte[tokens])
    dout, dwte = rand(4, 4), np.zeros((11, 4))
    K.embedding_backward(dwte, np.zeros((0, 4)), dout, tokens, 2, 0)
    ref = np.zeros((11, 4))
    np.add.at(ref, tokens, dout)
    np.testing.assert_allclose(dwte, ref)


def rope_reference(qkv, seq_len, pos0, heads):
    """Rotary positions the textbook way: complex multiplication of each (2c, 2c+1) pair by e^(i pos theta_c)."""
    n, d = qkv.shape[0], qkv.shape[1] // 3
    hd = d // heads
    pos = pos0 + np.arange(n) % seq_len
    turn = np.exp(1j * pos[:, None] * 10_000.0 ** (-np.arange(0, hd, 2) / hd))   # (n, hd/2)
    out = qkv.copy()
    for col in range(0, 2 * d, hd):
        pairs = qkv[:, col:col + hd:2] + 1j * qkv[:, col + 1:col + hd:2]
        out[:, col:col + hd:2], out[:, col + 1:col + hd:2] = (pairs * turn).real, (pairs * turn).imag
    return out


@pytest.mark.parametrize("seq_len,pos0", [(3, 0), (6, 0), (1, 5), (6, 2)])
def test_rope_forward_matches_complex_rotation(seq_len, pos0):
    qkv = rand(6, 3 * 8)                      # 2 heads of 4
    out = qkv.copy()
    K.rope_forward(out, seq_len, pos0, 2)
    np.testing.assert_allclose(out, rope_reference(qkv, seq_len, pos0, 2), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(out[:, 16:], qkv[:, 16:])    # v untouched


def test_rope_scores_depend_only_on_relative_position():
    q_and_k = np.tile(rand(1, 3 * 8), (2, 1))
    far = q_and_k.copy()
    K.rope_forward(q_and_k, 2, 3, 2)          # positions 3 and 4
    K.rope_forward(far, 2, 40, 2)             # positions 40 and 41
    dot = lambda x: x[1, :4] @ x[0, 8:12]   # noqa: E731 - head 0: query at the later position, key at the earlier
    assert dot(q_and_k) == pytest.approx(dot(far), rel=1e-10)


def test_rope_backward_matches_central_differences():
    qkv, upstream = rand(4, 3 * 8), rand(4, 3 * 8)

    def loss():
        out = qkv.copy()
        K.rope_forward(out, 2, 3, 2)
        return float((out * upstream).sum())

    grad = upstream.copy()
    K.rope_backward(grad, 2, 3, 2)
    np.testing.assert_allclose(grad, numeric_grad(loss, qkv), rtol=1e-6, atol=1e-8)


def _mask(shape, key, p):
    m = np.ones(shape)
    K.dropout_apply(m, key, K.dropout_threshold(p), 1.0)
    return m


def test_dropout_masks_are_keyed_and_have_the_right_rate():
    key = K.dropout_key(42, 3)
    m = _mask((200, 100), key, 0.25)
    assert set(np.unique(m)) == {0.0, 1.0}
    assert abs(1 - m.mean() - 0.25) < 0.01
    np.testing.assert_array_equal(m, _mask((200, 100), key, 0.25))
    assert not np.array_equal(m, _mask((200, 100), K.dropout_key(43, 3), 0.25))
    assert not np.array_equal(m, _mask((200, 100), K.dropout_key(42, 4), 0.25))
    x = rand(200, 100)
    y = x.copy()
    K.dropout_apply(y, key, K.dropout_threshold(0.25), 1 / 0.75)
    np.testing.assert_allclose(y, x * m / 0.75)
    z = x.copy()
    K.dropout_apply(z, key, K.dropout_threshold(0.0), 2.0)
    np.testing.assert_array_equal(z, x)


def test_bias_dropout_add_forward_and_backward():
    a, resid, bias = rand(8, 16), rand(8, 16), rand(16)
    key, thr, scale = K.dropout_key(1, 0), K.dropout_threshold(0.3), 1 / 0.7
    m = _mask((8, 16), key, 0.3)
    out = np.empty_like(a)
    K.bias_dropout_add_forward(out, a, resid, bias, key, thr, scale)
    np.testing.assert_allclose(out, resid + m * (a + bias) * scale)
    dout = rand(8, 16)
    da, dbias = np.empty_like(a), np.full(16, 0.5)
    K.bias_dropout_add_backward(da, dbias, dout, key, thr, scale)
    np.testing.assert_allclose(da, m * dout * scale)
    np.testing.assert_allclose(dbias, 0.5 + (m * dout * scale).sum(0))


def test_bias_forward_and_backward():
    x, bias = rand(3, 5), rand(5)
    y = x.copy()
    K.bias_forward(y, bias)
    np.testing.assert_allclose(y, x + bias)
    db = np.ones(5)
    K.bias_backward(db, x)
    np.testing.assert_allclose(db, 1 + x.sum(0))


def test_layernorm_forward_matches_numpy():
    x, w, b = rand(6, 10, dtype=np.float32) * 3 + 1, rand(10, dtype=np.float32), rand(10, dtype=np.float32)
    out, mean, rstd = np.empty_like(x), np.empty(6, np.float32), np.empty(6, np.float32)
    K.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
    xd = x.astype(np.float64)
    ref = (xd - xd.mean(1, keepdims=True)) / np.sqrt(xd.var(1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(xd.var(1) + 1e-5), rtol=1e-5)


def test_layernorm_backward_matches_central_differences():
    x, w, b, r = rand(4, 6), rand(6), rand(6), rand(4, 6)
    out, mean, rstd = np.empty_like(x), np.empty(4), np.empty(4)

    def loss():
        K.layernorm_forward(out, mean, rstd, x, w, b, 1e-5)
        return float((out * r).sum())

    loss()
    dx, dw, db = np.full_like(x, 0.25), np.zeros(6), np.zeros(6)
    K.layernorm_backward(dx, dw, db, r, x, mean, rstd, w)
    np.testing.assert_allclose(dx - 0.25, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-8)


def attention_reference(qkv, batch, heads):
    n, d3 = qkv.shape
    d, t = d3 // 3, n // batch
    hd = d // heads
    q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(batch, t, heads, hd).transpose(0, 2, 1, 3) for i in range(3))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(0, 2, 1, 3).reshape(n, d), p


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_attention_forward_matches_numpy(dtype, tol):
    batch, heads, t, hd = 2, 3, 5, 4
    qkv = rand(batch * t, 3 * heads * hd, dtype=dtype) * 2
    y, probs = np.empty((batch * t, heads * hd), dtype), np.zeros((batch, heads, t, t), dtype)
    K.attention_forward(y, probs, qkv, batch, heads)
    ref_y, ref_p = attention_reference(qkv.astype(np.float64), batch, heads)
    np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.tril(probs), ref_p, rtol=tol, atol=tol)


def test_attention_backward_matches_central_differences():
    batch, heads, t, hd = 2, 2, 4, 3
    qkv, r = rand(batch * t, 3 * heads * hd), rand(batch * t, heads * hd)
    y, probs = np.empty((batch * t, heads * hd)), np.zeros((batch, heads, t, t))

    def loss():
        K.attention_forward(y, probs, qkv, batch, heads)
        return float((y * r).sum())

    loss()
    dqkv = np.full_like(qkv, 99.0)          # every entry must be overwritten
    K.attention_backward(dqkv, np.full_like(probs, 99.0), r, qkv, probs, batch, heads)
    np.testing.assert_allclose(dqkv, numeric_grad(loss, qkv), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("pos0,n", [(0, 6), (3, 3), (5, 1)])
def test_attention_cached_matches_full_attention(pos0, n):
    heads, hd, t = 2, 4, 6
    qkv = rand(t, 3 * heads * hd, dtype=np.float32)
    ref, _ = attention_reference(qkv.astype(np.float64), 1, heads)
    k_cache, v_cache = np.zeros((heads, 8, hd), np.float32), np.zeros((heads, 8, hd), np.float32)
    scores = np.empty(8, np.float32)
    y = np.empty((t, heads * hd), np.float32)
    if pos0:
        K.attention_cached(y[:pos0], scores, k_cache, v_cache, qkv[:pos0], 0, heads)
    K.attention_cached(y[pos0:pos0 + n], scores, k_cache, v_cache, qkv[pos0:pos0 + n], pos0, heads)
    np.testing.assert_allclose(y[:pos0 + n], ref[:pos0 + n], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(k_cache[1, 2], qkv[2, heads * hd + hd:heads * hd + 2 * hd])


def test_causal_softmax_stack_backward_matches_central_differences():
    raw, r = rand(2, 4, 4), rand(2, 4, 4)
    p = np.empty_like(raw)

    def loss():
        p[...] = raw
        K.causal_softmax_stack(p, 0.7)
        return float((p * r).sum())

    loss()
    assert not np.triu(p[1], 1).any()
    dp = r.copy()
    dp[:, 0, 3] = np.inf                   # above the diagonal: ignored, written as zero
    K.causal_softmax_stack_backward(dp, p, 0.7)
    np.testing.assert_allclose(dp, numeric_grad(loss, raw), rtol=1e-6, atol=1e-8)


def test_kv_append_and_causal_softmax():
    heads, hd = 2, 3
    qkv = rand(4, 3 * heads * hd)
    k_cache, v_cache = np.zeros((heads, 6, hd)), np.zeros((heads, 6, hd))
    K.kv_append(k_cache, v_cache, qkv, 2, heads)
    np.testing.assert_array_equal(k_cache[1, 2:6], qkv[:, heads * hd + hd:2 * heads * hd])
    np.testing.assert_array_equal(v_cache[0, 2:6], qkv[:, 2 * heads * hd:2 * heads * hd + hd])
    assert not k_cache[:, :2].any()
    raw = rand(3, 5)
    s = raw.copy()
    K.causal_softmax(s, 2, 0.5)
    for i in range(3):
        z = np.exp(0.5 * raw[i, :3 + i] - (0.5 * raw[i, :3 + i]).max())
        np.testing.assert_allclose(s[i, :3 + i], z / z.sum(), rtol=1e-12)
        assert not s[i, 3 + i:].any()


def test_softmax_xent_losses_gradients_and_ignored_rows():
    logits = rand(5, 9, dtype=np.float32) * 4
    logits[2, 3] = 80.0                      # a confident row must not overflow
    targets = np.array([1, -1, 0, 8, 3], np.int32)
    z = logits.astype(np.float64)
    logp = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
    ref_loss = np.where(targets >= 0, -logp[np.arange(5), targets.clip(0)], 0.0)
    ref_grad = (np.exp(logp) - np.eye(9)[targets.clip(0)]) * 0.5
    ref_grad[targets < 0] = 0.0

    losses = np.empty(5, np.float32)
    kept = logits.copy()
    total = K.softmax_xent(losses, kept, targets, 0.5, False)
    np.testing.assert_array_equal(kept, logits)
    np.testing.assert_allclose(losses, ref_loss, rtol=1e-5, atol=1e-5)
    assert total == pytest.approx(ref_loss.sum(), rel=1e-5)

    grad = logits.copy()
    total = K.softmax_xent(losses, grad, targets, 0.5, True)
    np.testing.assert_allclose(losses, ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-6)
    assert total == pytest.approx(ref_loss.sum(), rel=1e-5)


def test_gemv_kernels_match_numpy():
    x, w = rand(7, dtype=np.float32), rand(7, 13, dtype=np.float32)
    y = np.empty(13, np.float32)
    K.gemv(y, x, w)
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-5)
    h, table = rand(13, dtype=np.float32), rand(29, 13, dtype=np.float32)
    out = np.empty(29, np.float32)
    K.gemv_rows(out, table, h)
    np.testing.assert_allclose(out, table @ h, rtol=1e-5, atol=1e-5)


def test_adamw_step_matches_reference():
    p, mask = rand(50), (RNG.random(50) < 0.5).astype(np.float64)
    m, v = np.zeros(50), np.zeros(50)
    ref_p, ref_m, ref_v = p.copy(), np.zeros(50), np.zeros(50)
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
    for step in (1, 2, 3):
        g = rand(50)
        K.adamw_step(p, g, m, v, mask, lr, b1, b2, eps, wd, step)
        ref_m = b1 * ref_m + (1 - b1) * g
        ref_v = b2 * ref_v + (1 - b2) * g * g
        ref_p = ref_p * (1 - lr * wd * mask)
        ref_p -= lr * (ref_m / (1 - b1 ** step)) / (np.sqrt(ref_v / (1 - b2 ** step)) + eps)
    np.testing.assert_allclose(p, ref_p, rtol=1e-12)
    np.testing.assert_allclose(m, ref_m, rtol=1e-12)
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
