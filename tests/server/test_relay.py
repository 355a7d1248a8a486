"""Training events as LSP progress messages and cllm/sphereActivity payloads (server/relay.py); the relay itself
runs in tests/e2e."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from cllm.server.relay import done_message, progress_message, sphere_activity


def test_progress_messages_read_like_the_issue():
    live = {"epoch": 3, "epochs": 10, "loss": 2.4137, "tokensPerSecond": 3140.0}
    assert progress_message(live) == "epoch 3/10 · loss 2.41 · 3.1k tok/s"
    assert progress_message({"epoch": 1, "epochs": 2, "tokensPerSecond": 950}) == "epoch 1/2 · 950 tok/s"
    assert progress_message({}) == "starting"


def test_progress_messages_name_the_phase_before_the_first_step():
    assert progress_message({"phase": "scan", "done": 1200, "total": None, "unit": "files"}) == "scan 1,200 files"
    tokenize = {"phase": "tokenize", "done": 120_000_000, "total": 820_000_000, "unit": "bytes"}
    assert progress_message(tokenize) == "tokenize 120/820 MB"
    assert progress_message({**tokenize, "phase": "train", "epoch": 1, "epochs": 2}) == "epoch 1/2"


def test_progress_messages_say_the_time_left():
    live = {"epoch": 1, "epochs": 4, "loss": 3.0, "tokensPerSecond": 2000.0, "secondsRemaining": 412.5}
    assert progress_message(live) == "epoch 1/4 · loss 3.00 · 2.0k tok/s · ~7 min left"
    assert progress_message({"secondsRemaining": 5.0}) == "<1 min left"


def test_the_done_message_leads_with_the_held_out_exact_match():
    assert done_message({"lineExactMatch": 0.38, "valBitsPerByte": 2.054}) == "done · 38 % lines exact · 2.05 bits/byte"
    assert done_message({"lineExactMatch": None, "valBitsPerByte": None}) == "done"


def test_sphere_activity_carries_each_spheres_node_wait_and_transfer():
    """The status bar and Show Status say the spheres per node: the payload carries what they group by."""
    live = {"state": "training", "step": 4, "spheres": [
        {"id": 0, "busy": 0.02, "tokens": 64, "loss": 3.0, "node": "10.0.0.1", "wait": 0.005, "transfer": 0.001,
         "sequences": 2}, "not a sphere"]}
    payload = sphere_activity(SimpleNamespace(root=Path("/w")), live)
    assert payload["workspace"] == "file:///w" and payload["step"] == 4
    assert payload["spheres"] == [{"id": 0, "busy": 0.02, "tokens": 64, "loss": 3.0, "node": "10.0.0.1", "wait": 0.005,
                                   "transfer": 0.001}]
