"""Training events as LSP progress messages (server/relay.py); the relay itself runs in tests/e2e."""

from __future__ import annotations

from cllm.server.relay import progress_message


def test_progress_messages_read_like_the_issue():
    live = {"epoch": 3, "epochs": 10, "loss": 2.4137, "tokensPerSecond": 3140.0}
    assert progress_message(live) == "epoch 3/10 · loss 2.41 · 3.1k tok/s"
    assert progress_message({"epoch": 1, "epochs": 2, "tokensPerSecond": 950}) == "epoch 1/2 · 950 tok/s"
    assert progress_message({}) == "starting"
