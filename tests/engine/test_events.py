"""engine/events.py: every event and the checkpoint metadata survive JSON, bad shapes name their field, the wire
is camelCase, and the VS Code extension's status.ts reads the names the events have."""

import json
import math
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from cllm.engine.events import (EVENT_TYPES, BaseRecord, CheckpointEvent, DoneEvent, EpochEvent, EventError,
                                FailedEvent, ManifestEntry, PhaseEvent, ResumePosition, RunSettings, RunStats, SkippedFile,
                                SphereRecord, StartEvent, StepEvent, TrainingMetadata, camel_case, event_from_json, to_wire)

STATUS_TS = Path(__file__).resolve().parents[2] / "vscode-extension" / "src" / "status.ts"

SPHERES = [SphereRecord(id=i, sequences=3, tokens=381, busy=0.12, wait=0.01 * i, loss=4.5) for i in range(3)]
EPOCH = EpochEvent(epoch=1, step=40, train_loss=4.2, val_loss=4.4, val_bits_per_byte=2.6)
EVENTS = [
    StartEvent(workspace="/ws", files=8, skipped=[SkippedFile(path="blob.h", reason="binary")],
               corpus={"files": 8, "c_files": 6, "h_files": 2, "lines": 900, "bytes": 30_000},
               train_files=7, val_files=1, tokens=12_000, val_tokens=1_500, vocab_size=512, params=100_000, epochs=3,
               steps_per_epoch=40, total_steps=120, step=0, spheres=12, threads=2, resumed_from=None,
               settings=RunSettings(batch_size=32, seq_len=128, grad_accum=1, lr=2e-3, warmup_steps=100,
                                    warmup_fraction=0.05, weight_decay=0.1, dropout=0.0, time_budget=None,
                                    replay_fraction=0.25),
               auto=["grad_accum", "vocab_size"]),
    StepEvent(epoch=1, epochs=3, step=5, total_steps=120, loss=5.1, lr=1e-4, tokens=20_000, tokens_per_second=3000.5,
              load_imbalance=0.02, sync_overhead=0.05, threads=2, spheres=SPHERES, seconds_remaining=412.5),
    EPOCH,
    EpochEvent(epoch=2, step=80, train_loss=4.0, val_loss=None, val_bits_per_byte=None),
    CheckpointEvent(path="/models/model.cllm"),
    DoneEvent(checkpoint="/models/model.cllm", steps=120, tokens=480_000, seconds=150.2, tokens_per_second=3196.0,
              final_loss=3.9, val_bits_per_byte=None, threads=2, spheres=12, load_imbalance=0.02,
              sync_overhead=0.05, stop_reason="time_budget", epochs=3, line_exact_match=0.38, corpus_fraction=0.25),
    FailedEvent(message="no C files (.c, .h) to learn from in /ws"),
    PhaseEvent(phase="scan", done=120, total=None, unit="files"),
    PhaseEvent(phase="tokenize", done=30_000, total=30_000, unit="bytes"),
]
METADATA = TrainingMetadata(
    train_config={"epochs": 10, "lr": 0.002, "max_steps": None}, workspace="/ws", files=8, train_files=["a.c", "b.h"],
    val_files=["c.c"], tokens=12_000, val_tokens=1_500, val_bytes=4_000, epochs=2, steps=80, trained_tokens=320_000,
    loss_history=[(40, 4.5), (80, 4.0)], val_history=[EPOCH], val_bits_per_byte=2.6, val_loss=4.4, spheres=12,
    threads=2, sphere_stats=RunStats(tokens_per_second=3000.0, load_imbalance=0.02, sync_overhead=0.05, step_ms=40.0),
    created="2026-01-01T00:00:00+00:00", seq_len=128, mixture={"version": 1, "weights": [[0.5, 0.25, 0.25]]},
    fim="spm", line_exact_match=0.38, resume=ResumePosition(epoch=2, batch=0, step=80, tokens=320_000, best_epoch_val=4.4, bad_epochs=0,
                                     schedule_steps=None),
    manifest=[ManifestEntry(path="/usr/include/stdio.h", sha256="ab" * 32)],
    base=BaseRecord(path="/cache/cllm/base.cllm", weights_sha256="cd" * 32), replay_files=["usr/include/stdio.h"],
)


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: event.kind)
def test_every_event_survives_json(event):
    text = json.dumps(event.to_json())
    assert json.loads(text)["event"] == event.kind
    assert event_from_json(json.loads(text)) == event
    assert type(event).from_json(json.loads(text)) == event


def test_every_event_kind_is_covered():
    assert {event.kind for event in EVENTS} == set(EVENT_TYPES) == {"phase", "start", "step", "epoch", "checkpoint",
                                                                    "done", "error"}


def test_training_metadata_survives_json_and_keeps_the_stored_shape():
    stored = json.loads(json.dumps(METADATA.to_json()))
    assert TrainingMetadata.from_json(stored) == METADATA
    assert stored["loss_history"] == [[40, 4.5], [80, 4.0]]
    assert "event" not in stored["val_history"][0], "val_history holds epoch records, not events"
    assert METADATA.last_loss == 4.0


def test_metadata_of_an_older_model_without_some_fields_still_reads():
    old = TrainingMetadata.from_json({"files": 3, "loss_history": [[1, 5.0]], "workspace": "/ws", "extra": True})
    assert old.files == 3 and old.last_loss == 5.0 and old.resume is None and old.mixture is None
    assert TrainingMetadata.from_json({}).last_loss is None


def test_bare_losses_of_older_files_read_and_left_out_fields_stay_out():
    old = TrainingMetadata.from_json({"loss_history": [5.2, [3, 4.0], 3.5], "workspace": None})
    assert old.loss_history == [5.2, (3, 4.0), 3.5] and old.last_loss == 3.5 and old.workspace is None
    assert "files" not in old.to_json() and old.to_json()["workspace"] is None, "absent is not null"
    assert TrainingMetadata.from_json(old.to_json()) == old


def test_a_field_path_places_the_record_in_a_larger_document():
    with pytest.raises(EventError, match=re.escape("field 'metadata.resume.step' must be a whole number >= 0")) as err:
        TrainingMetadata.from_json({"resume": {**METADATA.to_json()["resume"], "step": -1}}, "metadata")
    assert not str(err.value).startswith("checkpoint metadata")
    with pytest.raises(EventError, match=re.escape("field 'metadata' must be an object, got list [1]")):
        TrainingMetadata.from_json([1], "metadata")


def test_non_finite_numbers_are_null_in_event_json():
    diverged = replace(EVENTS[1], loss=math.nan, spheres=[replace(SPHERES[0], loss=math.inf)])
    data = json.loads(json.dumps(diverged.to_json(), allow_nan=False))
    assert data["loss"] is None and data["spheres"][0]["loss"] is None
    assert event_from_json(data).loss is None


@pytest.mark.parametrize("change, message", [
    ({"step": "5"}, "step event: field 'step' must be a whole number, got str '5'"),
    ({"step": True}, "field 'step' must be a whole number, got bool True"),
    ({"loss": [1.0]}, "field 'loss' must be a number"),
    ({"spheres": [{"id": 0}]}, "field 'spheres[0].sequences' is missing"),
    ({"spheres": {"id": 0}}, "field 'spheres' must be a list"),
])
def test_a_bad_step_event_names_its_field(change, message):
    with pytest.raises(EventError, match=re.escape(message)):
        event_from_json({**EVENTS[1].to_json(), **change})


def test_a_missing_field_or_an_unknown_kind_is_refused():
    data = EVENTS[5].to_json()
    del data["stop_reason"]
    with pytest.raises(EventError, match="done event: field 'stop_reason' is missing"):
        event_from_json(data)
    with pytest.raises(EventError, match="unknown training event 'restart'"):
        event_from_json({"event": "restart"})
    with pytest.raises(EventError, match="must be an object"):
        event_from_json([1, 2])
    with pytest.raises(EventError, match="expected a 'done' event, got 'step'"):
        DoneEvent.from_json(EVENTS[1].to_json())


@pytest.mark.parametrize("change, message", [
    ({"loss_history": [[1, "low"]]}, "checkpoint metadata: field 'loss_history[0][1]' must be a number"),
    ({"loss_history": [[1, 2.0, 3]]}, "field 'loss_history[0]' must be a list of 2 items"),
    ({"resume": {"epoch": 1}}, "field 'resume.batch' is missing"),
    ({"sphere_stats": {**METADATA.to_json()["sphere_stats"], "step_ms": None}}, "field 'sphere_stats.step_ms'"),
    ({"train_files": "a.c"}, "field 'train_files' must be a list"),
    ({"files": 8.5}, "field 'files' must be a whole number"),
    ({"files": -1}, "field 'files' must be a whole number >= 0, got int -1"),
    ({"files": None}, "field 'files' must not be null"),
    ({"resume": {**METADATA.to_json()["resume"], "batch": -2}}, "field 'resume.batch' must be a whole number >= 0"),
    ({"loss_history": [[-1, 2.0]]}, "field 'loss_history[0][0]' must be a whole number >= 0"),
    ({"loss_history": ["low"]}, "field 'loss_history[0]' must be a list of 2 items"),
    ({"train_config": {"lr": "fast"}}, "field 'train_config.lr' must be a number"),
    ({"train_config": {"epochs": 0}}, "field 'train_config': epochs must be positive"),
])
def test_bad_metadata_names_its_field(change, message):
    with pytest.raises(EventError, match=re.escape(message)):
        TrainingMetadata.from_json({**METADATA.to_json(), **change})


def test_the_wire_is_camel_case_keys_with_values_untouched():
    assert camel_case("tokens_per_second") == "tokensPerSecond" and camel_case("loss") == "loss"
    wire = to_wire(EVENTS[0].to_json())
    assert wire["totalSteps"] == 120 and wire["settings"]["batchSize"] == 32 and wire["corpus"]["cFiles"] == 6
    assert wire["auto"] == ["grad_accum", "vocab_size"], "values are not names to convert"
    assert to_wire(wire) == wire


def _interfaces(source: str) -> dict[str, set[str]]:
    """Field names of each `export interface Name ... { ... }` in a TypeScript file."""
    found = {}
    for match in re.finditer(r"export interface (\w+)[^{]*\{(.*?)\n\}", source, re.DOTALL):
        body = re.sub(r"/\*.*?\*/", "", match.group(2), flags=re.DOTALL)
        found[match.group(1)] = set(re.findall(r"^\s*(\w+)\??\s*:", body, re.MULTILINE))
    return found


def _wire_fields(*records) -> set[str]:
    return {camel_case(f.name) for record in records for f in fields(record)}


def test_the_vscode_status_types_read_the_events_field_names():
    """status.ts declares what the extension reads from cllm/sphereActivity and cllm.status; every field that
    comes from an event or the metadata must be one of their camelCase names (the rest are named here)."""
    ts = _interfaces(STATUS_TS.read_text(encoding="utf-8"))
    assert ts["SphereActivity"] and ts["SphereActivity"] <= _wire_fields(SphereRecord)
    assert ts["Activity"] - {"state", "reason"} <= _wire_fields(StepEvent)
    assert {"totalSteps", "tokensPerSecond", "spheres"} <= ts["Activity"]
    status_only = {"state", "startedAt", "finishedAt", "percent", "options"}
    assert ts["TrainingInfo"] - status_only <= _wire_fields(StartEvent, RunSettings, StepEvent, EpochEvent, DoneEvent)
    assert {"secondsRemaining"} <= ts["Activity"] and {"lineExactMatch", "skipped", "timeBudget"} <= ts["TrainingInfo"]
    model_only = {"present", "serving", "path", "config", "trainedAt", "lastLoss"}  # trainedAt: created; lastLoss: last_loss
    assert ts["ModelInfo"] - model_only <= _wire_fields(TrainingMetadata)
    assert {"valBitsPerByte", "lineExactMatch", "files", "epochs", "serving", "base"} <= ts["ModelInfo"]
    assert ts["BaseInfo"] == _wire_fields(BaseRecord)
