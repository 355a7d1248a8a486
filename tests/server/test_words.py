"""server/words.py: the time left and the exact match in the words every progress surface uses."""

from __future__ import annotations

from cllm.server.words import exact_match, time_left


def test_time_left_rounds_up_to_whole_minutes_and_hours():
    assert time_left(0) == time_left(59.9) == "<1 min left"
    assert time_left(60) == "~1 min left"
    assert time_left(412.5) == "~7 min left"
    assert time_left(3600) == "~1 h 0 min left"
    assert time_left(7500) == "~2 h 5 min left"


def test_exact_match_reads_as_a_whole_percentage():
    assert exact_match(0.38) == "38 % lines exact"
    assert exact_match(0.0) == "0 % lines exact"
    assert exact_match(1.0) == "100 % lines exact"
