"""server/learning.py: the record of what background learning learned (learning.json), read by a Workspace opened
on the model folder; the background runs themselves are driven end to end in tests/e2e/test_lsp_learning.py."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cllm.server.learning import LEARNED_FILE, read_learned, write_learned
from cllm.server.workspace import Workspace

AT = datetime(2026, 12, 7, 14, 5, 9, tzinfo=timezone(timedelta(hours=1)))


def test_the_record_keeps_the_saves_and_the_time_of_the_last_swap(tmp_path: Path):
    path = tmp_path / LEARNED_FILE
    assert read_learned(path) == (0, None)
    write_learned(path, 3, AT)
    assert read_learned(path) == (3, AT)
    write_learned(path, 0, None)
    assert read_learned(path) == (0, None)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"saves": -1, "last_at": null}', '{"saves": true, "last_at": null}',
                                  '{"saves": 2}', '{"saves": 2, "last_at": "yesterday"}', '{"saves": 2, "last_at": 5}'])
def test_a_damaged_record_counts_from_zero_with_a_log_line(tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture):
    path = tmp_path / LEARNED_FILE
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="cllm.server.learning"):
        assert read_learned(path) == (0, None)
    assert str(path) in caplog.text and "counting saves from zero" in caplog.text


def test_a_record_that_cannot_be_written_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    (tmp_path / LEARNED_FILE).mkdir()
    with caplog.at_level(logging.WARNING, logger="cllm.server.learning"):
        write_learned(tmp_path / LEARNED_FILE, 1, AT)
    assert "cannot save the learning record" in caplog.text


def test_a_workspace_says_what_its_model_folder_learned_before_a_restart(tmp_path: Path):
    models, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    models.mkdir()
    write_learned(models / LEARNED_FILE, 3, AT)
    workspace = Workspace(tmp_path / "src", model_dir=models)
    try:
        learning = workspace.status()["learning"]
        assert learning["saves"] == 3 and learning["lastAt"] == "2026-12-07T14:05:09+01:00"
        assert learning["summary"] == "learned from 3 saves, last at 14:05"
        workspace.update_settings({"modelDir": str(elsewhere)})
        assert workspace.status()["learning"]["saves"] == 3  # the explicit model_dir wins over the setting
    finally:
        workspace.close()
    moved = Workspace(tmp_path / "src", {"modelDir": str(models)})
    try:
        moved.update_settings({"modelDir": str(elsewhere)})
        assert moved.status()["learning"]["summary"] == "learned from 0 saves"
    finally:
        moved.close()
