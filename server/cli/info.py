"""`cllm info MODEL`: a model file's configuration, training record and weights checksum, as text or one JSON
object (every checksum in the file is verified on the way)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cllm.engine.events import TrainingMetadata


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The `cllm info` subcommand's arguments."""
    p = sub.add_parser("info", help="show a model's configuration and training metadata")
    p.add_argument("model", help="a .cllm model file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def run(args: argparse.Namespace) -> int:
    """Show a model's configuration, training metadata and weights_sha256 (text, or one JSON object with --json)."""
    import json

    from cllm.engine.events import TrainingMetadata

    info = _model_info(args.model)
    meta = TrainingMetadata.from_json(info["metadata"])
    print(json.dumps(info, indent=2) if args.json else _format_info(info, meta))
    return 0


def _model_info(path: str) -> dict:
    """Everything `cllm info` reports about a model file (all checksums verified, optimizer state included)."""
    import os

    from cllm.engine.model.checkpoint import load_checkpoint, weights_sha256
    from cllm.engine.config import to_dict

    ckpt = load_checkpoint(path, with_optimizer=True)
    return {
        "path": os.path.abspath(path),
        "file_bytes": os.path.getsize(path),
        "model_config": to_dict(ckpt.model_config),
        "parameters": int(ckpt.params.size),
        "weights_sha256": weights_sha256(ckpt),
        "resumable": ckpt.optimizer is not None,
        "optimizer_step": None if ckpt.optimizer is None else ckpt.optimizer["step"],
        "metadata": ckpt.metadata,
    }


_INFO_FIELDS = {
    "created": "created", "workspace": "workspace", "files": "files", "train_files": "train files",
    "val_files": "held-out files", "tokens": "tokens", "trained_tokens": "trained tokens", "epochs": "epochs",
    "steps": "steps", "val_bits_per_byte": "held-out bits/byte", "spheres": "spheres", "threads": "threads",
    "seq_len": "seq_len", "context": "context",
}


def _info_value(value) -> str:
    """A metadata value for `cllm info` text: lists as their length, numbers with separators."""
    if isinstance(value, list):
        return f"{len(value):,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    return str(value)


def _base_words(path: str) -> str:
    """Which base a file is: the one shipped with cllm (its corpus: engine/train/shipped/MANIFEST.md), or the
    user's own."""
    from cllm.engine.train.shipped import base_kind

    if base_kind(path) == "shipped":
        return "the base shipped with cllm, trained on the corpus in engine/train/shipped/MANIFEST.md"
    return "a base model from `cllm pretrain`"


def _format_info(info: dict, meta: TrainingMetadata) -> str:
    """Readable `cllm info` text: the model, then the training record `meta` (a TrainingMetadata; long lists
    summarised)."""
    c = info["model_config"]
    rows = [
        ("weights sha256", info["weights_sha256"]),
        ("model", f"{info['parameters']:,} parameters: vocab {c['vocab_size']:,}, d_model {c['d_model']}, "
                  f"{c['n_layers']} layers, {c['n_heads']} heads, ffn {c['d_ff']}, context {c['max_seq_len']}, "
                  f"{c['positions']} positions, dropout {c['dropout']}"),
        ("resumable", f"yes (optimizer state at step {info['optimizer_step']})" if info["resumable"] else "no"),
    ]
    rows += [(label, _info_value(getattr(meta, key))) for key, label in _INFO_FIELDS.items()
             if getattr(meta, key) is not None]
    if meta.last_loss is not None:
        rows.append(("final train loss", f"{meta.last_loss:.4f}"))
    speed = meta.sphere_stats
    if speed is not None:
        rows.append(("throughput", f"{speed.tokens_per_second:,.0f} tokens/s, load imbalance "
                                   f"{speed.load_imbalance:.1%}, sync overhead {speed.sync_overhead:.1%}"))
    if meta.base is not None:
        rows.append(("fine-tuned from", f"{meta.base.path} (weights sha256 {meta.base.weights_sha256})"))
        rows.append(("that base", _base_words(meta.base.path)))
    if meta.base_share is not None:
        rows.append(("base weights kept", f"{meta.base_share:.0%} of the stored weights are the base's (blended back)"))
    if meta.replay_files:
        rows.append(("replayed base files", f"{len(meta.replay_files):,}"))
    if meta.manifest:
        rows.append(("base corpus", f"{len(meta.manifest):,} files in its manifest ({_base_words(info['path'])})"))
    if meta.train_config:
        rows.append(("train config", _info_value(meta.train_config)))
    header = f"{info['path']}  ({info['file_bytes'] / 1e6:.1f} MB)"
    return "\n".join([header] + [f"  {label:<18} {text}" for label, text in rows])
