"""Completing code at a cursor: the loaded `Model`, its prompts, token healing and KV-cache decoding.

A `Completer` keeps, per document, the KV cache of its last prompt, so that a request sharing a prefix with it (one
more character typed) runs only the new tokens; it decodes one token at a time, greedy by default, and stops.py
decides where the suggestion ends (with `beam` > 1, the best of a few candidate lines, beam.py). Prompts follow the training format (engine/data/windows.py): [file] path "\\n"
prefix, or fill-in-the-middle in suffix-first order when there is text after the cursor, with a long prefix cut at
fixed anchor lines so that the prompt stays stable while the user types. Token healing takes back the last prompt
token (or the last whitespace character) and makes the output start with its bytes. A `Scorer` (the workspace cache
mixture) may turn the transformer's logits into the scores decoding picks from. Servers and the CLI complete through
engine/complete/serving.py's ServedModel; the Model type is engine/model/loaded.py's.
"""

from __future__ import annotations

import bisect
import codecs
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

from ..model.loaded import Model
from ..model.network import GreedyHead, KVCache, infer, new_cache
from .beam import MAX_WIDTH, Candidate, Step, best_line, step_of
from .sources import Copy
from .confidence import line_confidence, token_logprob
from .stops import StopRules
from ..model.tokenizer import SPECIAL_TOKENS, Tokenizer

CHARS_PER_TOKEN = 3  # a guess of characters per token, to size the text that is tokenized
MIN_PROMPT_TOKENS = 16  # max_tokens is lowered so that at least this much prompt fits the context
SUFFIX_SHARE = 4  # with a suffix, at most 1/SUFFIX_SHARE of the prompt budget (and SUFFIX_MAX_TOKENS) goes to it
SUFFIX_MAX_TOKENS = 64
MAX_TEMPERATURE = 2.0  # above this, sampling is close to uniform noise; the CLI and the HTTP API both refuse it


@dataclass
class CompletionOptions:
    """How to complete: token and time limits, single- or multi-line, sampling (greedy when temperature is 0), and
    how many candidate lines a greedy completion weighs (`beam`, see beam.py; 1: greedy alone)."""

    max_tokens: int = 64
    multiline: bool = False
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    max_ms: float = 1000.0
    seed: int = 0
    beam: int = 1

    def validate(self) -> None:
        """Raise ValueError with a readable message for options that cannot work."""
        if not isinstance(self.max_tokens, int) or self.max_tokens < 0:
            raise ValueError(f"max_tokens must be a non-negative integer, got {self.max_tokens!r}")
        if not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise ValueError(f"temperature must be between 0 and {MAX_TEMPERATURE}, got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer (0 = off), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not self.max_ms > 0:
            raise ValueError(f"max_ms must be positive, got {self.max_ms!r}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) for s in self.stop):
            raise ValueError(f"stop must be a list of strings, got {self.stop!r}")
        if not isinstance(self.beam, int) or not 1 <= self.beam <= MAX_WIDTH:
            raise ValueError(f"beam must be an integer from 1 to {MAX_WIDTH}, got {self.beam!r}")


@dataclass
class Completion:
    """A suggestion: its text, how many tokens were generated, why generation stopped, how long it took, how
    many tokens the prompt the model read had (0 when it read none), where it was copied from ("path:line",
    engine/complete/sources.py; None when it was not a copy) and the completer's confidence in it, in [0, 1]
    (engine/complete/confidence.py; 0 when nothing was generated)."""

    text: str
    tokens: int
    stop_reason: str
    ms: float
    prompt_tokens: int = 0
    source: str | None = None
    confidence: float = 0.0


# ------------------------------------------------------------------------------------------------ prompts

MAX_PREFIX_CHARS = 64_000  # the prompt holds a few hundred tokens: text further before the cursor is never read
PREFIX_ALIGN = 4096
MAX_SUFFIX_CHARS = 16_000


def context_start(cursor: int) -> int:
    """Where the text a completion reads starts, for a cursor at index `cursor`: at most MAX_PREFIX_CHARS before
    it, at a multiple of PREFIX_ALIGN (a start that stays put while typing keeps the completer's cache reusable),
    so the work of a keystroke is bounded however long the document or its line is."""
    start = max(0, cursor - MAX_PREFIX_CHARS)
    return start - start % PREFIX_ALIGN


def _anchor(text: str, k: int, block: int) -> int:
    """The k-th truncation point of `text`: the first line start at or after k * block characters."""
    if k <= 0:
        return 0
    at = k * block
    if at >= len(text):
        return len(text)
    newline = text.find("\n", at)
    return at if newline < 0 else newline + 1


def tail_ids(tokenizer: Tokenizer, text: str, budget: int) -> np.ndarray:
    """Tokens of the longest end of `text` that starts at an anchor point and fits `budget` tokens.

    Anchors are line starts after multiples of a block of characters; they depend only on the text before
    them, so the chosen start stays put while text is added at the end (keeping the prompt reusable)."""
    if budget <= 0 or not text:
        return np.zeros(0, np.int32)
    block = max(16, budget // 2)  # characters (~1/7 of the budget in tokens): the prompt keeps >= ~85% of it
    k = max(0, (len(text) - budget * CHARS_PER_TOKEN) // block)
    ids = tokenizer.encode(text[_anchor(text, k, block):])
    while len(ids) > budget:  # too long: skip ahead by about the excess, measured in this text's characters/token
        chars_per_token = (len(text) - _anchor(text, k, block)) / len(ids)
        k += max(1, int((len(ids) - budget) * chars_per_token) // block)
        ids = tokenizer.encode(text[_anchor(text, k, block):])
    while k > 0:  # the earliest anchor that fits, so the result does not depend on the first guess
        earlier = tokenizer.encode(text[_anchor(text, k - 1, block):])
        if len(earlier) > budget:
            break
        k, ids = k - 1, earlier
    return ids


def head_ids(tokenizer: Tokenizer, text: str, budget: int) -> np.ndarray:
    """Tokens of the start of `text`, at most `budget`, cut after a whole line when the text is longer."""
    if budget <= 0 or not text:
        return np.zeros(0, np.int32)
    window = text[:budget * CHARS_PER_TOKEN]
    if len(window) < len(text) and "\n" in window:
        window = window[:window.rfind("\n") + 1]
    return tokenizer.encode(window)[:budget]


@dataclass
class Prompt:
    """Prompt token ids; ids[prefix_start:prefix_end] came from the prefix text."""

    ids: np.ndarray
    prefix_start: int
    prefix_end: int


def build_prompt(tokenizer: Tokenizer, prefix: str, suffix: str, path: str | None, budget: int) -> Prompt:
    """The prompt for a cursor between `prefix` and `suffix`, at most `budget` tokens (see the module doc)."""
    header = tokenizer.header_ids(path) if path else np.array([tokenizer.file_id], np.int32)
    if len(header) > budget // 2:
        header = header[:1]
    if not suffix.strip():
        prefix_part = tail_ids(tokenizer, prefix, budget - len(header))
        ids = np.concatenate([header, prefix_part]).astype(np.int32)
        return Prompt(ids, len(header), len(ids))
    suffix_part = head_ids(tokenizer, suffix, min(budget // SUFFIX_SHARE, SUFFIX_MAX_TOKENS))
    prefix_part = tail_ids(tokenizer, prefix, budget - 3 - len(header) - len(suffix_part))
    ids = np.concatenate([[tokenizer.fim_prefix_id, tokenizer.fim_suffix_id], suffix_part, [tokenizer.fim_middle_id],
                          header, prefix_part]).astype(np.int32)
    return Prompt(ids, len(ids) - len(prefix_part), len(ids))


# ----------------------------------------------------------------------------------- token healing, sampling

class Vocabulary:
    """The tokenizer's token bytes, sorted, to find the tokens that agree with given bytes."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        pairs = sorted((tokenizer.token_bytes(i), i) for i in range(len(SPECIAL_TOKENS), tokenizer.vocab_size))
        self._keys = [b for b, _ in pairs]
        self._ids = np.array([i for _, i in pairs], np.int64)
        self._by_bytes = dict(pairs)

    def agreeing_with(self, pending: bytes) -> np.ndarray:
        """Ids of the (non-special) tokens that could come next when the output must start with `pending`:
        tokens that start with all of it, and tokens that are a shorter start of it."""
        lo = bisect.bisect_left(self._keys, pending)
        hi = lo
        while hi < len(self._keys) and self._keys[hi].startswith(pending):
            hi += 1
        shorter = [self._by_bytes[pending[:n]] for n in range(1, len(pending)) if pending[:n] in self._by_bytes]
        return np.concatenate([self._ids[lo:hi], np.array(shorter, np.int64)])

    def extends(self, text: bytes) -> bool:
        """Whether some token is longer than `text` and starts with it (the text may be a token cut short)."""
        at = bisect.bisect_right(self._keys, text)
        return at < len(self._keys) and self._keys[at].startswith(text)


MAX_HEALED_TOKENS = 3


def heal_start(tokenizer: Tokenizer, vocabulary: Vocabulary, prompt: Prompt) -> int:
    """Index of the first prompt token to take back for token healing (prompt.prefix_end when none).

    The most of the prefix's last tokens, up to MAX_HEALED_TOKENS, that together are the start of a longer token
    are taken back: the text typed so far is then a token cut short (`#inclu` as `#incl` `u` where training text
    has `#include`; `p-` where it has `->`), a split the model never saw in training."""
    end = prompt.prefix_end
    for k in range(min(MAX_HEALED_TOKENS, end - prompt.prefix_start), 0, -1):
        if vocabulary.extends(tokenizer.decode_bytes(prompt.ids[end - k:end])):
            return end - k
    return end


def healed_prompt(tokenizer: Tokenizer, vocabulary: Vocabulary, prefix: str, suffix: str, path: str | None,
                  budget: int) -> tuple[np.ndarray, bytes]:
    """(prompt ids, healed bytes the output must start with) for a cursor between `prefix` and `suffix`.

    A prefix ending in whitespace is prompted without its last character, which becomes the healed bytes: the
    training text splits a run of whitespace before a word into the run minus its last character and a token
    starting with that character, so the model continues exactly as it learned (at a line start, one token that
    is the rest of the indentation and the first word). Taking back whole whitespace tokens instead let decoding
    crawl through the indentation one space at a time, and often end the line empty. Otherwise the prefix's last
    tokens are taken back while they could be the start of a longer token (heal_start)."""
    if prefix[-1:].isspace():
        prompt = build_prompt(tokenizer, prefix[:-1], suffix, path, budget)
        return prompt.ids, prefix[-1].encode("utf-8")
    prompt = build_prompt(tokenizer, prefix, suffix, path, budget)
    heal = heal_start(tokenizer, vocabulary, prompt)
    healed = tokenizer.decode_bytes(prompt.ids[heal:prompt.prefix_end])
    return np.concatenate([prompt.ids[:heal], prompt.ids[prompt.prefix_end:]]).astype(np.int32), healed


def pick_token(logits: np.ndarray, options: CompletionOptions, rng: np.random.Generator | None,
               allowed: np.ndarray | None = None) -> int:
    """The next token: argmax when temperature is 0, else a sample (temperature, then top-k, then top-p)."""
    scores = logits if allowed is None else logits[allowed]
    if options.temperature <= 0 or rng is None:
        best = int(np.argmax(scores))
        return int(allowed[best]) if allowed is not None else best
    x = scores.astype(np.float64) / options.temperature
    candidates = np.arange(x.size)
    if 0 < options.top_k < x.size:
        candidates = np.argpartition(x, -options.top_k)[-options.top_k:]
    p = np.exp(x[candidates] - x[candidates].max())
    p /= p.sum()
    if options.top_p < 1.0:
        order = np.argsort(-p)
        keep = order[:int(np.searchsorted(np.cumsum(p[order]), options.top_p)) + 1]
        candidates, p = candidates[keep], p[keep] / p[keep].sum()
    choice = int(candidates[rng.choice(p.size, p=p)])
    return int(allowed[choice]) if allowed is not None else choice


# ------------------------------------------------------------------------------------------------ completer

class Scorer(Protocol):
    """The scoring seam: what a Completer decodes from instead of the transformer's logits alone (the workspace
    cache mixture, engine/complete/mixture.py MixtureScorer). A Completer calls it under its lock, one request at a time."""

    def begin_document(self, prefix: str, healed: bytes, path: str | None) -> None:
        """A request starts: the text before the cursor, the healed bytes the output must start with (taken back
        from the prefix's end, see healed_prompt) and the file's workspace-relative path (None if unknown)."""

    def append(self, token: int) -> None:
        """Decoding picked `token`: it follows the document from now on."""

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """The scores (log-probabilities) of the next token from the transformer's exact fp32 `logits`."""

    def copied_from(self, tokens: int) -> Copy | None:
        """Where the suggestion of `tokens` tokens decoded since begin_document was copied from, if it was."""


@dataclass
class _Slot:
    """One document's KV cache and the token ids it holds (ids[:cache.length]; up to `held` after a rewind)."""

    cache: KVCache
    ids: np.ndarray
    held: int = 0  # positions whose ids and cache entries agree (beyond cache.length after a rewind)


class Completer:
    """Completes code for many documents, keeping each one's last KV cache (LRU, `cache_slots` of them).

    Thread-safe: requests run one at a time. `tokens_run` counts every token pushed through the model and
    `tokens_reused` the prompt tokens taken from a cache instead, so callers and tests can see reuse work.

    With a `scorer` (the scoring seam, see Scorer) decoding picks from the scorer's scores instead of the
    transformer's logits; `mixes` says whether it does.

    Greedy picks over the whole vocabulary (temperature 0, no token-healing restriction) and no scorer score the
    output head through the model's int8 `greedy_head`: `_prefill`/`_step` then return logits that are exact for
    every token that could win the argmax and -inf for the rest, so the pick equals the fp32 one. A scorer gets
    every logit exact; so does a subclass that sets `fast_greedy = False` (tests compare the two paths). Through the
    int8 head the confidence (normalised over the rescored tokens only) overstates the transformer's: see
    docs/decisions.md, "Confidence of a suggestion"."""

    fast_greedy: ClassVar[bool] = True
    statistic: ClassVar[Callable[[list[float]], float]] = staticmethod(line_confidence)  # emitted tokens' log-probs

    def __init__(self, model: Model, cache_slots: int = 8, scorer: Scorer | None = None) -> None:
        if cache_slots < 1:
            raise ValueError(f"cache_slots must be at least 1, got {cache_slots}")
        self.model = model
        self.cache_slots = cache_slots
        self.scorer = scorer
        self.tokens_run = 0
        self.tokens_reused = 0
        self._slots: OrderedDict[Any, _Slot] = OrderedDict()
        self._lock = threading.Lock()
        self._vocab: Vocabulary | None = None
        self._one = np.zeros(1, np.int32)
        self._specials = len(SPECIAL_TOKENS)
        self._head: GreedyHead | None = None  # the head the next _prefill/_step scores with (None: fp32)
        self.last_beam: list[Candidate] = []  # the last beam request's candidates, best first (for tests, benchmarks)

    @property
    def mixes(self) -> bool:
        """Whether completions come from a scorer (the workspace cache mixture) rather than the transformer alone."""
        return self.scorer is not None

    def complete(self, prefix: str, suffix: str = "", options: CompletionOptions | None = None, *,
                 path: str | None = None, doc_key: Any = None, cancel: threading.Event | None = None,
                 on_text: Callable[[str], None] | None = None, lines_before: int = 0) -> Completion:
        """Complete between `prefix` and `suffix`; reuses the cache of `doc_key`'s previous request.

        Returns promptly with stop_reason "cancelled" once `cancel` is set (checked between tokens). `on_text`,
        when given, is called on this thread with each piece of the suggestion as soon as no later token can
        change it (StopRules.settled); the pieces add up to the returned text exactly. `lines_before`: the lines
        of the document before `prefix` (a face that cut its start off), for the line of a copy from it."""
        start = time.perf_counter()
        options = options or CompletionOptions()
        options.validate()
        cut = context_start(len(prefix))
        lines_before += prefix.count("\n", 0, cut)
        prefix, suffix = prefix[cut:], suffix[:MAX_SUFFIX_CHARS]
        with self._lock:
            if cancel is not None and cancel.is_set():
                return Completion("", 0, "cancelled", _ms(start))
            model = self.model
            max_new = max(0, min(options.max_tokens, model.context - MIN_PROMPT_TOKENS))
            if max_new == 0:
                return Completion("", 0, "max_tokens", _ms(start))
            ids, healed = healed_prompt(model.tokenizer, self._vocabulary(), prefix,
                                        suffix if model.fills_middle else "", path, model.context - max_new)
            if self.scorer is not None:
                self.scorer.begin_document(prefix, healed, path)
            slot = self._slot(doc_key)
            rules = StopRules(prefix, suffix, options.multiline, options.stop)
            with _single_threaded_blas:
                self._head = self._head_for(options, healed)
                logits = self._scored(self._prefill(slot, ids))
                if options.beam > 1 and options.temperature <= 0:
                    completion = self._beam(slot, logits, (prefix, suffix, path), options, max_new, healed, start,
                                            cancel, on_text)
                else:
                    completion = self._decode(slot, logits, rules, options, max_new, healed, start, cancel, on_text)
            completion.prompt_tokens = len(ids)
            completion.source = self._copied_from(completion, lines_before)
            return completion

    def _copied_from(self, completion: Completion, lines_before: int) -> str | None:
        """"path:line" of the text the scorer saw the suggestion copied from (lines of the open document counted
        from its start), None without one."""
        copy = self.scorer.copied_from(completion.tokens) if self.scorer is not None and completion.text else None
        if copy is None or copy.path is None:
            return None
        return f"{copy.path}:{copy.line + lines_before if copy.in_document else copy.line}"

    def _decode(self, slot: _Slot, logits: np.ndarray, rules: StopRules, options: CompletionOptions,
                max_new: int, healed: bytes, start: float, cancel: threading.Event | None,
                on_text: Callable[[str], None] | None, forced: tuple[int, ...] = (),
                trace: list[Step] | None = None) -> Completion:
        """Generate token by token until a stop rule, a limit or cancellation; the cache stays consistent.
        Settled text goes to `on_text` as it grows, the rest of the final text at the end. The first tokens are
        `forced` ones (a beam candidate's start, replayed from the cache where it holds them); `trace` gets the
        Step of every token picked after them."""
        tok = self.model.tokenizer
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        rng = np.random.default_rng(options.seed) if options.temperature > 0 else None
        pending = healed
        vocab_end = tok.vocab_size
        text, generated, reason = "", 0, "max_tokens"
        logprobs: list[float] = []  # of every token picked, for the confidence
        sent = 0  # characters of `text` given to on_text
        while True:
            if cancel is not None and cancel.is_set():
                reason = "cancelled"
                break
            if (time.perf_counter() - start) * 1000.0 >= options.max_ms:
                reason = "timeout"
                break
            allowed = self._vocabulary().agreeing_with(pending) if pending else None
            if generated < len(forced):
                token = forced[generated]
            else:
                token = pick_token(logits[:vocab_end], options, rng, allowed)
                if trace is not None:
                    trace.append(step_of(logits[:vocab_end], token, allowed, self.scorer is not None))
            logprobs.append(token_logprob(logits[:vocab_end], token, allowed))
            if token < self._specials:
                reason = "eot"
                break
            generated += 1
            piece = tok.token_bytes(token)
            if pending:
                piece, pending = piece[len(pending):], pending[len(piece):]
            text += utf8.decode(piece)
            stop = rules.check(text)
            if stop is not None:
                text, reason = text[:stop.keep], stop.reason
                break
            if on_text is not None and (settled := rules.settled(text)) > sent:
                on_text(text[sent:settled])
                sent = settled
            if generated >= max_new:
                break
            self._head = self._head_for(options, pending)
            if self.scorer is not None:
                self.scorer.append(token)
            if generated < len(forced) and self._replay(slot, token):
                continue
            logits = self._scored(self._step(slot, token))
        final = rules.finish(text)
        if on_text is not None and len(final) > sent:
            on_text(final[sent:])
        confidence = self.statistic(logprobs) if final.strip() else 0.0  # nothing to show, nothing to be sure of
        return Completion(final, generated, reason, _ms(start), confidence=confidence)

    def _beam(self, slot: _Slot, logits: np.ndarray, request: tuple[str, str, str | None],
              options: CompletionOptions, max_new: int, healed: bytes, start: float,
              cancel: threading.Event | None, on_text: Callable[[str], None] | None) -> Completion:
        """The best of `options.beam` candidate lines (beam.py) for `request` (prefix, suffix, path), each decoded
        from the prompt's cache and `logits`; the winner goes to `on_text` whole, at the end."""
        prefix, suffix, path = request
        root = slot.cache.length

        def run(forced: tuple[int, ...]) -> tuple[Completion, list[Step]]:
            slot.cache.length = root
            if forced and self.scorer is not None:
                self.scorer.begin_document(prefix, healed, path)
            trace: list[Step] = []
            rules = StopRules(prefix, suffix, options.multiline, options.stop)
            return self._decode(slot, logits, rules, options, max_new, healed, start, cancel, None, forced, trace), trace

        self.last_beam = best_line(run, options.beam, start)
        completion = self.last_beam[0].completion
        completion.ms = _ms(start)
        if on_text is not None and completion.text:
            on_text(completion.text)
        return completion

    def _scored(self, logits: np.ndarray) -> np.ndarray:
        """What the next token is picked from: the scorer's scores, or the transformer's logits without one."""
        return logits if self.scorer is None else self.scorer.scores(logits)

    def _head_for(self, options: CompletionOptions, pending: bytes) -> GreedyHead | None:
        """The int8 head when the next pick is greedy over every token (no healing bytes pending) and no scorer
        needs every logit exact (nor a beam, which weighs the runner-up), else None."""
        if self.fast_greedy and self.scorer is None and options.temperature <= 0 and options.beam == 1 and not pending:
            return self.model.greedy_head
        return None

    def _slot(self, doc_key: Any) -> _Slot:
        """The cache of `doc_key`, created or recycled from the least recently used document."""
        slot = self._slots.pop(doc_key, None)
        if slot is None:
            if len(self._slots) >= self.cache_slots:
                _, slot = self._slots.popitem(last=False)
                slot.cache.length = 0
            else:
                cfg = self.model.config
                slot = _Slot(new_cache(cfg, self.model.context), np.zeros(self.model.context, np.int32))
        self._slots[doc_key] = slot
        return slot

    def _prefill(self, slot: _Slot, prompt: np.ndarray) -> np.ndarray:
        """Run the part of `prompt` the slot's cache does not already hold; logits of its last token."""
        cached = slot.cache.length
        n = min(cached, len(prompt) - 1)
        differs = np.flatnonzero(slot.ids[:n] != prompt[:n])
        common = int(differs[0]) if differs.size else n
        slot.cache.length = common
        logits = self._run(slot, prompt[common:])
        self.tokens_reused += common
        return logits

    def _step(self, slot: _Slot, token: int) -> np.ndarray:
        """Append one generated token to the cache; logits of the next position."""
        self._one[0] = token
        return self._run(slot, self._one)

    def _replay(self, slot: _Slot, token: int) -> bool:
        """Move the cache on past `token` without running it when the slot still holds it there (a beam candidate
        replaying the greedy start); False when it must be run."""
        at = slot.cache.length
        if at < slot.held and slot.ids[at] == token:
            slot.cache.length = at + 1
            return True
        return False

    def _run(self, slot: _Slot, tokens: np.ndarray) -> np.ndarray:
        """infer() that records the tokens; on any error the slot is emptied so it never holds a partial state."""
        pos = slot.cache.length
        try:
            logits = infer(self.model.params, self.model.config, tokens, slot.cache, greedy=self._head)
        except BaseException:
            slot.cache.length = slot.held = 0
            raise
        slot.ids[pos:pos + len(tokens)] = tokens
        slot.held = pos + len(tokens)
        self.tokens_run += len(tokens)
        return logits

    def _vocabulary(self) -> Vocabulary:
        """The sorted vocabulary for token healing, built on first use."""
        if self._vocab is None:
            self._vocab = Vocabulary(self.model.tokenizer)
        return self._vocab

    def cached_ids(self, doc_key: Any) -> np.ndarray | None:
        """The token ids held in `doc_key`'s cache (last prompt and the generated tokens run after it), or None."""
        with self._lock:
            slot = self._slots.get(doc_key)
            return None if slot is None else slot.ids[:slot.cache.length].copy()

    def forget(self, doc_key: Any) -> None:
        """Drop a document's cache (e.g. when the editor closes it)."""
        with self._lock:
            self._slots.pop(doc_key, None)


class _SingleThreadedBlas:
    """Runs BLAS on one thread while any completion is running, and restores it when the last one ends.

    Batch-1 products are too small to split, and on a machine busy with training, waiting for a second BLAS
    thread costs ten times what it saves. The BLAS thread count is process-wide, so completions running at
    once (several workspaces, the HTTP worker) share one limit instead of each restoring it in turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._controller: ThreadpoolController | None = None
        self._limit: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                if self._controller is None:  # built once: inspecting the loaded libraries takes milliseconds
                    self._controller = ThreadpoolController()
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._limit.restore_original_limits()
                self._limit = None


_single_threaded_blas = _SingleThreadedBlas()


def _ms(start: float) -> float:
    """Milliseconds since `start` (a perf_counter value)."""
    return (time.perf_counter() - start) * 1000.0
