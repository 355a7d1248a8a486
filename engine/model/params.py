"""The model's parameters as one flat float32 buffer with named views into it.

Keeping every tensor in a single contiguous buffer makes AdamW, gradient reduction across
spheres and checkpointing single array operations; the named views give each kernel its
tensor without copies. Weight matrices are stored (in, out), so a layer is y = x @ W + b;
the output head is tied to "wte" (logits = h @ wte.T).
"""

from __future__ import annotations

import math

import numpy as np

from ..config import ModelConfig


def param_specs(cfg: ModelConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Every tensor's name and shape, in buffer order."""
    d, ff = cfg.d_model, cfg.d_ff
    specs: list[tuple[str, tuple[int, ...]]] = [("wte", (cfg.vocab_size, d))]
    if cfg.positions == "learned":
        specs.append(("wpe", (cfg.max_seq_len, d)))
    for layer in range(cfg.n_layers):
        p = f"layers.{layer}."
        specs += [
            (p + "ln1.weight", (d,)),
            (p + "ln1.bias", (d,)),
            (p + "attn.qkv.weight", (d, 3 * d)),
            (p + "attn.qkv.bias", (3 * d,)),
            (p + "attn.proj.weight", (d, d)),
            (p + "attn.proj.bias", (d,)),
            (p + "ln2.weight", (d,)),
            (p + "ln2.bias", (d,)),
            (p + "mlp.fc.weight", (d, ff)),
            (p + "mlp.fc.bias", (ff,)),
            (p + "mlp.proj.weight", (ff, d)),
            (p + "mlp.proj.bias", (d,)),
        ]
    specs += [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]
    return specs


def num_params(cfg: ModelConfig) -> int:
    """Total number of scalars in the flat buffer."""
    return sum(math.prod(shape) for _, shape in param_specs(cfg))


def views(flat: np.ndarray, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """Named, writable, C-contiguous views into `flat` (params, grads or optimiser moments alike)."""
    if flat.ndim != 1 or flat.size != num_params(cfg):
        raise ValueError(
            f"parameter buffer has shape {flat.shape}, expected ({num_params(cfg)},) for this model config"
        )
    out: dict[str, np.ndarray] = {}
    offset = 0
    for name, shape in param_specs(cfg):
        size = math.prod(shape)
        out[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    return out


def init_params(cfg: ModelConfig, seed: int) -> np.ndarray:
    """GPT-2 style initialisation: N(0, 0.02) matrices and embeddings, residual output projections
    scaled by 1/sqrt(2 * n_layers) so the residual stream's variance does not grow with depth,
    LayerNorm weights 1, biases 0."""
    cfg.validate()
    rng = np.random.default_rng(seed)
    flat = np.zeros(num_params(cfg), dtype=np.float32)
    residual_std = 0.02 / np.sqrt(2.0 * cfg.n_layers)
    for name, view in views(flat, cfg).items():
        if view.ndim == 2:
            std = residual_std if name.endswith("proj.weight") else 0.02
            view[...] = rng.normal(0.0, std, size=view.shape)
        elif name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "ln_f.weight":
            view[...] = 1.0
    return flat


def decay_mask(cfg: ModelConfig) -> np.ndarray:
    """1.0 on every matrix (embeddings included), 0.0 on biases and LayerNorm parameters."""
    mask = np.zeros(num_params(cfg), dtype=np.float32)
    for view in views(mask, cfg).values():
        if view.ndim == 2:
            view[...] = 1.0
    return mask
