"""Configuration dataclasses: the model shape, a training run, the corpus, and the policies for unset settings."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from typing import Any


POSITIONS = ("learned", "rope")  # ModelConfig.positions: how the model knows where a token is


@dataclass(frozen=True)
class Check:
    """The values an option takes: its type (int, float, bool or str) and its range, in JSON Schema's terms, or
    for text its choices. The CLI and the editor settings check against it; /v1/train and the extension show it."""

    kind: type = int
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: tuple[str, ...] = ()

    def accepts(self, value: Any) -> bool:
        """True when `value` (already of `kind`) is in the range or among the choices."""
        if self.choices:
            return value in self.choices
        return ((self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
                and (self.exclusive_minimum is None or value > self.exclusive_minimum)
                and (self.exclusive_maximum is None or value < self.exclusive_maximum))

    def expected(self) -> str:
        """The values in words, for messages: "a whole number from 1 to 100000", "one of learned, rope", ...
        A number's range always has a lower bound (minimum or exclusive_minimum)."""
        if self.kind is bool:
            return "true or false"
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        number = "a whole number" if self.kind is int else "a number"
        if self.maximum is not None:
            return f"{number} from {self.minimum} to {self.maximum}"
        if self.exclusive_maximum is not None:
            return f"{number} in [{self.minimum}, {self.exclusive_maximum})"
        if self.minimum is not None:
            return f"{number} >= {self.minimum}"
        return f"{number} > {self.exclusive_minimum}"

    def json_schema(self) -> dict[str, Any]:
        """The check as a JSON Schema (the OpenAPI body of /v1/train, the extension's settings list)."""
        kind = {int: "integer", float: "number", bool: "boolean", str: "string"}[self.kind]
        bounds = {"minimum": self.minimum, "maximum": self.maximum, "exclusiveMinimum": self.exclusive_minimum,
                  "exclusiveMaximum": self.exclusive_maximum}
        return {"type": kind, **{key: value for key, value in bounds.items() if value is not None},
                **({"enum": list(self.choices)} if self.choices else {})}


COUNT = Check(int, minimum=0)
POSITIVE = Check(int, minimum=1)
# Sizes: far beyond any model this CPU engine trains, low enough that a typo is an error or "out of memory"
# rather than an overflow deep in numpy.
SIZE = Check(int, minimum=1, maximum=100_000)
POSITIVE_FLOAT = Check(float, exclusive_minimum=0)
SWITCH = Check(bool)  # a flag without a value; the setting is true or false


@dataclass(frozen=True)
class Option:
    """One training or model option as the user gives it (the config field it sets holds it as metadata):
    `cllm train --FLAG` (underscores as dashes; FLAG is also its name in a training request), its editor setting
    key (camelCase, in the `training` settings; None: command line only), help text and check, the commands that
    take it, and whether it is part of the model's shape (fixed by a base or a continued model)."""

    flag: str
    help: str
    check: Check = POSITIVE
    setting: str | None = None
    commands: tuple[str, ...] = ("train",)
    shape: bool = False
    metavar: str | None = None

    @property
    def argument(self) -> str:
        """The command-line flag: "--time-budget" for time_budget."""
        return "--" + self.flag.replace("_", "-")


def option(flag: str, help: str, check: Check = POSITIVE, **more: Any) -> dict[str, Option]:
    """Field metadata declaring the option that sets a config field: `field(default=..., metadata=option(...))`."""
    return {"option": Option(flag, help, check, **more)}


TRAIN_AND_PRETRAIN = ("train", "pretrain")


@dataclass
class ModelConfig:
    """Shape of the decoder-only transformer (pre-LayerNorm, GELU, tied embeddings).

    positions: "rope" (rotary embeddings on queries and keys, no position table) or "learned" (a trained table
    added to the token embedding). See docs/decisions.md, "Rotary positions by default"."""

    vocab_size: int = field(default=10_000, metadata=option(
        "vocab_size", "tokenizer vocabulary size", SIZE, setting="vocabSize", commands=TRAIN_AND_PRETRAIN, shape=True))
    d_model: int = field(default=256, metadata=option("d_model", "model width", SIZE, setting="dModel", shape=True))
    n_layers: int = field(default=4, metadata=option("layers", "transformer layers", SIZE, setting="layers",
                                                     shape=True))
    n_heads: int = field(default=8, metadata=option("heads", "attention heads (must divide --d-model)", SIZE,
                                                    setting="heads", shape=True))
    d_ff: int = field(default=1024, metadata=option("ffn", "feed-forward width", SIZE, setting="ffn", shape=True))
    max_seq_len: int = 512
    dropout: float = field(default=0.1, metadata=option("dropout", "dropout rate",
                                                        Check(float, minimum=0, exclusive_maximum=1)))
    positions: str = field(default="rope", metadata=option(
        "position_encoding", "how the model knows where a token is: a learned table, or rotary embeddings (rope) on "
        "queries and keys", Check(str, choices=POSITIONS), commands=TRAIN_AND_PRETRAIN, shape=True))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def validate(self) -> None:
        """Raise ValueError with a readable message when the shape cannot work."""
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head size, got {self.head_dim}")


@dataclass
class TrainConfig:
    """How one training run goes: data windows, schedule, optimiser, the spheres and stop rules."""

    epochs: int = field(default=10, metadata=option("epochs", "passes over the training files", setting="epochs",
                                                    commands=TRAIN_AND_PRETRAIN))
    batch_size: int = field(default=32, metadata=option("batch_size", "sequences per optimizer step", SIZE,
                                                        setting="batchSize"))
    seq_len: int = field(default=128, metadata=option("seq_len", "tokens per training sequence", SIZE,
                                                      setting="seqLen", commands=TRAIN_AND_PRETRAIN))
    lr: float = field(default=1e-3, metadata=option("lr", "peak learning rate", POSITIVE_FLOAT, setting="lr"))
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    warmup_fraction: float = 0.05  # the warm-up never exceeds this share of the planned (or budget-fitted) steps
    grad_accum: int = field(default=4, metadata=option("grad_accum", "micro-batches per optimizer step", SIZE,
                                                       setting="gradAccum"))
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = field(default=0, metadata=option("seed", "random seed (weights, data order, dropout)", COUNT,
                                                 setting="seed", commands=TRAIN_AND_PRETRAIN))
    spheres: int = field(default=12, metadata=option("spheres", "worker spheres", SIZE, setting="spheres"))
    threads: int = field(default=0, metadata=option("threads", "OS threads for the spheres (0 = one per core)", COUNT,
                                                    setting="threads", commands=TRAIN_AND_PRETRAIN))
    max_steps: int | None = field(default=None, metadata=option(
        "max_steps", "stop after this many optimizer steps", setting="maxSteps", commands=TRAIN_AND_PRETRAIN))
    time_budget: float | None = field(default=None, metadata=option(
        "time_budget", "stop after SECONDS; unset --epochs, --grad-accum, --lr, --dropout and --vocab-size are then "
        "fitted to the budget", POSITIVE_FLOAT, setting="timeBudget", commands=TRAIN_AND_PRETRAIN, metavar="SECONDS"))
    only_better: bool = field(default=False, metadata=option(
        "only_better", "validate the weights the run goes on from first (the model continued, or the base) and write "
        "other weights only when they validate better on the same held-out files (the editors' learning while "
        "idle); the model file records that first validation as start_val_loss", SWITCH))
    fim_rate: float = 0.5
    val_fraction: float = 0.1
    patience: int = 2
    replay_fraction: float = 0.25  # fine-tuning only: share of the training bytes replayed from the base's corpus

    def validate(self) -> None:
        """Raise ValueError with a readable message for settings that cannot train."""
        for name in ("epochs", "batch_size", "seq_len", "grad_accum", "spheres"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (auto) or positive, got {self.threads}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 < self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in (0, 1], got {self.warmup_fraction}")
        if not 0.0 <= self.fim_rate <= 1.0:
            raise ValueError(f"fim_rate must be in [0, 1], got {self.fim_rate}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.replay_fraction < 1.0:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction}")


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
    gitignore: bool = field(default=True, metadata=option(  # honour git's listing / .gitignore files
        "no_gitignore", "take every C file: neither git's listing nor .gitignore files leave any out", SWITCH,
        setting="noGitignore"))  # the switch sets it False


# Not a config field: it decides how a run starts (continue the workspace's model, or not).
FRESH = Option("fresh", "start over even when the workspace's model could be continued", SWITCH, setting="fresh")


def config_options(cls: type) -> dict[str, Option]:
    """Field name -> Option of the fields of config dataclass `cls` that users set."""
    return {f.name: f.metadata["option"] for f in fields(cls) if "option" in f.metadata}


# Every option users set, in help order: the run's, the model's, the corpus's and how the run starts.
OPTIONS: tuple[Option, ...] = (*config_options(TrainConfig).values(), *config_options(ModelConfig).values(),
                               *config_options(CorpusConfig).values(), FRESH)


def editor_settings() -> dict[str, dict[str, Any]]:
    """The editors' `training` settings (camelCase key -> JSON Schema with the help as description), as the VS
    Code extension lists them (vscode-extension/scripts/training-options.mjs writes them out at build time)."""
    return {o.setting: {**o.check.json_schema(), "description": o.help} for o in OPTIONS if o.setting}


@dataclass(frozen=True)
class BudgetPolicy:
    """How `--time-budget` training fills in the settings the user did not set (see budget_defaults), so that a
    short run does not spend its budget warming up. See docs/decisions.md, "Settings for a time budget"."""

    # Planning estimates only; the schedule is refitted to the measured speed after a few steps.
    tokens_per_second: float = 4000.0  # the seed model on 2 cores
    bytes_per_token: float = 3.2  # C code under a vocabulary of a few thousand tokens
    min_steps: int = 500  # gradient accumulation grows (up to the default) only while the run keeps this many steps
    lr: float = 2e-3  # short runs of models up to lr_max_d_model wide learn measurably faster at this peak
    lr_max_d_model: int = 256
    underfit_epochs: float = 8.0  # dropout 0 when the budget sees at most this many epochs (the model underfits)
    vocab_per_sqrt_mb: int = 4096  # vocabulary ~ 4096 * sqrt(training MB), in multiples of 256 ...
    min_vocab: int = 1024
    max_vocab: int = 10_000  # ... up to the documented default
    max_epochs: int = 200  # epochs grow so the budget, not the epoch count, ends the run (early stopping guards)
    sample_passes: float = 4.0  # a bigger workspace is sampled down to this many times the text the budget trains on


BUDGET_FIELDS = ("epochs", "grad_accum", "lr", "dropout", "vocab_size")  # what budget_defaults may choose


def budget_defaults(train_bytes: int, time_budget: float | None, model: ModelConfig, train: TrainConfig,
                    explicit: Collection[str] = (), policy: BudgetPolicy = BudgetPolicy()) -> dict[str, Any]:
    """The BUDGET_FIELDS a run of `time_budget` seconds on `train_bytes` of training text should use, leaving out
    those in `explicit` (the user's always win); {} without a budget. Names are ModelConfig or TrainConfig fields."""
    if time_budget is None:
        return {}
    corpus_tokens = max(1.0, train_bytes / policy.bytes_per_token)
    budget_tokens = time_budget * policy.tokens_per_second
    epochs_seen = budget_tokens / corpus_tokens
    window_tokens = train.batch_size * train.seq_len
    grad_accum = 1  # doubled (up to the default) while the budget still holds min_steps optimizer steps
    while 2 * grad_accum <= TrainConfig.grad_accum and budget_tokens >= policy.min_steps * window_tokens * 2 * grad_accum:
        grad_accum *= 2
    vocab = policy.vocab_per_sqrt_mb * math.sqrt(train_bytes / 1e6)
    chosen: dict[str, Any] = {
        "epochs": min(policy.max_epochs, max(TrainConfig.epochs, math.ceil(epochs_seen))),
        "grad_accum": grad_accum,
        "dropout": 0.0 if epochs_seen <= policy.underfit_epochs else ModelConfig.dropout,
        "vocab_size": int(min(policy.max_vocab, max(policy.min_vocab, 256 * round(vocab / 256)))),
    }
    if model.d_model <= policy.lr_max_d_model:
        chosen["lr"] = policy.lr
    return {name: value for name, value in chosen.items() if name not in explicit}


def budget_text_bytes(time_budget: float, policy: BudgetPolicy = BudgetPolicy()) -> float:
    """The bytes of training text a run of `time_budget` seconds trains on at the policy's planning speed."""
    return time_budget * policy.tokens_per_second * policy.bytes_per_token


def budget_sample_bytes(time_budget: float | None, policy: BudgetPolicy = BudgetPolicy()) -> int | None:
    """The most training text a run of `time_budget` seconds tokenizes (policy.sample_passes times what it trains
    on), None without a budget: tokenizing all of a huge tree would spend the budget before the first step."""
    if time_budget is None:
        return None
    return int(policy.sample_passes * budget_text_bytes(time_budget, policy))


@dataclass(frozen=True)
class FinetunePolicy:
    """The settings a fine-tuning run (`cllm train --base`) starts from, where the user did not set them.

    A short warm-up (the base's weights are not random) and replayed base-corpus text, so that the workspace does
    not erase the C the base knows; a budget that would pass over the workspace more than `max_epochs` times
    replays more base text instead (up to `max_replay`). See docs/decisions.md, "Fine-tuning a base"."""

    lr: float = 5e-4
    warmup_steps: int = 20
    max_epochs: float = 4.0
    max_replay: float = 0.8


# what finetune_defaults may choose
FINETUNE_FIELDS = ("lr", "warmup_steps", "epochs", "grad_accum", "dropout", "replay_fraction")


def finetune_defaults(train_bytes: int, time_budget: float | None, model: ModelConfig, train: TrainConfig,
                      explicit: Collection[str] = (), policy: FinetunePolicy = FinetunePolicy()) -> dict[str, Any]:
    """The FINETUNE_FIELDS a fine-tuning run on `train_bytes` of workspace text should use, leaving out `explicit`:
    the policy's rate and warm-up; with a budget, the replay share and the budget's epochs, accumulation, dropout."""
    replay = train.replay_fraction
    if "replay_fraction" not in explicit:
        replay = max(replay, budget_replay(train_bytes, time_budget, policy))
    budget = budget_defaults(int(train_bytes / (1.0 - replay)), time_budget, model, train, explicit)
    chosen = {"lr": policy.lr, "warmup_steps": policy.warmup_steps,
              **{name: budget[name] for name in ("epochs", "grad_accum", "dropout") if name in budget}}
    if time_budget is not None:
        chosen["replay_fraction"] = replay
    return {name: value for name, value in chosen.items() if name not in explicit}


def budget_replay(train_bytes: int, time_budget: float | None, policy: FinetunePolicy = FinetunePolicy(),
                  budget: BudgetPolicy = BudgetPolicy()) -> float:
    """The share of a fine-tuning stream that base text must fill so that `time_budget` seconds pass over
    `train_bytes` of workspace text about policy.max_epochs times (0 when the budget covers no more than that)."""
    if time_budget is None:
        return 0.0
    workspace_share = policy.max_epochs * max(1, train_bytes) / budget_text_bytes(time_budget, budget)
    return min(policy.max_replay, max(0.0, 1.0 - workspace_share))


@dataclass(frozen=True)
class PretrainPolicy:
    """How `cllm pretrain` turns the machine's C into a base model's corpus (engine/train/pretrain.py)."""

    roots: tuple[str, ...] = ("/usr/include", "/usr/local/include", "/usr/src")  # scanned when no PATH is given
    budget_epochs: float = 2.0  # with a time budget, the corpus is sampled to about this many times what it sees
    max_val_bytes: int = 400_000  # held-out text: validation passes stay short on a large corpus
    mixture_val_bytes: int = 150_000  # held-out text the base's mixture weights are fitted on ...
    mixture_workspace_bytes: int = 1_500_000  # ... with a 5-gram and match index over this much related text


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return asdict(config)


def from_dict(cls: type, data: dict[str, Any]):
    """Build a config dataclass from a dict, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    return cls(**values)
