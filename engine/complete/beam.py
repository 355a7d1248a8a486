"""A small beam for the line: greedy, and a few candidates branching from it where it was least sure.

The Completer decodes the greedy line first, noting at each token the best other token and both log-probabilities
under the scores it picks from (the workspace cache mixture when it has one). Each further candidate takes the
greedy tokens up to one of the width - 1 least sure positions (smallest gap to the runner-up), the runner-up there,
and continues greedily; the candidate with the highest total log-probability wins (a line's tokens up to the one
that ends it, so candidates that end differently compare as whole lines). A candidate that the repetition guard cut
ranks after the others. Greedy is a candidate, so the winner never scores below it; width 1 is greedy exactly.
Candidates share the KV cache of the document (generate.py replays the tokens it still holds), and no candidate
starts after BUDGET_MS of the request, so a slow request stays a greedy one.
See docs/decisions.md, "Repetition guard and a small beam".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_WIDTH = 8
BUDGET_MS = 12.0  # no candidate after the first starts later than this into the request
GUARDED = ("repetition",)  # stop reasons of a candidate the repetition guard cut
UNFINISHED = ("timeout", "cancelled")  # a candidate that ended so is dropped (greedy excepted)


@dataclass(frozen=True)
class Step:
    """One picked token: its log-probability, and the best other token the pick allowed with its log-probability."""

    token: int
    logprob: float
    other: int
    other_logprob: float


def step_of(scores: np.ndarray, token: int, allowed: np.ndarray | None, normalised: bool) -> Step:
    """The Step of picking `token` from `scores` (log-probabilities when `normalised`, else logits, normalised over
    the vocabulary here) among the `allowed` token ids (None: all)."""
    x = scores.astype(np.float64)
    if not normalised:
        top = x.max()
        x -= top + np.log(np.exp(x - top).sum())
    ids = np.arange(len(scores)) if allowed is None else np.asarray(allowed, dtype=np.int64)
    x = x[ids]
    at = int(np.flatnonzero(ids == token)[0])
    mine = float(x[at])
    x[at] = -np.inf
    other = int(np.argmax(x)) if len(x) > 1 else at
    return Step(token, mine, int(ids[other]), float(x[other]) if len(x) > 1 else -np.inf)


@dataclass
class Candidate:
    """One decoded line: the completion (generate.Completion), its steps, and the forced start it branched with."""

    completion: Any
    steps: list[Step]
    forced: tuple[int, ...] = ()
    score: float = field(init=False)

    def __post_init__(self) -> None:
        self.score = float(sum(step.logprob for step in self.steps))

    def rank(self) -> tuple[bool, float]:
        """Sort key, higher is better: not cut by the repetition guard, then the total log-probability."""
        return self.completion.stop_reason not in GUARDED, self.score


def branches(steps: Sequence[Step], count: int) -> list[tuple[int, ...]]:
    """The forced starts of up to `count` candidates: greedy up to each of the least sure steps, then its other."""
    usable = [i for i, step in enumerate(steps) if np.isfinite(step.other_logprob)]
    usable.sort(key=lambda i: steps[i].logprob - steps[i].other_logprob)
    return [tuple(s.token for s in steps[:i]) + (steps[i].other,) for i in usable[:count]]


Run = Callable[[tuple[int, ...]], tuple[Any, list[Step]]]


def best_line(run: Run, width: int, start: float) -> list[Candidate]:
    """The candidates `run` decodes (given a forced start: the Completion and the Steps of its picked tokens), best
    first; the first decoded is greedy. `start` is the request's perf_counter start, for BUDGET_MS."""
    completion, steps = run(())
    greedy = Candidate(completion, steps)
    candidates = [greedy]
    for forced in branches(steps, width - 1):
        if (time.perf_counter() - start) * 1000.0 >= BUDGET_MS:
            break
        completion, tail = run(forced)
        if completion.stop_reason in UNFINISHED:
            break
        inherited = steps[:len(forced) - 1]
        fork = steps[len(forced) - 1]
        first = Step(fork.other, fork.other_logprob, fork.token, fork.logprob)
        candidates.append(Candidate(completion, [*inherited, first, *tail], forced))
    return sorted(candidates, key=Candidate.rank, reverse=True)
