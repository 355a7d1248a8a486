"""The acceptance counts (server/acceptance.py): what counts as taken, the file they are kept in, a damaged file."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import pytest

from cllm.server.acceptance import ACCEPTANCE_FILE, Acceptance, Report, parse_report


def counts(path: Path, day: date = date(2026, 12, 7)) -> Acceptance:
    return Acceptance(path / ACCEPTANCE_FILE, today=lambda: day)


def test_an_item_taken_in_part_then_whole_counts_as_accepted_with_its_characters_once(tmp_path: Path):
    acceptance = counts(tmp_path)
    first, second, _ = acceptance.shown(10), acceptance.shown(4), acceptance.shown(7)
    assert acceptance.partially_accepted(Report(first, 3))
    assert acceptance.to_json()["partially_accepted"] == 1
    assert acceptance.partially_accepted(Report(first, 2))
    assert acceptance.accepted(Report(first, 10))
    assert acceptance.partially_accepted(Report(second, 2))
    assert not acceptance.accepted(Report(first, 10)), "an item is taken whole once"
    assert not acceptance.partially_accepted(Report(first, 1)), "nothing is left of an item taken whole"
    assert acceptance.to_json() == {"shown": 3, "accepted": 1, "partially_accepted": 1, "acceptance_rate": 2 / 3,
                                    "characters_accepted": 12, "characters_today": 12}


def test_an_unknown_id_counts_with_the_reported_characters_and_partial_chars_stop_at_the_item_length(tmp_path: Path):
    acceptance = counts(tmp_path)
    assert acceptance.accepted(Report("from-before-a-restart", 6))
    item = acceptance.shown(4)
    assert acceptance.partially_accepted(Report(item, 9))
    assert not acceptance.partially_accepted(Report(item, 1))
    assert acceptance.to_json()["characters_accepted"] == 10
    assert not acceptance.partially_accepted(Report(acceptance.shown(3), 0))


def test_the_counts_survive_a_reload_and_todays_characters_start_again_each_day(tmp_path: Path):
    acceptance = counts(tmp_path)
    acceptance.accepted(Report(acceptance.shown(5), 5))
    acceptance.shown(8)
    acceptance.close()
    tomorrow = counts(tmp_path, date(2026, 12, 8))
    assert tomorrow.to_json() == {"shown": 2, "accepted": 1, "partially_accepted": 0, "acceptance_rate": 0.5,
                                  "characters_accepted": 5, "characters_today": 0}
    tomorrow.accepted(Report(tomorrow.shown(3), 3))
    assert tomorrow.to_json()["characters_today"] == 3
    assert json.loads((tmp_path / ACCEPTANCE_FILE).read_text())["day"] == "2026-12-08"


@pytest.mark.parametrize("damage", ["{not json", json.dumps({"version": 1, "shown": -1}), json.dumps([1, 2]),
                                    "\xff\xfe"])
def test_a_damaged_file_is_reset_with_a_log_line(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture):
    (tmp_path / ACCEPTANCE_FILE).write_text(damage, encoding="latin-1")
    with caplog.at_level(logging.WARNING, logger="cllm.server.acceptance"):
        acceptance = counts(tmp_path)
    assert acceptance.to_json()["shown"] == 0 and acceptance.to_json()["acceptance_rate"] is None
    assert any("counting again from zero" in record.message for record in caplog.records)
    acceptance.accepted(Report(acceptance.shown(2), 2))
    assert json.loads((tmp_path / ACCEPTANCE_FILE).read_text())["accepted"] == 1


@pytest.mark.parametrize("args, problem", [
    ((), "expected one object"),
    (("x",), "expected one object"),
    (({"id": "", "chars": 1},), "id must be"),
    (({"id": "a", "chars": -1},), "chars must be"),
    (({"id": "a", "chars": True},), "chars must be"),
    (({"id": "a", "chars": 1, "extra": 2},), "unknown argument 'extra'"),
    (({"id": "a", "chars": 1, "workspace": 3},), "workspace must be"),
])
def test_bad_reports_say_what_is_wrong(args: tuple, problem: str):
    assert problem in parse_report(args)


def test_a_report_names_its_workspace():
    assert parse_report(({"id": "a-1", "chars": 4, "workspace": "file:///w"},)) == Report("a-1", 4, "file:///w")
