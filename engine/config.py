"""Model and training configuration: every default of the engine lives here and only here."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ModelConfig:
    """Shape of the decoder-only transformer (pre-LayerNorm, GELU, tied embeddings, learned positions)."""

    vocab_size: int = 10_000
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 1024
    max_seq_len: int = 512
    dropout: float = 0.1

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        """Raise ValueError with a readable message when the shape cannot work."""
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.n_heads})")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TrainConfig:
    """How one training run goes: data windows, schedule, optimiser, the spheres and stop rules."""

    epochs: int = 10
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    grad_accum: int = 4
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    spheres: int = 12
    threads: int = 0
    max_steps: int | None = None
    time_budget: float | None = None
    fim_rate: float = 0.5
    val_fraction: float = 0.1
    patience: int = 2

    def validate(self) -> None:
        """Raise ValueError with a readable message for settings that cannot train."""
        for name in ("epochs", "batch_size", "seq_len", "grad_accum", "spheres"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (auto) or positive, got {self.threads}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.fim_rate <= 1.0:
            raise ValueError(f"fim_rate must be in [0, 1], got {self.fim_rate}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class CorpusConfig:
    """Which files of a workspace become training data."""

    extensions: tuple[str, ...] = (".c", ".h")
    max_file_bytes: int = 1_000_000
    skip_dirs: tuple[str, ...] = (
        "build", "builds", "out", "dist", "target", "node_modules", "vendor", "third_party",
        "third-party", "external", "deps", "__pycache__", "CMakeFiles", "venv", ".venv",
    )
    secret_patterns: tuple[str, ...] = (".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*")
    extra_ignore: tuple[str, ...] = field(default_factory=tuple)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return asdict(config)


def from_dict(cls: type, data: dict[str, Any]):
    """Build a config dataclass from a dict, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    return cls(**values)
