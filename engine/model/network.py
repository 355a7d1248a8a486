"""Forward and hand-written backward of the whole transformer, plus KV-cache inference.

Token embedding (+ a position table, or rotary positions on queries and keys), n_layers pre-LayerNorm blocks with
a GELU MLP, a final LayerNorm and an output head tied to the embedding. Matrix products go to BLAS with out= into
preallocated buffers, the rest to numba kernels (kernels.py). A Scratch holds one shard's activations, so a step
allocates no large arrays, and since both release the GIL several threads run forward_backward in parallel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from . import kernels as K
from ..config import ModelConfig
from .params import num_params, views

LN_EPS = 1e-5


def _site(layer: int, k: int) -> int:
    """Dropout site number: 0 is the embedding, then two residual joins per layer."""
    return 1 + 2 * layer + k


class Scratch:
    """Preallocated activations and temporaries for shards of up to `batch` x `seq_len` tokens.

    Forward-only use (token_losses) keeps one layer's activations and no gradient buffers; the first
    forward_backward switches to training mode, keeping every layer's activations for the backward
    pass. Either way no large array is allocated per call.
    """

    def __init__(self, cfg: ModelConfig, batch: int, seq_len: int, dtype=np.float32) -> None:
        cfg.validate()
        if batch <= 0 or seq_len <= 0:
            raise ValueError(f"scratch needs a positive batch and seq_len, got {batch} x {seq_len}")
        if seq_len > cfg.max_seq_len:
            raise ValueError(f"seq_len {seq_len} exceeds the model's max_seq_len {cfg.max_seq_len}")
        self.cfg, self.batch, self.seq_len, self.dtype = cfg, batch, seq_len, np.dtype(dtype)
        n, d, ff = batch * seq_len, cfg.d_model, cfg.d_ff
        self.lnf = self._zeros(n, d)
        self.lnf_stats = self._zeros(2, n)
        self.logits = self._zeros(n, cfg.vocab_size)
        self.losses = self._zeros(n)
        self.tmp_d = self._zeros(n, d)   # matmul outputs before bias/dropout/residual
        self.dff = self._zeros(n, ff)    # MLP hidden: pre-activation in forward, its gradient in backward
        self.training = False
        self._layer_buffers(1)
        self._views: tuple | None = None

    def _zeros(self, *shape: int) -> np.ndarray:
        return np.zeros(shape, dtype=self.dtype)

    def _layer_buffers(self, slots: int) -> None:
        """Per-layer activations for `slots` layers (1: reused by every layer, forward only)."""
        n, d, ff, H, e = self.batch * self.seq_len, self.cfg.d_model, self.cfg.d_ff, self.cfg.n_heads, self._zeros
        self.x = e(slots + 1, n, d)      # residual stream entering each layer (and leaving the last)
        self.xmid = e(slots, n, d)       # residual stream between attention and MLP
        self.ln1, self.ln2 = e(slots, n, d), e(slots, n, d)
        self.ln1_stats, self.ln2_stats = e(slots, 2, n), e(slots, 2, n)
        self.qkv = e(slots, n, 3 * d)
        self.probs = e(slots, self.batch * H * self.seq_len * self.seq_len)
        self.att = e(slots, n, d)
        self.fc_g, self.fc_dgelu = e(slots, n, ff), e(slots, n, ff)  # GELU output and its derivative

    def start_training(self) -> None:
        """Allocate what the backward pass needs (once): every layer's activations and gradient buffers."""
        if self.training:
            return
        cfg, n, e = self.cfg, self.batch * self.seq_len, self._zeros
        self._layer_buffers(cfg.n_layers)
        self.dx = e(n, cfg.d_model)      # gradient of the residual stream
        self.dh = e(n, cfg.d_model)
        self.dqkv = e(n, 3 * cfg.d_model)
        self.dprobs = e(self.batch * cfg.n_heads * self.seq_len * self.seq_len)  # attention backward's work
        self.wgrad = e(max(cfg.vocab_size * cfg.d_model, cfg.d_model * cfg.d_ff, 3 * cfg.d_model ** 2))
        self.training = True

    def slot(self, layer: int) -> int:
        """Where a layer's activations live: its own slot when training, the shared one otherwise."""
        return layer if self.training else 0

    def param_views(self, params: np.ndarray, grads: np.ndarray | None) -> tuple[dict, dict | None]:
        """Named views of params/grads, rebuilt only when different buffers are passed in."""
        key = (params.ctypes.data, None if grads is None else grads.ctypes.data)
        if self._views is None or self._views[0] != key:
            self._views = (key, views(params, self.cfg), None if grads is None else views(grads, self.cfg))
        return self._views[1], self._views[2]


def make_scratch(cfg: ModelConfig, batch: int, seq_len: int, dtype=np.float32) -> Scratch:
    """Preallocate the buffers token_losses and forward_backward need for up to batch x seq_len tokens
    (the backward pass's share on first use of forward_backward)."""
    return Scratch(cfg, batch, seq_len, dtype)


def _check_tokens(name: str, arr: np.ndarray, cfg: ModelConfig, low: int) -> None:
    if arr.size and (int(arr.min()) < low or int(arr.max()) >= cfg.vocab_size):
        raise ValueError(f"{name} must hold ids in [{low}, {cfg.vocab_size}), got [{arr.min()}, {arr.max()}]")


def _check_batch(params, inputs, targets, cfg: ModelConfig, s: Scratch) -> tuple[np.ndarray, np.ndarray]:
    if params.dtype != s.dtype or params.shape != (num_params(cfg),):
        raise ValueError(f"params must be a flat {s.dtype} array of {num_params(cfg)} values, "
                         f"got {params.dtype} {params.shape}")
    if inputs.ndim != 2 or targets.shape != inputs.shape:
        raise ValueError("inputs and targets must be (batch, seq) arrays of one shape, "
                         f"got {inputs.shape} and {targets.shape}")
    b, t = inputs.shape
    if b > s.batch or t > s.seq_len or b == 0 or t == 0:
        raise ValueError(f"batch {b} x {t} does not fit the scratch ({s.batch} x {s.seq_len})")
    inputs = np.ascontiguousarray(inputs, dtype=np.int32).reshape(-1)
    targets = np.ascontiguousarray(targets, dtype=np.int32).reshape(-1)
    _check_tokens("inputs", inputs, cfg, 0)
    _check_tokens("targets", targets, cfg, -1)
    return inputs, targets


def _dropout(p: float, seed: int, site: int) -> tuple[np.uint64, np.uint64, float]:
    if p <= 0.0:
        return np.uint64(0), np.uint64(0), 1.0
    return K.dropout_key(seed, site), K.dropout_threshold(p), 1.0 / (1.0 - p)


def _forward(P: dict, tokens: np.ndarray, b: int, t: int, cfg: ModelConfig, s: Scratch,
             p: float, seed: int) -> np.ndarray:
    """Run the network over b x t tokens, leaving activations in s and logits in s.logits[:b*t].

    Returns the residual stream leaving the last layer (the final LayerNorm's input)."""
    n, H = b * t, cfg.n_heads
    x_out = s.x[0, :n]
    K.embedding_forward(x_out, tokens, P["wte"], _position_table(P), t, 0)
    K.dropout_apply(x_out, *_dropout(p, seed, 0))
    tmp = s.tmp_d[:n]
    for layer in range(cfg.n_layers):
        W, i = _layer(P, layer), s.slot(layer)
        x, xmid, h1, h2 = x_out, s.xmid[i, :n], s.ln1[i, :n], s.ln2[i, :n]
        x_out = s.x[i + 1, :n] if s.training else s.x[(layer + 1) % 2, :n]
        K.layernorm_forward(h1, s.ln1_stats[i, 0, :n], s.ln1_stats[i, 1, :n], x,
                            W["ln1.weight"], W["ln1.bias"], LN_EPS)
        qkv = s.qkv[i, :n]
        np.matmul(h1, W["attn.qkv.weight"], out=qkv)
        K.bias_forward(qkv, W["attn.qkv.bias"])
        if cfg.positions == "rope":
            K.rope_forward(qkv, t, 0, H)
        att = s.att[i, :n]
        K.attention_forward(att, _probs(s, i, b, t, H), qkv, b, H)
        np.matmul(att, W["attn.proj.weight"], out=tmp)
        K.bias_dropout_add_forward(xmid, tmp, x, W["attn.proj.bias"], *_dropout(p, seed, _site(layer, 0)))
        K.layernorm_forward(h2, s.ln2_stats[i, 0, :n], s.ln2_stats[i, 1, :n], xmid,
                            W["ln2.weight"], W["ln2.bias"], LN_EPS)
        f, dgelu, g = s.dff[:n], s.fc_dgelu[i, :n], s.fc_g[i, :n]
        np.matmul(h2, W["mlp.fc.weight"], out=f)
        K.bias_gelu_forward(g, dgelu, f, W["mlp.fc.bias"])
        np.matmul(g, W["mlp.proj.weight"], out=tmp)
        K.bias_dropout_add_forward(x_out, tmp, xmid, W["mlp.proj.bias"], *_dropout(p, seed, _site(layer, 1)))
    lnf = s.lnf[:n]
    K.layernorm_forward(lnf, s.lnf_stats[0, :n], s.lnf_stats[1, :n], x_out, P["ln_f.weight"], P["ln_f.bias"], LN_EPS)
    np.matmul(lnf, P["wte"].T, out=s.logits[:n])
    return x_out


def _position_table(P: dict) -> np.ndarray:
    """The learned position table, or an empty one (no rows: the embedding kernels then add no position)."""
    wte = P["wte"]
    return P["wpe"] if "wpe" in P else np.zeros((0, wte.shape[1]), wte.dtype)


def _layer(P: dict, layer: int) -> dict:
    prefix = f"layers.{layer}."
    return {name[len(prefix):]: arr for name, arr in P.items() if name.startswith(prefix)}


def _probs(s: Scratch, layer: int, b: int, t: int, heads: int) -> np.ndarray:
    return s.probs[layer, :b * heads * t * t].reshape(b, heads, t, t)


def _add_matmul(grad: np.ndarray, a: np.ndarray, b: np.ndarray, s: Scratch) -> None:
    """grad += a @ b through the scratch's weight-gradient buffer."""
    out = s.wgrad[:grad.size].reshape(grad.shape)
    np.matmul(a, b, out=out)
    grad += out


def forward_backward(params: np.ndarray, grads: np.ndarray, inputs: np.ndarray, targets: np.ndarray,
                     cfg: ModelConfig, scratch: Scratch, *, dropout: float, seed: int,
                     loss_scale: float) -> float:
    """Forward and backward over one shard; returns the SUM of token losses (nats).

    Adds loss_scale * d(sum of losses)/d(params) into grads (same flat layout as params).
    Targets of -1 are ignored. Dropout masks depend only on `seed` (and the shard's shape).
    """
    s = scratch
    tokens, tgts = _check_batch(params, inputs, targets, cfg, s)
    if grads.dtype != s.dtype or grads.shape != params.shape:
        raise ValueError(f"grads must be a flat {s.dtype} array shaped like params, got {grads.dtype} {grads.shape}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    b, t = inputs.shape
    n, H = b * t, cfg.n_heads
    P, G = s.param_views(params, grads)
    s.start_training()
    x_last = _forward(P, tokens, b, t, cfg, s, dropout, seed)
    logits = s.logits[:n]
    loss = K.softmax_xent(s.losses[:n], logits, tgts, loss_scale, True)
    dlogits = logits
    # output head (tied): logits = lnf @ wte.T
    dh, dx = s.dh[:n], s.dx[:n]
    np.matmul(dlogits, P["wte"], out=dh)
    _add_matmul(G["wte"], dlogits.T, s.lnf[:n], s)
    dx[...] = 0.0
    K.layernorm_backward(dx, G["ln_f.weight"], G["ln_f.bias"], dh, x_last,
                         s.lnf_stats[0, :n], s.lnf_stats[1, :n], P["ln_f.weight"])
    tmp, dff, dqkv = s.tmp_d[:n], s.dff[:n], s.dqkv[:n]
    for layer in reversed(range(cfg.n_layers)):
        W, GW = _layer(P, layer), _layer(G, layer)
        # MLP: x_next = xmid + dropout(gelu(ln2 @ Wfc + bfc) @ Wp + bp)
        K.bias_dropout_add_backward(tmp, GW["mlp.proj.bias"], dx, *_dropout(dropout, seed, _site(layer, 1)))
        np.matmul(tmp, W["mlp.proj.weight"].T, out=dff)
        _add_matmul(GW["mlp.proj.weight"], s.fc_g[layer, :n].T, tmp, s)
        K.bias_gelu_backward(dff, GW["mlp.fc.bias"], s.fc_dgelu[layer, :n])
        np.matmul(dff, W["mlp.fc.weight"].T, out=dh)
        _add_matmul(GW["mlp.fc.weight"], s.ln2[layer, :n].T, dff, s)
        K.layernorm_backward(dx, GW["ln2.weight"], GW["ln2.bias"], dh, s.xmid[layer, :n],
                             s.ln2_stats[layer, 0, :n], s.ln2_stats[layer, 1, :n], W["ln2.weight"])
        # attention: xmid = x + dropout(attn(ln1 @ Wqkv + bqkv) @ Wo + bo)
        K.bias_dropout_add_backward(tmp, GW["attn.proj.bias"], dx, *_dropout(dropout, seed, _site(layer, 0)))
        np.matmul(tmp, W["attn.proj.weight"].T, out=dh)
        _add_matmul(GW["attn.proj.weight"], s.att[layer, :n].T, tmp, s)
        K.attention_backward(dqkv, s.dprobs[:b * H * t * t].reshape(b, H, t, t), dh, s.qkv[layer, :n],
                             _probs(s, layer, b, t, H), b, H)
        if cfg.positions == "rope":
            K.rope_backward(dqkv, t, 0, H)
        K.bias_backward(GW["attn.qkv.bias"], dqkv)
        np.matmul(dqkv, W["attn.qkv.weight"].T, out=dh)
        _add_matmul(GW["attn.qkv.weight"], s.ln1[layer, :n].T, dqkv, s)
        K.layernorm_backward(dx, GW["ln1.weight"], GW["ln1.bias"], dh, s.x[layer, :n],
                             s.ln1_stats[layer, 0, :n], s.ln1_stats[layer, 1, :n], W["ln1.weight"])
    K.dropout_apply(dx, *_dropout(dropout, seed, 0))
    K.embedding_backward(G["wte"], _position_table(G), dx, tokens, t, 0)
    return float(loss)


def token_losses(params: np.ndarray, inputs: np.ndarray, targets: np.ndarray, cfg: ModelConfig,
                 scratch: Scratch) -> np.ndarray:
    """Per-token losses (nats) in eval mode (no dropout); ignored targets (-1) get 0. Returns (B, T) float32."""
    s = scratch
    tokens, tgts = _check_batch(params, inputs, targets, cfg, s)
    b, t = inputs.shape
    n = b * t
    P, _ = s.param_views(params, None)
    _forward(P, tokens, b, t, cfg, s, 0.0, 0)
    K.softmax_xent(s.losses[:n], s.logits[:n], tgts, 1.0, False)
    return s.losses[:n].astype(np.float32).reshape(b, t)


# ---------------------------------------------------------------- inference with a KV cache

@dataclass
class KVCache:
    """Keys and values of every layer for positions 0..length-1.

    k, v: (n_layers, n_heads, max_len, head_dim) float32. Callers may lower `length` to reuse a
    shared prefix; positions from `length` on are overwritten by the next infer call. One cache serves
    one thread at a time; different caches may run in different threads at once.
    """

    k: np.ndarray
    v: np.ndarray
    length: int = 0
    _views: tuple | None = field(default=None, repr=False)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]


def new_cache(cfg: ModelConfig, max_len: int | None = None) -> KVCache:
    """An empty KV cache for up to max_len positions (default and cap: the model's max_seq_len)."""
    cfg.validate()
    max_len = cfg.max_seq_len if max_len is None else max_len
    if not 0 < max_len <= cfg.max_seq_len:
        raise ValueError(f"cache max_len must be in [1, {cfg.max_seq_len}], got {max_len}")
    shape = (cfg.n_layers, cfg.n_heads, max_len, cfg.head_dim)
    return KVCache(k=np.zeros(shape, np.float32), v=np.zeros(shape, np.float32))


@dataclass(frozen=True, eq=False)
class GreedyHead:
    """An int8 copy of the tied output head's first `rows` rows, for exact greedy decoding (see infer).

    Row r is wte[r] ~ scale[r] * q[r], scale[r] = max |wte[r]| / 127; err[r] bounds the int8 logit's error against
    the fp32 one per unit of A = sum |h|: the quantisation residual max_c |wte[r, c] - scale[r] q[r, c]| plus
    8 d u max |wte[r]| (u = 2^-24) for float32 rounding, about 4x what the two dot products can be off.
    Built once per loaded model, whose weights never change; `check` refuses other params buffers."""

    rows: int
    q: np.ndarray
    scale: np.ndarray
    err: np.ndarray
    params_key: tuple[int, int]

    def check(self, params: np.ndarray, cfg: ModelConfig) -> None:
        """ValueError unless this head was built from this params buffer and config."""
        if (params.ctypes.data, params.size) != self.params_key or self.q.shape[1] != cfg.d_model:
            raise ValueError("this GreedyHead was built from other weights; build one with greedy_head(params)")


def greedy_head(params: np.ndarray, cfg: ModelConfig, rows: int | None = None) -> GreedyHead:
    """Quantise wte[:rows] (default: the whole vocabulary) to int8 with per-row scales for infer(greedy=...).

    The caller promises not to change params afterwards (the head would go stale). ValueError for
    weights that are not finite (no error bound holds then) or a bad `rows`.
    """
    if params.dtype != np.float32 or params.shape != (num_params(cfg),):
        raise ValueError(f"params must be a flat float32 array of {num_params(cfg)} values")
    rows = cfg.vocab_size if rows is None else rows
    if not 0 < rows <= cfg.vocab_size:
        raise ValueError(f"rows must be in [1, {cfg.vocab_size}], got {rows}")
    wte = views(params, cfg)["wte"][:rows]
    if not np.isfinite(wte).all():
        raise ValueError("the output head holds non-finite weights; greedy decoding needs the fp32 path")
    big = np.abs(wte).max(axis=1)
    scale = np.where(big > 0, big, 1.0).astype(np.float32) / np.float32(127)
    q = np.clip(np.rint(wte / scale[:, None]), -127, 127).astype(np.int8)
    res = np.abs(wte.astype(np.float64) - q * scale[:, None].astype(np.float64)).max(axis=1)
    err = res + 8 * cfg.d_model * 2.0 ** -24 * big.astype(np.float64)
    return GreedyHead(rows, q, scale, np.nextafter(err.astype(np.float32), np.float32(np.inf)),
                      (params.ctypes.data, params.size))


_FEW_ROWS = 16   # prompts up to this many new tokens use the numba attention kernel
_ROW_BLOCK = 128  # longer prompts: rows per block of BLAS attention (a block sees only earlier keys)
_BLOCK = ("ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
          "ln2.weight", "ln2.bias", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias")


_thread_work = threading.local()


def _work(cfg: ModelConfig, max_len: int, n: int) -> dict:
    """This thread's inference work buffers for a model shape and cache length, grown (rarely) to n rows.

    Shared by every cache the thread runs (the completer's slots), so idle caches hold only keys and
    values; decoding reuses them without allocating.
    """
    pools = getattr(_thread_work, "pools", None)
    if pools is None:
        pools = _thread_work.pools = {}
    w = pools.setdefault((cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.n_heads, max_len), {})
    if w.get("rows", 0) < n:
        d, ff = cfg.d_model, cfg.d_ff
        e = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731 - local shorthand
        w.update(rows=n, x=e(n, d), h=e(n, d), qkv=e(n, 3 * d), att=e(n, d), tmp=e(n, d), f=e(n, ff),
                 dgelu=e(n, ff), g=e(n, ff), stats=e(2, n), scores=e(n * max_len), head=e(n, cfg.head_dim),
                 bounds=e(cfg.vocab_size))
        w["decode"] = (w["x"][0], w["h"][0], w["qkv"][0], w["att"][0], w["f"][0], w["g"][0], w["dgelu"][0],
                       w["scores"][:max_len], e(2))
    return w


def _weights(params: np.ndarray, cfg: ModelConfig, cache: KVCache) -> tuple[dict, list[tuple], tuple]:
    """Named views of params, each block's weights in _BLOCK order and the decode kernel's offsets
    (block offsets, wte, wpe (-1: none, rotary positions), ln_f), kept on the cache between calls."""
    key = (params.ctypes.data, params.size)
    if cache._views is None or cache._views[0] != key:
        if params.dtype != np.float32 or params.shape != (num_params(cfg),):
            raise ValueError(f"params must be a flat float32 array of {num_params(cfg)} values")
        P = views(params, cfg)
        blocks = [tuple(P[f"layers.{layer}.{name}"] for name in _BLOCK) for layer in range(cfg.n_layers)]
        start = {name: (view.ctypes.data - params.ctypes.data) // 4 for name, view in P.items()}
        block_offsets = np.array([[start[f"layers.{layer}.{name}"] for name in _BLOCK]
                                  for layer in range(cfg.n_layers)], dtype=np.int64)
        offsets = (block_offsets, start["wte"], start.get("wpe", -1), start["ln_f.weight"])
        cache._views = (key, P, blocks, offsets)
    return cache._views[1], cache._views[2], cache._views[3]


def infer(params: np.ndarray, cfg: ModelConfig, tokens: np.ndarray, cache: KVCache, *,
          all_logits: bool = False, greedy: GreedyHead | None = None) -> np.ndarray:
    """Run tokens at positions cache.length.., append their keys/values, advance cache.length.

    Returns the logits of the last position (V,), or of every position (n, V) with all_logits. One token takes the
    fused numba decode path, several the batched BLAS path. With `greedy`, the last position's logits are exact fp32
    where they could be the argmax of logits[:greedy.rows] and -inf elsewhere: for greedy picks over that whole range
    only (sampling or a restricted token set needs the plain logits)."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int32).reshape(-1)
    n, pos0 = tokens.size, cache.length
    if n == 0:
        raise ValueError("infer needs at least one token")
    if not 0 <= pos0 <= cache.max_len or pos0 + n > cache.max_len:
        raise ValueError(f"{n} tokens at position {pos0} do not fit a cache of {cache.max_len} positions")
    _check_tokens("tokens", tokens, cfg, 0)
    P, blocks, offsets = _weights(params, cfg, cache)
    if greedy is not None:
        greedy.check(params, cfg)
        if all_logits:
            raise ValueError("greedy scores the last position only; it cannot be combined with all_logits")
    w = _work(cfg, cache.max_len, n)
    h = w["h"][:n]
    if n == 1:
        K.decode_token(*w["decode"], cache.k, cache.v, params, *offsets, tokens[0], pos0, cfg.n_heads, LN_EPS)
    else:
        x, mean, rstd = w["x"][:n], w["stats"][0, :n], w["stats"][1, :n]
        K.embedding_forward(x, tokens, P["wte"], _position_table(P), n, pos0)
        _prefill(w, n, pos0, blocks, cache, cfg)
        rows = slice(0, n) if all_logits else slice(n - 1, n)
        K.layernorm_forward(h[rows], mean[rows], rstd[rows], x[rows], P["ln_f.weight"], P["ln_f.bias"], LN_EPS)
    cache.length = pos0 + n
    if all_logits and n > 1:
        return h @ P["wte"].T
    logits = np.empty(cfg.vocab_size, np.float32)
    if greedy is None:
        K.gemv_rows(logits, P["wte"], h[n - 1])
    else:
        K.head_greedy(logits, w["bounds"][:greedy.rows], P["wte"], greedy.q, greedy.scale, greedy.err, h[n - 1])
    return logits.reshape(1, -1) if all_logits else logits


def _prefill(w: dict, n: int, pos0: int, blocks: list[tuple], cache: KVCache, cfg: ModelConfig) -> None:
    """The blocks over n > 1 tokens with BLAS matrix products, updating w["x"][:n] in place."""
    x, h, qkv, att, tmp = w["x"][:n], w["h"][:n], w["qkv"][:n], w["att"][:n], w["tmp"][:n]
    f, dgelu, g, mean, rstd = w["f"][:n], w["dgelu"][:n], w["g"][:n], w["stats"][0, :n], w["stats"][1, :n]
    zero = np.uint64(0)
    for layer, weights in enumerate(blocks):
        ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b = weights
        K.layernorm_forward(h, mean, rstd, x, ln1_w, ln1_b, LN_EPS)
        np.matmul(h, qkv_w, out=qkv)
        K.bias_forward(qkv, qkv_b)
        if cfg.positions == "rope":
            K.rope_forward(qkv, n, pos0, cfg.n_heads)  # keys are turned once, before they are cached
        _prompt_attention(att, qkv, cache, layer, pos0, w, cfg)
        np.matmul(att, proj_w, out=tmp)
        K.bias_dropout_add_forward(x, tmp, x, proj_b, zero, zero, 1.0)
        K.layernorm_forward(h, mean, rstd, x, ln2_w, ln2_b, LN_EPS)
        np.matmul(h, fc_w, out=f)
        K.bias_gelu_forward(g, dgelu, f, fc_b)
        np.matmul(g, fc2_w, out=tmp)
        K.bias_dropout_add_forward(x, tmp, x, fc2_b, zero, zero, 1.0)


def _prompt_attention(att: np.ndarray, qkv: np.ndarray, cache: KVCache, layer: int, pos0: int, w: dict,
                      cfg: ModelConfig) -> None:
    """Attention of n prompt rows over the cache: the numba kernel for a few rows; for long prompts
    BLAS products per head and block of rows (scores = q k^T over the keys the block can see, causal
    softmax, then probabilities @ v), several times faster than the kernel."""
    n, H, hd = qkv.shape[0], cfg.n_heads, cfg.head_dim
    k_cache, v_cache = cache.k[layer], cache.v[layer]
    if n <= _FEW_ROWS:
        K.attention_cached(att, w["scores"], k_cache, v_cache, qkv, pos0, H)
        return
    K.kv_append(k_cache, v_cache, qkv, pos0, H)
    scale = 1.0 / np.sqrt(hd)
    for r0 in range(0, n, _ROW_BLOCK):
        r1 = min(n, r0 + _ROW_BLOCK)
        visible = pos0 + r1
        scores, head = w["scores"][:(r1 - r0) * visible].reshape(r1 - r0, visible), w["head"][:r1 - r0]
        for h in range(H):
            np.matmul(qkv[r0:r1, h * hd:(h + 1) * hd], k_cache[h, :visible].T, out=scores)
            K.causal_softmax(scores, pos0 + r0, scale)
            np.matmul(scores, v_cache[h, :visible], out=head)
            att[r0:r1, h * hd:(h + 1) * hd] = head
