"""The server's typed records (server/records.py) give the JSON the editors and the dashboard read."""

from __future__ import annotations

from cllm.engine.events import TrainingMetadata
from cllm.server.records import (ModelLoaded, ModelSummary, NoModel, TrainingFinished, TrainingStarted,
                                 TrainingStatus, WorkspaceStatus)


def test_the_training_status_leaves_out_what_no_event_gave_yet_and_keeps_nulls():
    status = TrainingStatus(state="training", job="train", options={"time_budget": 60.0})
    assert status.to_json() == {"state": "training", "job": "train", "options": {"time_budget": 60.0}}
    status.update(time_budget=None, step=3)
    assert status.to_json()["time_budget"] is None and status.to_json()["step"] == 3
    assert TrainingStatus().to_json() == {"state": "idle"}


def test_the_status_object_is_camel_case_with_the_model_summary():
    summary = ModelSummary("base", "/m.cllm", TrainingMetadata(files=3, created="2026-01-01T00:00:00+00:00"),
                           {"vocab_size": 8, "d_model": 4, "layers": 1, "heads": 1, "ffn": 8, "max_seq_len": 16})
    status = WorkspaceStatus("/w", "/d", "transformer", summary, TrainingStatus()).to_json()
    assert status["modelDir"] == "/d" and status["training"] == {"state": "idle"}
    assert status["model"]["present"] is True and status["model"]["trainedAt"] == "2026-01-01T00:00:00+00:00"
    assert status["model"]["files"] == 3 and status["model"]["config"]["maxSeqLen"] == 16
    assert NoModel().to_json() == {"present": False}
    assert NoModel("/m.cllm", "bad").to_json() == {"present": False, "path": "/m.cllm", "error": "bad"}


def test_the_server_events_keep_their_names():
    assert TrainingStarted("pretrain", {"threads": 2}).to_json() == {"event": "training_started", "job": "pretrain",
                                                                    "options": {"threads": 2}}
    assert ModelLoaded("/m.cllm").to_json() == {"event": "model_loaded", "path": "/m.cllm"}
    assert TrainingFinished("train", "failed", "boom").to_json() == {"event": "training_finished", "job": "train",
                                                                    "state": "failed", "reason": "boom"}
