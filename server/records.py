"""The server's own typed records: the status object, the model summary and the events the Workspace adds to the
trainer's (engine/events.py).

`to_json()` gives the JSON-ready dict with snake_case keys (the servers turn them into camelCase, events.to_wire,
where they send them). The field names are a contract: the VS Code extension, the dashboard and docs/protocol.md
read them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Union

from cllm.engine.events import TrainingEvent, TrainingMetadata, to_wire


class _Absent:
    """The value of a status field not known yet: left out of the JSON (None is written as null)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def _present(record: Any) -> dict[str, Any]:
    """The record's fields as a dict, without those still ABSENT."""
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    return {name: value for name, value in values.items() if value is not ABSENT}


@dataclass(frozen=True)
class ModelSummary:
    """The model serving completions: "workspace" (the workspace's own) or "base" (the base model before the
    workspace has one), the base it was fine-tuned from, and its training record."""

    serving: str
    path: str
    metadata: TrainingMetadata
    config: dict[str, int]  # the shape, with the names the editors show (layers, heads, ffn)
    base_kind: str | None = None  # "shipped" or "user": the base serving, or the one the model was fine-tuned from

    present = True

    def to_json(self) -> dict[str, Any]:
        meta = self.metadata
        return {"present": True, "serving": self.serving, "base": None if meta.base is None else meta.base.to_json(),
                "base_kind": self.base_kind, "corpus_files": len(meta.manifest) or None,
                "path": self.path, "trained_at": meta.created, "files": meta.files, "tokens": meta.tokens,
                "epochs": meta.epochs, "steps": meta.steps, "last_loss": meta.last_loss,
                "val_bits_per_byte": meta.val_bits_per_byte, "line_exact_match": meta.line_exact_match,
                "spheres": meta.spheres, "threads": meta.threads, "config": dict(self.config)}


@dataclass(frozen=True)
class NoModel:
    """No model serves: none yet, or the file at `path` cannot be used (`error`)."""

    path: str | None = None
    error: str | None = None

    present = False

    def to_json(self) -> dict[str, Any]:
        extra = {} if self.path is None else {"path": self.path, "error": self.error}
        return {"present": False, **extra}


def model_summary(model: Any, serving: str = "workspace") -> ModelSummary:
    """The summary of a loaded model (cllm.engine.Model) that status() shows."""
    from cllm.engine.train.shipped import base_kind

    cfg = model.config
    base = model.path if serving == "base" else model.metadata.base and model.metadata.base.path
    return ModelSummary(serving=serving, path=str(model.path), metadata=model.metadata, base_kind=base_kind(base),
                        config={"vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "layers": cfg.n_layers,
                                "heads": cfg.n_heads, "ffn": cfg.d_ff, "max_seq_len": cfg.max_seq_len})


@dataclass
class TrainingStatus:
    """The training state: "idle", "training", then "done" | "failed" | "cancelled", with the live numbers of the
    last trainer events (fields stay ABSENT, left out of the JSON, until an event gives them)."""

    state: str = "idle"
    job: str = ABSENT  # "train", or "pretrain": preparing the base model first
    started_at: str = ABSENT
    options: dict[str, int | float] = ABSENT
    phase: str = ABSENT
    done: int = ABSENT
    total: int | None = ABSENT
    unit: str = ABSENT
    files: int = ABSENT
    corpus_tokens: int = ABSENT
    total_steps: int = ABSENT
    epochs: int = ABSENT
    time_budget: float | None = ABSENT
    skipped: dict[str, Any] = ABSENT
    epoch: int = ABSENT
    step: int = ABSENT
    loss: float | None = ABSENT
    tokens: int = ABSENT
    tokens_per_second: float | None = ABSENT
    threads: int = ABSENT
    spheres: list[dict[str, Any]] = ABSENT
    seconds_remaining: float | None = ABSENT
    percent: int = ABSENT
    val_loss: float | None = ABSENT
    val_bits_per_byte: float | None = ABSENT
    train_loss: float | None = ABSENT
    line_exact_match: float | None = ABSENT
    finished_at: str = ABSENT
    reason: str = ABSENT

    def update(self, **values: Any) -> None:
        """Set the named fields."""
        for name, value in values.items():
            if name not in _TRAINING_FIELDS:
                raise AttributeError(f"TrainingStatus has no field {name!r}")
            setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        return _present(self)


_TRAINING_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingStatus))


@dataclass(frozen=True)
class WorkspaceStatus:
    """What Workspace.status() describes: what serves completions ("transformer" alone until the workspace
    mixture is built, "transformer+cache", None without a model), the model, the training and the acceptance counts."""

    workspace: str
    model_dir: str
    completer: str | None
    model: ModelSummary | NoModel
    training: TrainingStatus
    acceptance: dict[str, Any] = field(default_factory=dict)  # server/acceptance.py Acceptance.to_json()

    def to_json(self) -> dict[str, Any]:
        """The status object as the servers send it, keys already in camelCase."""
        return to_wire({"workspace": self.workspace, "model_dir": self.model_dir, "completer": self.completer,
                        "model": self.model.to_json(), "training": self.training.to_json(),
                        "acceptance": self.acceptance})


@dataclass(frozen=True)
class TrainingStarted:
    """A trainer child started (`job` "train" or "pretrain") with these checked options."""

    job: str
    options: dict[str, int | float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"event": "training_started", "job": self.job, "options": self.options}


@dataclass(frozen=True)
class ModelLoaded:
    """The new model at `path` serves completions."""

    path: str

    def to_json(self) -> dict[str, Any]:
        return {"event": "model_loaded", "path": self.path}


@dataclass(frozen=True)
class TrainingFinished:
    """A trainer child ended: state "done" | "failed" | "cancelled", with the reason when not done. Always last."""

    job: str
    state: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"event": "training_finished", "job": self.job, "state": self.state, "reason": self.reason}


ServerEvent = Union[TrainingEvent, TrainingStarted, ModelLoaded, TrainingFinished]
