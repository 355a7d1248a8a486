"""The confidence of a completion and the thresholds that decide which suggestions are shown."""

from __future__ import annotations

import numpy as np
import pytest

from cllm.engine.complete.confidence import (DEFAULT_THRESHOLDS, EAGERNESS, TARGET_PRECISION, fit_threshold,
                                             fit_thresholds, precision_lower_bound, shown_figures,
                                             thresholds_or_default, token_logprob)
from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.model.loaded import load_model


def _precision(confidences, exact, threshold) -> float:
    shown = np.asarray(confidences) >= threshold
    return float(np.asarray(exact)[shown].mean())


def _surer_is_righter(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidences = rng.random(n)
    return confidences, rng.random(n) < confidences  # surer suggestions are right more often


def test_without_a_margin_the_fitted_threshold_is_the_lowest_that_reaches_the_target():
    confidences, exact = _surer_is_righter(400)
    for target in (0.8, 0.6, 0.4):
        t = fit_threshold(confidences, exact, target, z=0.0)
        assert _precision(confidences, exact, t) >= target
        lower = confidences[confidences < t]
        assert all(_precision(confidences, exact, c) < target for c in lower)


def test_the_margin_asks_more_of_few_positions_than_of_many():
    few, few_exact = _surer_is_righter(60)
    many, many_exact = np.tile(few, 20), np.tile(few_exact, 20)  # the same shares, twenty times the evidence
    plain = fit_threshold(few, few_exact, 0.6, z=0.0)
    assert fit_threshold(few, few_exact, 0.6) > plain
    assert plain <= fit_threshold(many, many_exact, 0.6) < fit_threshold(few, few_exact, 0.6)
    t = fit_threshold(few, few_exact, 0.6)
    shown = few >= t
    assert precision_lower_bound(np.array([few_exact[shown].sum()]), np.array([shown.sum()]), 1.0)[0] >= 0.6


def test_the_lower_bound_of_a_precision():
    bound = precision_lower_bound(np.array([7.0, 70.0, 10.0]), np.array([10.0, 100.0, 10.0]), 1.0)
    assert bound[0] < bound[1] < 0.7 < bound[2] < 1.0  # more evidence, a tighter bound; never above all-right
    assert precision_lower_bound(np.array([7.0]), np.array([10.0]), 0.0)[0] == pytest.approx(0.7)


def test_ties_and_unreachable_targets():
    # a threshold shows every position tied with it: 0.5 shows all three, 2/3 right, so the 0.7 target needs 0.9
    assert fit_threshold([0.9, 0.5, 0.5], [True, True, False], 0.7, z=0.0) == 0.9
    assert fit_threshold([0.9, 0.5], [False, False], 0.4) == 1.0  # never right: only certain suggestions
    assert fit_threshold([0.9], [True], 0.7) == 1.0  # one right suggestion is not evidence of 70 %
    fitted = fit_thresholds([0.9, 0.7, 0.2, 0.1], [True, True, False, True], z=0.0)
    assert fitted == {"low": 0.7, "normal": 0.1, "high": 0.1}
    assert fit_thresholds([], []) is None
    assert fitted["low"] >= fitted["normal"] >= fitted["high"] and TARGET_PRECISION["low"] == 0.8


def test_models_without_thresholds_use_the_defaults():
    assert thresholds_or_default(None) == DEFAULT_THRESHOLDS
    assert thresholds_or_default({"low": 0.5}) == DEFAULT_THRESHOLDS  # incomplete: not trusted
    assert thresholds_or_default({"low": 0.5, "normal": 0.2, "high": 0.1})["normal"] == 0.2
    figures = shown_figures([0.9, 0.4, 0.05], [True, False, False], {"low": 0.5, "normal": 0.3, "high": 0.0})
    assert figures["low"] == {"threshold": 0.5, "shown_rate": pytest.approx(1 / 3), "shown_exact_match": 1.0}
    assert figures["normal"]["shown_exact_match"] == 0.5 and figures["high"]["shown_rate"] == 1.0


def test_token_logprob_normalises_over_the_allowed_tokens():
    logits = np.log(np.array([0.5, 0.25, 0.25]))
    assert token_logprob(logits, 0) == pytest.approx(np.log(0.5))
    assert token_logprob(logits, 1, np.array([1, 2])) == pytest.approx(np.log(0.5))
    assert token_logprob(logits + 7.0, 2) == pytest.approx(np.log(0.25))  # logits as well as log-probabilities


class Fp32Completer(Completer):
    fast_greedy = False


@pytest.mark.parametrize("completer_class", [Completer, Fp32Completer])
def test_a_memorised_line_is_surer_than_noise(tiny_model_path, completer_class):
    completer = completer_class(load_model(tiny_model_path))
    options = CompletionOptions(max_tokens=8)
    known = completer.complete("static int add(int a, int b) {\n    return ", "", options, path="src/math.c")
    noise = completer.complete("zq@@ 9 kx# ~~ wv", "", options, path="src/math.c")
    assert known.text.strip() == "a + b;"
    assert 0.0 <= noise.confidence < known.confidence <= 1.0
    empty = completer.complete("x", "", CompletionOptions(max_tokens=0))
    assert empty.text == "" and empty.confidence == 0.0
    assert set(EAGERNESS) == set(DEFAULT_THRESHOLDS)
