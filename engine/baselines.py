"""The compressor baseline that `cllm eval` scores on the same files as the model: conditional xz.

It answers "what could a model learn from the training files alone?". The compressor may copy any span of the
training bytes, which is a strong bar on code (identifiers and whole lines repeat across files). The other baseline,
the Kneser-Ney 5-gram, lives in engine/ngram.py because the completion mixture uses it too.
"""

from __future__ import annotations

import lzma

_XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 26}]


def xz_bits(data: bytes) -> int:
    """Size in bits of `data` compressed by raw LZMA2 (xz -9e, 64 MiB dictionary, no container header)."""
    return 8 * len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=_XZ_FILTERS))


def xz_conditional_bits_per_byte(train: bytes, heldout: bytes) -> float:
    """Bits per held-out byte that xz spends once it has seen `train`: (bits(train+heldout) - bits(train)) / len(heldout).

    The dictionary (64 MiB) covers the training bytes of any workspace we train on, so every held-out span that
    also occurs in the training files costs only a back-reference.
    """
    if not heldout:
        raise ValueError("no held-out bytes to compress")
    return (xz_bits(train + heldout) - (xz_bits(train) if train else 0)) / len(heldout)
