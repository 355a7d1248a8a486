"""Byte-level BPE tokenizer for C source, trained with the `tokenizers` library.

Every byte has a token of its own (the trainer starts from the full 256-byte alphabet), so any text encodes and
decodes back byte for byte. Five special tokens sit at fixed ids 0..4; they are only ever produced by the engine
(file headers, end of text, fill-in-the-middle), never by encoding source text: a literal "<|endoftext|>" inside a
file is encoded as ordinary bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

EOT = "<|endoftext|>"
FILE = "<|file|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_SUFFIX = "<|fim_suffix|>"
FIM_MIDDLE = "<|fim_middle|>"
SPECIAL_TOKENS: tuple[str, ...] = (EOT, FILE, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The inverse of the GPT-2 byte-to-printable-character map used by the ByteLevel pre-tokenizer."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]  # mapped to the characters U+0100, U+0101, ...
    byte_values = printable + others
    chars = printable + [256 + i for i in range(len(others))]
    return {chr(c): b for b, c in zip(byte_values, chars)}


class Tokenizer:
    """A trained byte-level BPE vocabulary with the engine's special tokens at ids 0..4."""

    def __init__(self, hf: _HFTokenizer):
        for expected_id, token in enumerate(SPECIAL_TOKENS):
            if hf.token_to_id(token) != expected_id:
                raise ValueError(f"special token {token!r} is not at id {expected_id}: not a cllm tokenizer")
        hf.encode_special_tokens = True  # literal special-token strings in source text stay ordinary bytes
        self._hf = hf
        self.vocab_size: int = hf.get_vocab_size(with_added_tokens=True)
        self.eot_id, self.file_id, self.fim_prefix_id, self.fim_suffix_id, self.fim_middle_id = range(5)
        self._bytes = self._token_byte_table()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 10_000) -> "Tokenizer":
        """Learn merges from `texts`. Small corpora may stop below `vocab_size`; read `.vocab_size` afterwards."""
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"vocab_size must be at least {MIN_VOCAB_SIZE} (256 bytes + {len(SPECIAL_TOKENS)} special tokens), "
                f"got {vocab_size}"
            )
        hf = _HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer)
        return cls(hf)

    @classmethod
    def from_json(cls, text: str) -> "Tokenizer":
        """Rebuild a tokenizer saved with `to_json` (ValueError if the JSON is not a cllm tokenizer)."""
        try:
            hf = _HFTokenizer.from_str(text)
        except Exception as exc:  # the library raises a bare Exception for malformed JSON
            raise ValueError(f"not a valid tokenizer JSON: {exc}") from exc
        return cls(hf)

    def to_json(self) -> str:
        """The whole tokenizer (vocabulary, merges, special tokens) as one JSON string."""
        return self._hf.to_str()

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text` (int32); never contains special ids."""
        return np.asarray(self._hf.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of many texts at once (parallel inside the library); same result as `encode` on each."""
        encodings = self._hf.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text of `ids`; special tokens appear as their literal strings. Invalid UTF-8 becomes U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int] | np.ndarray) -> bytes:
        """Raw bytes of `ids`, for callers that stream partial UTF-8 sequences."""
        ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            bad = ids[(ids < 0) | (ids >= self.vocab_size)]
            raise ValueError(f"token ids {bad[:5].tolist()} out of range for vocabulary of {self.vocab_size}")
        table = self._bytes
        return b"".join([table[i] for i in ids.tolist()])

    def token_bytes(self, token_id: int) -> bytes:
        """Raw bytes of one token (may be part of a multi-byte UTF-8 character)."""
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} out of range for vocabulary of {self.vocab_size}")
        return self._bytes[token_id]

    def encode_document(self, path: str, text: str) -> np.ndarray:
        """A training document: [file] + encode(path + "\\n") + encode(text) + [eot]."""
        return np.concatenate([self.header_ids(path), self.encode(text), np.array([self.eot_id], dtype=np.int32)])

    def header_ids(self, path: str) -> np.ndarray:
        """The prompt prefix that announces a file at `path`: [file] + encode(path + "\\n")."""
        return np.concatenate([np.array([self.file_id], dtype=np.int32), self.encode(path + "\n")])

    def _token_byte_table(self) -> list[bytes]:
        """Bytes of every id, built once so decoding is a table lookup."""
        decoder = _byte_decoder()
        table: list[bytes] = [b""] * self.vocab_size
        for token, token_id in self._hf.get_vocab(with_added_tokens=True).items():
            if token_id < len(SPECIAL_TOKENS):
                table[token_id] = token.encode("utf-8")
            else:
                table[token_id] = bytes(decoder[ch] for ch in token)
        return table

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


_SAFE_CUT = re.compile(r"\n(?=\S)")  # a line start before a non-blank: tokenizing the two sides apart is the same


class ChunkedEncoder:
    """Tokenizes a document's prefix in chunks of about `chunk_chars` cut at line starts that begin with a
    non-blank character (tokens never span such a cut), remembering the last call's chunks: as the user types,
    only the last chunk is tokenized again (a 20 kB prefix takes ~10 ms to tokenize whole)."""

    def __init__(self, tokenizer: Tokenizer, chunk_chars: int = 2048) -> None:
        self.tokenizer, self.chunk_chars = tokenizer, chunk_chars
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, text: str) -> np.ndarray:
        """tokenizer.encode(text)."""
        chunks, start = [], 0
        while start < len(text):
            cut = _SAFE_CUT.search(text, start + self.chunk_chars)
            end = cut.start() + 1 if cut else len(text)
            chunks.append(text[start:end])
            start = end
        memo = {chunk: self._memo.get(chunk) for chunk in chunks}
        new = [chunk for chunk, ids in memo.items() if ids is None]
        memo.update(zip(new, self.tokenizer.encode_batch(new) if new else ()))  # a cold document: one parallel call
        self._memo = memo
        return np.concatenate([memo[c] for c in chunks]).astype(np.int32) if chunks else np.zeros(0, np.int32)
