"""Typed training events and checkpoint training metadata: the one contract between the engine and its faces.

The trainer hands these records to its `on_event` callback, `cllm train --json` writes each as a JSON line and the
server reads them back with `event_from_json`; the checkpoint loader reads TrainingMetadata with the same
`from_json`, so there is one schema (docs/protocol.md). `from_json` checks every field's type (Annotated checks
such as `Count` and `OrAbsent` add constraints) and names the bad field; unknown keys are ignored and every
metadata field is optional, so that older and newer files load. Keys are snake_case until `to_wire` turns them
into camelCase for editors and browsers.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Annotated, Any, ClassVar, TypeVar

from .config import TrainConfig
from .errors import CllmError

R = TypeVar("R", bound="_Record")
C = TypeVar("C")
T = TypeVar("T")


class EventError(CllmError, ValueError):
    """A training event or training metadata without the contract's shape; the message names the bad field."""


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


# -- checks beyond a Python type, carried by typing.Annotated: each is called as check(decoded value, path) ----


def _not_negative(value: int, path: str) -> None:
    if value < 0:
        raise EventError(f"field {path!r} must be a whole number >= 0, got {_describe(value)}")


def _not_null(value: Any, path: str) -> None:
    if value is None:
        raise EventError(f"field {path!r} must not be null (a field without a value is left out)")


Count = Annotated[int, _not_negative]  # a size, count, step or position: a whole number >= 0
OrAbsent = Annotated[T | None, _not_null]  # None when the JSON lacks the field; null itself is refused


def _decode(kind: Any, value: Any, path: str) -> Any:
    """`value` (parsed JSON) at field `path` checked against the annotation `kind`; nested records are built."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin is Annotated:
        value = _decode(args[0], value, path)
        for check in args[1:]:
            check(value, path)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        # Of several kinds (a LossPoint: a bare loss or a [step, loss] pair) the first that fits; else the last
        # one's error, so an annotation lists its most specific kind last.
        *others, last = [arg for arg in args if arg is not type(None)]
        for inner in others:
            try:
                return _decode(inner, value, path)
            except EventError:
                pass
        return _decode(last, value, path)
    if kind in _KIND_NAMES:
        number = kind is float and isinstance(value, int)  # an integral float may arrive as 2
        if isinstance(value, bool) is not (kind is bool) or not (isinstance(value, kind) or number):
            raise EventError(f"field {path!r} must be {_KIND_NAMES[kind]}, got {_describe(value)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise EventError(f"field {path!r} must be a list, got {_describe(value)}")
        return [_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise EventError(f"field {path!r} must be a list of {len(args)} items, got {_describe(value)}")
        return tuple(_decode(arg, item, f"{path}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise EventError(f"field {path!r} must be an object, got {_describe(value)}")
        return {key: _decode(args[1], item, f"{path}.{key}") for key, item in value.items()}
    if isinstance(kind, type) and issubclass(kind, _Record):
        return _build(kind, value, path)
    raise TypeError(f"no JSON reading for {kind!r}")  # a programming error in this module, not bad input


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The field annotations of dataclass `cls`, with their Annotated checks."""
    return typing.get_type_hints(cls, include_extras=True)


def _build(cls: type[C], data: Any, path: str) -> C:
    """The dataclass `cls` from the JSON object `data` at `path` ("" at the top), every field decoded."""
    if not isinstance(data, dict):
        raise EventError(f"field {path!r} must be an object, got {_describe(data)}" if path
                         else f"must be an object, got {_describe(data)}")
    values = {}
    for f in fields(cls):
        where = f"{path}.{f.name}" if path else f.name
        if f.name in data:
            values[f.name] = _decode(_hints(cls)[f.name], data[f.name], where)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise EventError(f"field {where!r} is missing")
    return cls(**values)


def config_from_json(cls: type[C], data: Any, path: str) -> C:
    """The engine/config.py dataclass `cls` (ModelConfig, TrainConfig) from the JSON object at `path`: each
    field it knows of its annotated type, then its own validate(); EventError naming the field otherwise."""
    config = _build(cls, data, path)
    try:
        config.validate()
    except ValueError as exc:
        raise EventError(f"field {path!r}: {exc}") from None
    return config


def _left_out(record: Any, name: str) -> bool:
    """True for an OrAbsent field holding None: its JSON leaves the key out (null would be refused)."""
    return getattr(record, name) is None and _not_null in getattr(_hints(type(record))[name], "__metadata__", ())


def _encode(value: Any, finite: bool) -> Any:
    """JSON-ready form of a record's value; with `finite`, NaN and infinities become None (strict JSON)."""
    if is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name), finite) for f in fields(value) if not _left_out(value, f.name)}
    if isinstance(value, (list, tuple)):
        return [_encode(item, finite) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item, finite) for key, item in value.items()}
    if finite and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class _Record:
    """A JSON object with typed fields: to_json() and from_json() for every record of this module."""

    _FINITE: ClassVar[bool] = True  # write non-finite floats as null (events go through strict JSON parsers)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict with its snake_case field names."""
        return _encode(self, self._FINITE)

    @classmethod
    def from_json(cls: type[R], data: Any, path: str = "") -> R:
        """The record from parsed JSON; EventError naming the bad field. `path` places the record in a larger
        document ("metadata"), so that errors name fields by their full path ('metadata.files')."""
        if path:
            return _build(cls, data, path)
        try:
            return _build(cls, data, "")
        except EventError as exc:
            raise EventError(f"{cls._label()}: {exc}") from None

    @classmethod
    def _label(cls) -> str:
        return cls.__name__


@dataclass(frozen=True)
class _Event(_Record):
    """A training event: its JSON carries its kind in "event"."""

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **super().to_json()}

    @classmethod
    def _label(cls) -> str:
        return f"{cls.kind} event"

    @classmethod
    def from_json(cls: type[R], data: Any, path: str = "") -> R:
        if isinstance(data, dict) and data.get("event") != cls.kind:
            raise EventError(f"expected a {cls.kind!r} event, got {data.get('event')!r}")
        return super().from_json(data, path)


# -- the records inside events and metadata ----------------------------------------------------------------


@dataclass(frozen=True)
class SphereRecord(_Record):
    """One worker sphere's share of one optimizer step (engine/train/spheres.py, or a Ray actor of engine/train/cluster.py)."""

    id: int
    sequences: int  # sequences of its shards over the step's micro-batches
    tokens: int  # target tokens of those sequences
    busy: float  # seconds it computed
    wait: float  # seconds of the parallel phase it did not compute
    loss: float | None  # mean nats per target token (None when not a finite number)
    node: str = ""  # the Ray node that ran it (engine/train/cluster.py); "" on threads
    transfer: float = 0.0  # seconds moving its weights and shard in and its gradient out (Ray only)


@dataclass(frozen=True)
class RunSettings(_Record):
    """The optimisation settings of a run, as the start event reports them."""

    batch_size: int
    seq_len: int
    grad_accum: int
    lr: float
    warmup_steps: int
    warmup_fraction: float
    weight_decay: float
    dropout: float
    time_budget: float | None
    replay_fraction: float = 0.0  # share of the training stream replayed from the base's corpus (fine-tuning)


@dataclass(frozen=True)
class RunStats(_Record):
    """Averages of a run's steps: throughput, load balance and synchronisation cost."""

    tokens_per_second: float  # target tokens over the summed step time
    load_imbalance: float  # mean over steps of max/mean thread busy time minus 1
    sync_overhead: float  # share of step time the threads did not compute (waits and the reduction)
    step_ms: float  # mean milliseconds per optimizer step


@dataclass(frozen=True)
class ResumePosition(_Record):
    """Where a run stopped, so that resuming continues it exactly."""

    epoch: Count
    batch: Count  # optimizer steps done within `epoch`
    step: Count
    tokens: Count
    best_epoch_val: float | None  # best epoch-end validation loss (None: none yet)
    bad_epochs: Count  # epochs since it improved (early-stopping patience)
    schedule_steps: Count | None = None  # the learning-rate schedule's length once fitted to a time budget


@dataclass(frozen=True)
class SkippedFile(_Record):
    """A file the corpus scan left out, and why (engine/data/corpus.py's reasons: "binary", "secret (...)", ...)."""

    path: str
    reason: str


@dataclass(frozen=True)
class ManifestEntry(_Record):
    """One file a base model learned from (engine/train/pretrain.py): its absolute path and the sha256 of its bytes."""

    path: str
    sha256: str


@dataclass(frozen=True)
class BaseRecord(_Record):
    """The base model a fine-tuned model started from (engine/train/base.py)."""

    path: str  # the base's model file when fine-tuning began
    weights_sha256: str  # of the base's weights (checkpoint.weights_sha256): which base, whatever its file name


# -- the training events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseEvent(_Event):
    """Progress of a phase: "scan" (files), "tokenizer" and "tokenize" (bytes), "train" (steps: sent once). At most
    about four per second per phase, always one with done == total at its end."""

    kind: ClassVar[str] = "phase"
    phase: str  # scan, tokenizer, tokenize or train
    done: int
    total: int | None  # None while unknown (a scan outside git does not know how many files it will see)
    unit: str  # files, bytes or steps



@dataclass(frozen=True)
class StartEvent(_Event):
    """The data and the plan, once the corpus is encoded and before the first step."""

    kind: ClassVar[str] = "start"
    workspace: str | None  # the folder trained on (None for documents given directly)
    files: int
    skipped: list[SkippedFile]  # files the corpus scan left out, each with its reason
    corpus: dict[str, int]  # engine/data/corpus.py stats: files, c_files, h_files, lines, bytes
    train_files: int
    val_files: int  # held-out files
    tokens: int  # training tokens
    val_tokens: int
    vocab_size: int
    params: int  # model parameters
    epochs: int
    steps_per_epoch: int
    total_steps: int  # the schedule's length (refitted later under a time budget)
    step: int  # steps already done (a resumed run)
    spheres: int
    threads: int
    resumed_from: str | None
    settings: RunSettings
    auto: list[str]  # settings the time-budget policy chose (ModelConfig/TrainConfig field names)


@dataclass(frozen=True)
class StepEvent(_Event):
    """An optimizer step (at most about four per second: the steps between are folded into the next one)."""

    kind: ClassVar[str] = "step"
    epoch: int  # 1-based epoch running
    epochs: int
    step: int  # optimizer steps done
    total_steps: int
    loss: float | None  # the step's mean training loss in nats per token (None when not a finite number)
    lr: float
    tokens: int  # training tokens seen so far
    tokens_per_second: float  # since the previous step event
    load_imbalance: float  # this step's max/mean thread busy time minus 1
    sync_overhead: float  # this step's share of time the threads did not compute
    threads: int
    spheres: list[SphereRecord]
    seconds_remaining: float  # estimate: the schedule's remaining steps at the recent step time, within the time budget


@dataclass(frozen=True)
class EpochEvent(_Event):
    """An epoch's end with its validation (the checkpoint's val_history holds these without the "event" key)."""

    kind: ClassVar[str] = "epoch"
    epoch: int  # epochs done
    step: int
    train_loss: float | None  # mean training loss of the epoch
    val_loss: float | None  # None without held-out files
    val_bits_per_byte: float | None


@dataclass(frozen=True)
class CheckpointEvent(_Event):
    """The model file was written."""

    kind: ClassVar[str] = "checkpoint"
    path: str


@dataclass(frozen=True)
class DoneEvent(_Event):
    """The run's end; train() returns it and `cllm train --json` prints it last."""

    kind: ClassVar[str] = "done"
    checkpoint: str  # the model file
    steps: int
    tokens: int
    seconds: float
    tokens_per_second: float  # run average (RunStats)
    final_loss: float | None  # the last step's training loss
    val_bits_per_byte: float | None  # of the kept (best) weights
    threads: int
    spheres: int
    load_imbalance: float
    sync_overhead: float
    stop_reason: str  # completed, early_stopping, max_steps, time_budget or cancelled
    epochs: int  # epochs completed
    line_exact_match: float | None  # held-out line completions exactly right (TrainingMetadata.line_exact_match)
    corpus_fraction: float | None = None  # share of the training windows this run's steps covered (at most 1)
    corpus_seen: float | None = None  # share of the training text in files the model's runs drew windows from


@dataclass(frozen=True)
class FailedEvent(_Event):
    """`cllm train --json` could not start or finish the run (its JSON kind is "error")."""

    kind: ClassVar[str] = "error"
    message: str


TrainingEvent = PhaseEvent | StartEvent | StepEvent | EpochEvent | CheckpointEvent | DoneEvent | FailedEvent
EVENT_TYPES: dict[str, type[_Event]] = {cls.kind: cls for cls in typing.get_args(TrainingEvent)}


def event_from_json(data: Any) -> TrainingEvent:
    """The training event of a parsed JSON object, by its "event" kind; EventError when it is not one."""
    if not isinstance(data, dict):
        raise EventError(f"a training event must be an object, got {_describe(data)}")
    cls = EVENT_TYPES.get(data.get("event"))
    if cls is None:
        raise EventError(f"unknown training event {data.get('event')!r} (expected one of {', '.join(EVENT_TYPES)})")
    return cls.from_json(data)


# -- the checkpoint's training metadata ---------------------------------------------------------------------


def _valid_train_config(value: dict[str, Any], path: str) -> None:
    config_from_json(TrainConfig, value, path)


TrainConfigJson = Annotated[dict[str, Any], _valid_train_config]  # a TrainConfig's fields; unknown keys pass
LossPoint = float | tuple[Count, float]  # (step, training loss) as training records it; a bare loss in older files


@dataclass(frozen=True)
class TrainingMetadata(_Record):
    """What a model file records about its training (every field optional: older models lack some)."""

    _FINITE: ClassVar[bool] = False  # stored as written; the checkpoint's JSON keeps NaN

    train_config: TrainConfigJson = field(default_factory=dict)  # engine/config.py TrainConfig as a dict
    workspace: str | None = None
    files: OrAbsent[Count] = None
    train_files: list[str] = field(default_factory=list)  # paths relative to the workspace
    val_files: list[str] = field(default_factory=list)
    tokens: OrAbsent[Count] = None
    val_tokens: OrAbsent[Count] = None
    val_bytes: OrAbsent[Count] = None
    epochs: OrAbsent[Count] = None  # epochs completed
    steps: OrAbsent[Count] = None
    trained_tokens: OrAbsent[Count] = None
    loss_history: list[LossPoint] = field(default_factory=list)  # (step, training loss), at most ~200
    val_history: list[EpochEvent] = field(default_factory=list)
    val_bits_per_byte: float | None = None  # of the stored weights
    val_loss: float | None = None
    start_val_loss: float | None = None  # --only-better: of the weights the run went on from, on the same windows
    spheres: OrAbsent[Count] = None
    threads: OrAbsent[Count] = None
    sphere_stats: OrAbsent[RunStats] = None
    created: OrAbsent[str] = None  # ISO 8601, UTC
    seq_len: OrAbsent[Count] = None
    context: OrAbsent[Count] = None  # positions the weights were trained at: seq_len or the longer window of
    # the weights the run went on from (a base's, a continued model's); older models lack it
    mixture: dict[str, Any] | None = None  # cache-mixture weights (engine/complete/mixture.py reads them)
    fim: str | None = None  # the FIM prompt format trained with, None without FIM
    line_exact_match: float | None = None  # share of held-out line completions exactly right, by the shipped completer
    thresholds: dict[str, float] | None = None  # confidence to show a suggestion, per eagerness (confidence.py)
    resume: OrAbsent[ResumePosition] = None
    manifest: list[ManifestEntry] = field(default_factory=list)  # a base model's corpus (engine/train/pretrain.py)
    base: BaseRecord | None = None  # the base a fine-tuned model started from
    base_share: float | None = None  # of the base's weights blended back into the stored ones after fine-tuning
    replay_files: list[str] = field(default_factory=list)  # base-corpus files replayed while fine-tuning
    generation: OrAbsent[Count] = None  # runs this model has been trained in: 1, plus one per continued run
    trained_before: dict[str, Count] = field(default_factory=dict)  # earlier runs' training files -> last generation

    @classmethod
    def _label(cls) -> str:
        return "checkpoint metadata"

    @property
    def last_loss(self) -> float | None:
        """The last training loss of loss_history, None when empty."""
        if not self.loss_history:
            return None
        last = self.loss_history[-1]
        return last[1] if isinstance(last, tuple) else last


# -- the wire --------------------------------------------------------------------------------------------


def camel_case(name: str) -> str:
    """snake_case -> camelCase: "tokens_per_second" -> "tokensPerSecond"; names without "_" are unchanged."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def to_wire(value: Any) -> Any:
    """A JSON-ready value with every object key in camelCase, as LSP clients and browsers receive it; applied once,
    where JSON leaves the server (values are not changed)."""
    if isinstance(value, dict):
        return {camel_case(key) if isinstance(key, str) else key: to_wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_wire(item) for item in value]
    return value
