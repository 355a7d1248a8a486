"""Numba kernels of the transformer: every elementwise, normalising or attention step, forward beside backward.

Arguments are outputs, then inputs, then weights, then sizes; activations are 2-D (batch * time, features) and
C-contiguous. Backward kernels ADD into parameter gradients (shards and accumulation steps share a buffer). Every
kernel is `nogil` so that sphere threads run them at once, and generic over float32/float64 (the gradient checks).
Dropout masks are a pure function of (key, element index) via splitmix64: the same in forward and backward, for any
thread count. Training attention sends its products to BLAS around numba softmax kernels.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S40 = np.uint64(40)
_MASK64 = (1 << 64) - 1
# error_model="numpy": no zero-division checks, whose branches would stop loops from vectorising.
_JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")
ROPE_BASE = 10_000.0  # rotary positions: pair c of a head turns by pos * ROPE_BASE ** (-2c / head_dim)
_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def dropout_key(seed: int, site: int) -> np.uint64:
    """A 64-bit key for one dropout site (layer/position in the network) of one call seeded by `seed`."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + (int(site) + 1) * 0xD1B54A32D192ED03) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return np.uint64(z ^ (z >> 31))


def dropout_threshold(p: float) -> np.uint64:
    """The 24-bit integer threshold below which a hashed element is dropped with probability p."""
    return np.uint64(int(round(p * (1 << 24))))


@njit(**_JIT, inline="always")
def _kept(key, index, threshold):
    """splitmix64 of (key, index): True when the element survives dropout."""
    z = key + np.uint64(index) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return (z >> _S40) >= threshold


# ---------------------------------------------------------------- vectorisable exp and GELU
# numba has no vector libm here (no SVML), so math.exp in a loop stays scalar. For float32 we use
# Cephes' expf (range reduction by ln 2, degree-5 polynomial, 2^k built in the exponent bits; about
# 1 ulp) which LLVM vectorises; float64 (the gradient checks) keeps the exact libm functions.

def fast_exp(x):
    """exp(x); vectorisable in float32 loops."""
    return math.exp(x)


def _gelu_exact(x):
    t = math.tanh(_GELU_C * (x + _GELU_A * x * x * x))
    dudx = _GELU_C * (1.0 + 3.0 * _GELU_A * x * x)
    return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dudx


def gelu_and_grad(x):
    """(gelu(x), gelu'(x)) of the tanh-approximated GELU 0.5 x (1 + tanh(c (x + a x^3)))."""
    return _gelu_exact(x)


@intrinsic
def _int_bits_as_float32(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_E0, _E1, _E2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_E3, _E4, _E5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_EXP_LO, _EXP_HI, _HALF, _ONE, _TWO, _THREE = _F(-87.0), _F(88.0), _F(0.5), _F(1.0), _F(2.0), _F(3.0)
_GELU_C32, _GELU_A32, _TANH_CLAMP = _F(_GELU_C), _F(_GELU_A), _F(9.0)


@overload(fast_exp, inline="always", jit_options={"fastmath": True, "error_model": "numpy"})
def _fast_exp_impl(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def impl(x):
        x = min(max(x, _EXP_LO), _EXP_HI)
        k = np.floor(x * _LOG2E + _HALF)
        r = x - k * _LN2_HI - k * _LN2_LO
        poly = (((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5) * (r * r) + r + _ONE
        return poly * _int_bits_as_float32((np.int32(k) + np.int32(127)) << np.int32(23))
    return impl


@overload(gelu_and_grad, inline="always", jit_options={"fastmath": True, "error_model": "numpy"})
def _gelu_and_grad_impl(x):
    if x != types.float32:
        return _gelu_exact

    def impl(x):
        u = min(max(_GELU_C32 * (x + _GELU_A32 * x * x * x), -_TANH_CLAMP), _TANH_CLAMP)
        e = fast_exp(_TWO * u)
        t = (e - _ONE) / (e + _ONE)
        dudx = _GELU_C32 * (_ONE + _THREE * _GELU_A32 * x * x)
        return _HALF * x * (_ONE + t), _HALF * (_ONE + t) + _HALF * x * (_ONE - t * t) * dudx
    return impl


# ---------------------------------------------------------------- embedding

@njit(**_JIT)
def embedding_forward(out, tokens, wte, wpe, seq_len, pos0):
    """out[i] = wte[tokens[i]] + wpe[pos0 + i % seq_len] for rows i of a flattened (batch, seq_len) grid.
    An empty position table (0 rows: rotary positions, which turn q and k instead) adds nothing."""
    n, d = out.shape
    learned = wpe.shape[0] > 0
    for i in range(n):
        tok = tokens[i]
        pos = pos0 + i % seq_len
        for j in range(d):
            out[i, j] = wte[tok, j] + wpe[pos, j] if learned else wte[tok, j]


@njit(**_JIT)
def embedding_backward(dwte, dwpe, dout, tokens, seq_len, pos0):
    """Scatter-add the embedding output gradient into the token and position tables (an empty one gets nothing)."""
    n, d = dout.shape
    learned = dwpe.shape[0] > 0
    for i in range(n):
        tok = tokens[i]
        pos = pos0 + i % seq_len
        for j in range(d):
            dwte[tok, j] += dout[i, j]
            if learned:
                dwpe[pos, j] += dout[i, j]


# ---------------------------------------------------------------- rotary positions
# Each head's q and k columns form pairs (2c, 2c+1) that turn by the angle pos * ROPE_BASE ** (-2c / head_dim):
# the score q_i . k_j then depends on the positions only through i - j. Keys are turned once, before they are
# cached; the backward turns the gradients back (a rotation's transpose is its inverse).

@njit(**_JIT, inline="always")
def _rope_turn(x, seq_len, pos0, n_heads, sign):
    """Turn the q and k pairs of every row i of x (rows = batch * seq_len, columns [q | k | v]) by sign times the
    angles of position pos0 + i % seq_len. The cosines and sines are computed once per position (float64)."""
    n, d3 = x.shape
    d = d3 // 3
    hd = d // n_heads
    half = hd // 2
    span = min(n, seq_len)
    cos = np.empty((span, half), x.dtype)
    sin = np.empty((span, half), x.dtype)
    for r in range(span):
        for c in range(half):
            angle = (pos0 + r) * ROPE_BASE ** (-2.0 * c / hd)
            cos[r, c] = math.cos(angle)
            sin[r, c] = sign * math.sin(angle)
    for i in range(n):
        r = i % seq_len
        for col in range(0, 2 * d, hd):  # every head of q, then of k
            for c in range(half):
                a, b = x[i, col + 2 * c], x[i, col + 2 * c + 1]
                x[i, col + 2 * c] = a * cos[r, c] - b * sin[r, c]
                x[i, col + 2 * c + 1] = a * sin[r, c] + b * cos[r, c]


@njit(**_JIT)
def rope_forward(qkv, seq_len, pos0, n_heads):
    """In place: every head's q and k in row i of qkv turned to position pos0 + i % seq_len (v untouched)."""
    _rope_turn(qkv, seq_len, pos0, n_heads, 1.0)


@njit(**_JIT)
def rope_backward(dqkv, seq_len, pos0, n_heads):
    """In place: dqkv's q and k columns, the gradient of rope_forward's output, become the gradient of its input."""
    _rope_turn(dqkv, seq_len, pos0, n_heads, -1.0)


# ---------------------------------------------------------------- dropout

@njit(**_JIT)
def dropout_apply(x, key, threshold, scale):
    """In place x *= mask * scale. The op is its own backward: apply it to the gradient with the same key."""
    n, d = x.shape
    if threshold == 0:
        return
    scale = x.dtype.type(scale)
    for i in range(n):
        base = i * d
        for j in range(d):
            if _kept(key, base + j, threshold):
                x[i, j] *= scale
            else:
                x[i, j] = 0.0


@njit(**_JIT)
def bias_dropout_add_forward(out, a, resid, bias, key, threshold, scale):
    """out = resid + dropout(a + bias): a sublayer's output joining the residual stream (out may alias resid)."""
    n, d = a.shape
    scale = a.dtype.type(scale)
    for i in range(n):
        base = i * d
        for j in range(d):
            y = a[i, j] + bias[j]
            if threshold != 0:
                y = y * scale if _kept(key, base + j, threshold) else 0.0
            out[i, j] = resid[i, j] + y


@njit(**_JIT)
def bias_dropout_add_backward(da, dbias, dout, key, threshold, scale):
    """da = dropout'(dout) and dbias += column sums of da; the residual path passes dout through unchanged."""
    n, d = dout.shape
    scale = dout.dtype.type(scale)
    for i in range(n):
        base = i * d
        for j in range(d):
            g = dout[i, j]
            if threshold != 0:
                g = g * scale if _kept(key, base + j, threshold) else 0.0
            da[i, j] = g
            dbias[j] += g


# ---------------------------------------------------------------- bias

@njit(**_JIT)
def bias_forward(x, bias):
    """In place x += bias (broadcast over rows)."""
    n, d = x.shape
    for i in range(n):
        for j in range(d):
            x[i, j] += bias[j]


@njit(**_JIT)
def bias_backward(dbias, dy):
    """dbias += column sums of dy."""
    n, d = dy.shape
    for i in range(n):
        for j in range(d):
            dbias[j] += dy[i, j]


# ---------------------------------------------------------------- layernorm

@njit(**_JIT)
def layernorm_forward(out, mean, rstd, x, weight, bias, eps):
    """out = (x - mean) * rstd * weight + bias per row; keeps mean and rstd for the backward pass."""
    n, d = x.shape
    for i in range(n):
        s = 0.0
        for j in range(d):
            s += x[i, j]
        m = s / d
        s2 = 0.0
        for j in range(d):
            c = x[i, j] - m
            s2 += c * c
        mean[i] = m
        rstd[i] = 1.0 / math.sqrt(s2 / d + eps)
        m, r = mean[i], rstd[i]    # the statistics in the arrays' dtype: no widening per element
        for j in range(d):
            out[i, j] = (x[i, j] - m) * r * weight[j] + bias[j]


@njit(**_JIT)
def layernorm_backward(dx, dweight, dbias, dout, x, mean, rstd, weight):
    """dx += dL/dx (the residual gradient accumulates here); dweight, dbias += their gradients."""
    n, d = x.shape
    for i in range(n):
        m = mean[i]
        r = rstd[i]
        sum_g = 0.0
        sum_gx = 0.0
        for j in range(d):
            xhat = (x[i, j] - m) * r
            g = dout[i, j] * weight[j]
            sum_g += g
            sum_gx += g * xhat
            dweight[j] += dout[i, j] * xhat
            dbias[j] += dout[i, j]
        mg = x.dtype.type(sum_g / d)
        mgx = x.dtype.type(sum_gx / d)
        for j in range(d):
            xhat = (x[i, j] - m) * r
            dx[i, j] += r * (dout[i, j] * weight[j] - mg - xhat * mgx)


# ---------------------------------------------------------------- GELU (tanh approximation)

@njit(**_JIT)
def bias_gelu_forward(g, dgelu, f, bias):
    """g = gelu(f + bias); dgelu = gelu'(f + bias), kept for the backward pass (f is then free)."""
    n, d = f.shape
    for i in range(n):
        for j in range(d):
            g[i, j], dgelu[i, j] = gelu_and_grad(f[i, j] + bias[j])


@njit(**_JIT)
def bias_gelu_backward(dg, dbias, dgelu):
    """In place dg *= gelu'(pre-activation), turning the GELU output's gradient into its input's;
    dbias += column sums of the result. (In place on purpose: aliased arguments stop vectorisation.)"""
    n, d = dg.shape
    for i in range(n):
        for j in range(d):
            grad = dg[i, j] * dgelu[i, j]
            dg[i, j] = grad
            dbias[j] += grad


# ---------------------------------------------------------------- causal self-attention
# Training: stacked BLAS products over strided views of qkv, numba softmax rows. Inference (a few rows over a
# KV cache): numba loops over contiguous memory that vectorise.

@njit(**_JIT, inline="always")
def _dot(a, b, start, stop):
    """sum of a[j] * b[j] for start <= j < stop (a register reduction: no stores in the loop)."""
    acc = a.dtype.type(0)    # a zero of the array's dtype: a 0.0 literal would widen float32 sums to float64
    for j in range(start, stop):
        acc += a[j] * b[j]
    return acc


@njit(**_JIT)
def _scores(p, q_row, k, count):
    """p[j] = q_row . k[j] for j < count (keys stored by row: the single-token decode path)."""
    for j in range(count):
        acc = p.dtype.type(0)
        for c in range(k.shape[1]):
            acc += q_row[c] * k[j, c]
        p[j] = acc


@njit(**_JIT, inline="always")
def _max(x, count):
    """max(x[:count]) over 16 independent lanes: a plain max reduction does not vectorise."""
    lanes = 16
    full = count - count % lanes
    mx = x[0]
    if full:
        m = x[:lanes].copy()
        for j in range(lanes, full, lanes):
            for c in range(lanes):
                v = x[j + c]
                m[c] = v if v > m[c] else m[c]
        for c in range(lanes):
            mx = m[c] if m[c] > mx else mx
    for j in range(full, count):
        mx = x[j] if x[j] > mx else mx
    return mx


@njit(**_JIT)
def _softmax(p, count):
    """In place softmax of p[:count]."""
    mx = _max(p, count)
    total = p.dtype.type(0)
    for j in range(count):
        e = fast_exp(p[j] - mx)
        p[j] = e
        total += e
    inv = p.dtype.type(1.0 / total)
    for j in range(count):
        p[j] *= inv


@njit(**_JIT)
def _weighted_sum(out, p, v, count):
    """out = sum_j p[j] * v[j] over the first count rows of v."""
    for c in range(out.shape[0]):
        out[c] = 0.0
    for j in range(count):
        pj = p[j]
        for c in range(out.shape[0]):
            out[c] += pj * v[j, c]


def _heads(x, batch, n_heads, parts, part):
    """(batch, heads, T, head_dim) view of the `part`-th of `parts` equal column blocks of x (rows = batch * T):
    qkv's q, k or v (parts 3), or an attention output (parts 1). Strided, not copied: BLAS takes it as it is."""
    n, width = x.shape
    hd = width // parts // n_heads
    return x.reshape(batch, n // batch, parts, n_heads, hd)[:, :, part].transpose(0, 2, 1, 3)


def attention_forward(y, probs, qkv, batch, n_heads):
    """Causal scaled dot-product attention of every (sequence, head).

    qkv rows hold [q | k | v] (each n_heads * head_dim wide); y gets the heads' outputs side by side;
    probs (batch, n_heads, T, T) keeps the softmax rows for the backward pass (zeros above the diagonal).
    The products are stacked BLAS matrix products over every (sequence, head) at once (the full T x T square:
    BLAS does the masked half faster than scalar loops skip it); the softmax is a numba kernel.
    """
    q, k, v = (_heads(qkv, batch, n_heads, 3, part) for part in range(3))
    np.matmul(q, k.transpose(0, 1, 3, 2), out=probs)
    t = probs.shape[-1]
    causal_softmax_stack(probs.reshape(-1, t, t), 1.0 / math.sqrt(q.shape[-1]))
    np.matmul(probs, v, out=_heads(y, batch, n_heads, 1, 0))


def attention_backward(dqkv, dprobs, dy, qkv, probs, batch, n_heads):
    """Write dqkv (every column) from dy, the saved qkv and the softmax rows in probs; dprobs (shaped like
    probs) is a work buffer.

    dV = P^T dY; dP = dY V^T; dS = scale P (dP - rowsum(P dP)) (causal_softmax_stack_backward);
    dQ = dS K; dK = dS^T Q. Stacked BLAS products as in attention_forward.
    """
    q, k, v = (_heads(qkv, batch, n_heads, 3, part) for part in range(3))
    dq, dk, dv = (_heads(dqkv, batch, n_heads, 3, part) for part in range(3))
    g = _heads(dy, batch, n_heads, 1, 0)
    np.matmul(probs.transpose(0, 1, 3, 2), g, out=dv)
    np.matmul(g, v.transpose(0, 1, 3, 2), out=dprobs)
    t = probs.shape[-1]
    causal_softmax_stack_backward(dprobs.reshape(-1, t, t), probs.reshape(-1, t, t), 1.0 / math.sqrt(q.shape[-1]))
    np.matmul(dprobs, k, out=dq)
    np.matmul(dprobs.transpose(0, 1, 3, 2), q, out=dk)


@njit(**_JIT)
def causal_softmax_stack(p, scale):
    """In place, for each (T, T) matrix of p (m, T, T): row i becomes softmax(scale * row[:i+1]), zeros after."""
    for m in range(p.shape[0]):
        causal_softmax(p[m], 0, scale)


@njit(**_JIT)
def causal_softmax_stack_backward(dp, p, scale):
    """In place: dp (m, T, T), the gradient of causal_softmax_stack's output p, becomes the gradient of its raw
    input: scale * p * (dp - sum_j p dp) on and below the diagonal, zeros above."""
    scale = dp.dtype.type(scale)
    t = p.shape[1]
    for m in range(p.shape[0]):
        for i in range(t):
            row, prow = dp[m, i], p[m, i]
            s = _dot(prow, row, 0, i + 1)
            for j in range(i + 1):
                row[j] = scale * prow[j] * (row[j] - s)
            for j in range(i + 1, t):
                row[j] = 0.0


@njit(**_JIT)
def kv_append(k_cache, v_cache, qkv, pos0, n_heads):
    """Copy the k and v of each row of qkv into this layer's caches (n_heads, Tmax, head_dim) at pos0, pos0+1, ..."""
    n, d3 = qkv.shape
    d = d3 // 3
    hd = d // n_heads
    for i in range(n):
        for h in range(n_heads):
            for c in range(hd):
                k_cache[h, pos0 + i, c] = qkv[i, d + h * hd + c]
                v_cache[h, pos0 + i, c] = qkv[i, 2 * d + h * hd + c]


@njit(**_JIT)
def attention_cached(y, scores, k_cache, v_cache, qkv, pos0, n_heads):
    """Inference attention over a KV cache for a few rows of qkv at positions pos0, pos0+1, ...

    Appends the rows' k and v to this layer's caches (n_heads, Tmax, head_dim), then lets row i attend
    causally to positions 0..pos0+i. scores is a (Tmax,) work buffer. (Long prompts go through
    causal_softmax and BLAS products instead.)
    """
    n, d3 = qkv.shape
    d = d3 // 3
    hd = d // n_heads
    scale = qkv.dtype.type(1.0 / math.sqrt(hd))
    q = np.empty(hd, qkv.dtype)
    acc = np.empty(hd, qkv.dtype)
    kv_append(k_cache, v_cache, qkv, pos0, n_heads)
    for h in range(n_heads):
        for i in range(n):
            for c in range(hd):
                q[c] = qkv[i, h * hd + c] * scale
            count = pos0 + i + 1
            _scores(scores, q, k_cache[h], count)
            _softmax(scores, count)
            _weighted_sum(acc, scores, v_cache[h], count)
            for c in range(hd):
                y[i, h * hd + c] = acc[c]


@njit(**_JIT)
def causal_softmax(s, pos0, scale):
    """In place: row i of the raw scores s (n, total) becomes softmax(scale * s[i, :pos0+i+1]), zeros after."""
    n, total = s.shape
    for i in range(n):
        row = s[i]
        count = pos0 + i + 1
        for j in range(count):
            row[j] *= s.dtype.type(scale)
        _softmax(row, count)
        for j in range(count, total):
            row[j] = 0.0


# ---------------------------------------------------------------- single-token decode
# Decoding one token is bound by reading the weights once. These matrix-vector kernels stream each
# weight matrix row by row (contiguous, vectorised) in the calling thread, so a whole block is one
# numba call: no BLAS thread start-up per product and no Python between the steps.

@njit(**_JIT)
def gemv(y, x, w):
    """y = x @ w for a vector x and a row-major (in, out) matrix w."""
    y[:] = 0.0
    for i in range(w.shape[0]):
        xi = x[i]
        for j in range(w.shape[1]):
            y[j] += xi * w[i, j]


@njit(**_JIT, inline="always")
def _row_dot(w, r, x):
    """w[r] . x: the one dot product of the output head, shared by gemv_rows and head_greedy so that
    both compute bit-identical logits."""
    acc = x.dtype.type(0)
    for c in range(w.shape[1]):
        acc += w[r, c] * x[c]
    return acc


@njit(**_JIT)
def gemv_rows(y, w, x):
    """y = w @ x: one dot product per row of w (the tied output head: logits = wte @ h)."""
    for r in range(w.shape[0]):
        y[r] = _row_dot(w, r, x)


@njit(**_JIT)
def decode_block(x, h, qkv, att, ff, ffg, ffd, scores, mean, rstd, k_cache, v_cache, pos,
                 ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b,
                 n_heads, eps, rope):
    """One transformer block for a single token at position pos, updating x (d,) in place.

    h, qkv, att, ff, ffg, ffd, scores, mean (1,) and rstd (1,) are work buffers; the token's k and v
    go into this layer's caches (n_heads, Tmax, head_dim), k turned by its position when `rope`.
    """
    d = x.shape[0]
    x2, h2 = x.reshape(1, d), h.reshape(1, d)
    layernorm_forward(h2, mean, rstd, x2, ln1_w, ln1_b, eps)
    gemv(qkv, h, qkv_w)
    qkv += qkv_b
    if rope:
        _rope_turn(qkv.reshape(1, 3 * d), 1, pos, n_heads, 1.0)
    attention_cached(att.reshape(1, d), scores, k_cache, v_cache, qkv.reshape(1, 3 * d), pos, n_heads)
    gemv(h, att, proj_w)
    x += h + proj_b
    layernorm_forward(h2, mean, rstd, x2, ln2_w, ln2_b, eps)
    gemv(ff, h, fc_w)
    bias_gelu_forward(ffg.reshape(1, -1), ffd.reshape(1, -1), ff.reshape(1, -1), fc_b)
    gemv(h, ffg, fc2_w)
    x += h + fc2_b


@njit(**_JIT)
def decode_token(x, h, qkv, att, ff, ffg, ffd, scores, stats, k_cache, v_cache,
                 params, block_offsets, wte_off, wpe_off, lnf_off, token, pos, n_heads, eps):
    """The whole network but the output head for one token at position pos: the final layer-normed hidden state in
    h (d,), k/v appended to the caches (the caller picks the head: gemv_rows or head_greedy). Weights are read from
    the flat params buffer at block_offsets ((n_layers, 12), model._BLOCK order), so the call unboxes few arrays;
    wpe_off < 0 means rotary positions. x, qkv, att, ff, ffg, ffd, scores and stats (2,) are work buffers."""
    d, dff = x.shape[0], ff.shape[0]
    rope = wpe_off < 0
    for j in range(d):
        x[j] = params[wte_off + token * d + j]
        if not rope:
            x[j] += params[wpe_off + pos * d + j]
    for layer in range(block_offsets.shape[0]):
        o = block_offsets[layer]
        decode_block(x, h, qkv, att, ff, ffg, ffd, scores, stats[0:1], stats[1:2],
                     k_cache[layer], v_cache[layer], pos,
                     params[o[0]:o[0] + d], params[o[1]:o[1] + d],
                     params[o[2]:o[2] + 3 * d * d].reshape(d, 3 * d), params[o[3]:o[3] + 3 * d],
                     params[o[4]:o[4] + d * d].reshape(d, d), params[o[5]:o[5] + d],
                     params[o[6]:o[6] + d], params[o[7]:o[7] + d],
                     params[o[8]:o[8] + d * dff].reshape(d, dff), params[o[9]:o[9] + dff],
                     params[o[10]:o[10] + dff * d].reshape(dff, d), params[o[11]:o[11] + d],
                     n_heads, eps, rope)
    layernorm_forward(h.reshape(1, d), stats[0:1], stats[1:2], x.reshape(1, d),
                      params[lnf_off:lnf_off + d], params[lnf_off + d:lnf_off + 2 * d], eps)


# ---------------------------------------------------------------- softmax + cross-entropy

@njit(**_JIT)
def softmax_xent(losses, logits, targets, grad_scale, write_grad):
    """Per-row cross-entropy of softmax(logits) against targets (-1 = ignored: loss 0, gradient 0).

    Writes losses (nats) and returns their sum. With write_grad, logits is overwritten in place by
    grad_scale * d(loss)/d(logits) = grad_scale * (softmax - onehot), saving a (rows, vocab) buffer.
    """
    n, v = logits.shape
    total = 0.0
    for i in range(n):
        tgt = targets[i]
        row = logits[i]
        if tgt < 0:
            losses[i] = 0.0
            if write_grad:
                row[:] = 0.0
            continue
        target_logit = row[tgt]
        mx = _max(row, v)
        s = row.dtype.type(0)
        if write_grad:
            for j in range(v):
                e = fast_exp(row[j] - mx)
                row[j] = e
                s += e
            loss = mx + math.log(s) - target_logit
            factor = row.dtype.type(grad_scale / s)
            for j in range(v):
                row[j] *= factor
            row[tgt] -= grad_scale
        else:
            for j in range(v):
                s += fast_exp(row[j] - mx)
            loss = mx + math.log(s) - target_logit
        losses[i] = loss
        total += loss
    return total


# ---------------------------------------------------------------- optimiser

@njit(**_JIT)
def adamw_step(params, grads, m, v, decay_mask, lr, beta1, beta2, eps, weight_decay, step):
    """One AdamW update in place (decoupled weight decay on entries where decay_mask is 1).

    step is the 1-based number of this update, used for bias correction of m and v.
    """
    c1 = 1.0 / (1.0 - beta1 ** step)
    c2 = 1.0 / (1.0 - beta2 ** step)
    for i in range(params.shape[0]):
        g = grads[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = mi
        v[i] = vi
        p = params[i] * (1.0 - lr * weight_decay * decay_mask[i])
        params[i] = p - lr * (mi * c1) / (math.sqrt(vi * c2) + eps)


# ---------------------------------------------------------------- greedy decode: int8 output head
# Forward-only inference kernels. The tied output head (vocab x d) is most of the weights a decode step
# reads; greedy decoding needs only its argmax. head_greedy scores every row with an int8 copy of the
# head (a quarter of the bytes), keeps the rows whose score could still be the maximum under a rigorous
# per-row error bound, and rescores just those with the fp32 weights. See model.GreedyHead for the bound.

@njit(**_JIT)
def head_greedy(logits, bounds, wte, q, scale, err, h):
    """Logits that are exact (bit-identical to gemv_rows) for every row < bounds.shape[0] that could be the
    argmax of wte[:rows] @ h, and -inf for every other row; returns how many rows were rescored.

    q (rows, d) int8 and scale (rows,) are the quantised head (wte[r] ~ scale[r] * q[r]) and err[r] bounds
    its error per unit of sum |h| (model.GreedyHead): with A = sum |h|, the int8 logit
    a_r = scale[r] (q[r] . h) is within e_r = err[r] A of the fp32 logit. The best lower bound
    lo = max_r (a_r - e_r) is <= the largest fp32 logit, so every row with a_r + e_r < lo loses for sure.
    bounds (rows,) float32 is a work buffer (it ends up holding the upper bounds a_r + e_r).
    h stays float32 (see docs/decisions.md, "Greedy decoding through an int8 head").
    """
    rows, d = bounds.shape[0], h.shape[0]
    total = np.float32(0)
    for c in range(d):
        total += abs(h[c])
    lo = np.float32(-np.inf)
    for r in range(rows):
        acc = np.float32(0)
        for c in range(d):
            acc += np.float32(q[r, c]) * h[c]
        a = acc * scale[r]
        e = err[r] * total
        bounds[r] = a + e
        lo = a - e if a - e > lo else lo
    rescored = 0
    for r in range(rows):
        if bounds[r] >= lo:
            logits[r] = _row_dot(wte, r, h)
            rescored += 1
        else:
            logits[r] = -np.inf
    for r in range(rows, logits.shape[0]):
        logits[r] = -np.inf
    return rescored
