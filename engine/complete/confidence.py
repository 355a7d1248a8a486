"""How sure the completer is of a suggestion, and which suggestions are worth showing at an eagerness.

A completion's confidence (generate.Completion.confidence, in [0, 1]) is the product of the probabilities of the
tokens it emitted (the probability of the whole suggestion), under the distribution decoding picked from (the
mixture's when the completer mixes, else the transformer's); docs/decisions.md, "Confidence of a suggestion",
compares the statistics tried. A suggestion is shown when its confidence reaches the threshold of the user's
eagerness (low / normal / high). The thresholds are fitted at the end of training on held-out positions
(engine/train/finish.py, fit_thresholds) so that the shown suggestions reach TARGET_PRECISION with a margin for
the few positions they are fitted on; models without fitted ones use DEFAULT_THRESHOLDS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

EAGERNESS = ("low", "normal", "high")
DEFAULT_EAGERNESS = "normal"
# the share of shown suggestions that should be exactly right, per eagerness
TARGET_PRECISION = {"low": 0.8, "normal": 0.6, "high": 0.4}
# thresholds of models that carry none (older files, the shipped base), fitted on four projects with the shipped
# base and each one's workspace cache: docs/decisions.md, "Confidence of a suggestion"
DEFAULT_THRESHOLDS = {"low": 0.3, "normal": 0.1, "high": 0.009}
# standard errors by which a threshold fitted on a run's few held-out positions must clear its target
# (docs/decisions.md, "Confidence of a suggestion")
FIT_Z = 1.0


def token_logprob(scores: np.ndarray, token: int, allowed: np.ndarray | None = None) -> float:
    """Log-probability of `token` under the scores it was picked from (logits or log-probabilities), normalised
    over the `allowed` tokens when decoding was restricted to them (token healing)."""
    s = scores if allowed is None else scores[allowed]
    top = float(np.max(s))
    if not math.isfinite(top):
        return 0.0
    return float(scores[token]) - top - math.log(float(np.exp(s - top).sum()))


def line_confidence(logprobs: Sequence[float]) -> float:
    """The confidence of a suggestion from its tokens' log-probabilities: their product's (1.0 for none)."""
    return min(1.0, max(0.0, math.exp(sum(logprobs))))


def check_eagerness(value: object) -> str:
    """`value` when it is an eagerness; ValueError with the choices otherwise."""
    if value not in EAGERNESS:
        raise ValueError(f"eagerness must be one of {', '.join(EAGERNESS)}, got {value!r}")
    return str(value)


def precision_lower_bound(hits: np.ndarray, shown: np.ndarray, z: float) -> np.ndarray:
    """The Wilson score interval's lower end for a precision of `hits` out of `shown`, `z` standard errors down."""
    p = hits / shown
    spread = z * np.sqrt(p * (1.0 - p) / shown + z * z / (4.0 * shown * shown))
    return (p + z * z / (2.0 * shown) - spread) / (1.0 + z * z / shown)


def fit_threshold(confidences: Sequence[float], exact: Sequence[bool], target: float, z: float = FIT_Z) -> float:
    """The lowest threshold t such that the positions with confidence >= t are exactly right at least `target` of
    the time, `z` standard errors to spare (precision_lower_bound; 0: the measured share itself); 1.0 when no
    threshold reaches it (only certain suggestions are shown)."""
    order = np.argsort(-np.asarray(confidences, dtype=np.float64), kind="stable")
    c = np.asarray(confidences, dtype=np.float64)[order]
    hits = np.cumsum(np.asarray(exact, dtype=np.float64)[order])
    shown = np.arange(1, len(c) + 1)
    last_of_tie = np.append(c[1:] < c[:-1], True)  # a threshold shows every position tied with it
    reaching = np.flatnonzero(last_of_tie & (precision_lower_bound(hits, shown, z) >= target - 1e-9))
    return float(c[reaching[-1]]) if reaching.size else 1.0


def fit_thresholds(confidences: Sequence[float], exact: Sequence[bool], z: float = FIT_Z) -> dict[str, float] | None:
    """The threshold of every eagerness (fit_threshold at its TARGET_PRECISION); None without positions."""
    if len(confidences) == 0:
        return None
    return {name: round(fit_threshold(confidences, exact, TARGET_PRECISION[name], z), 6) for name in EAGERNESS}


def thresholds_or_default(fitted: Mapping[str, float] | None) -> dict[str, float]:
    """The fitted thresholds when they name every eagerness, else DEFAULT_THRESHOLDS."""
    if fitted is None or any(not isinstance(fitted.get(name), (int, float)) for name in EAGERNESS):
        return dict(DEFAULT_THRESHOLDS)
    return {name: float(fitted[name]) for name in EAGERNESS}


def shown_figures(confidences: Sequence[float], exact: Sequence[bool],
                  thresholds: Mapping[str, float]) -> dict[str, dict[str, float | None]]:
    """Per eagerness: the share of positions whose suggestion is shown (`shown_rate`) and the exact match among
    those shown (`shown_exact_match`, None when none is)."""
    c, e = np.asarray(confidences, dtype=np.float64), np.asarray(exact, dtype=bool)
    figures = {}
    for name in EAGERNESS:
        shown = c >= thresholds[name]
        figures[name] = {"threshold": thresholds[name],
                         "shown_rate": float(shown.mean()) if c.size else None,
                         "shown_exact_match": float(e[shown].mean()) if shown.any() else None}
    return figures
