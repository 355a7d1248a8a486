"""The compressor baseline of `cllm eval`: conditional xz."""

import numpy as np

from cllm.engine.baselines import xz_conditional_bits_per_byte


def test_xz_conditional_rate_is_low_for_repeats_and_high_for_random_bytes():
    rng = np.random.default_rng(1)
    train = b"static int add(int a, int b) { return a + b; }\n" * 200
    repeated = xz_conditional_bits_per_byte(train, train[:2000])
    noise = xz_conditional_bits_per_byte(train, rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    assert repeated < 0.5 < 7.5 < noise
