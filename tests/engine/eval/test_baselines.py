"""The compressor baselines of `cllm eval`: xz, zpaq and PPMd conditioned on the training bytes."""

import lzma
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cllm.engine.eval import baselines
from cllm.engine.eval.baselines import COMPRESSORS, compressor_baselines, conditional_bits_per_byte, xz_conditional_bits_per_byte
from conftest import require_program


def test_xz_conditional_rate_is_low_for_repeats_and_high_for_random_bytes():
    rng = np.random.default_rng(1)
    train = b"static int add(int a, int b) { return a + b; }\n" * 200
    repeated = xz_conditional_bits_per_byte(train, train[:2000])
    noise = xz_conditional_bits_per_byte(train, rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    assert repeated < 0.5 < 7.5 < noise


def _counting(data: bytes) -> int:
    """A stand-in compressor: 8 bits per distinct byte value plus 1 bit per byte."""
    return 8 * len(set(data)) + len(data)


def test_conditional_rate_is_the_size_difference_per_held_out_byte():
    assert conditional_bits_per_byte(_counting, b"abab", b"ba") == ((8 * 2 + 6) - (8 * 2 + 4)) / 2
    assert conditional_bits_per_byte(_counting, b"", b"xy") == (8 * 2 + 2) / 2  # nothing seen: the whole cost
    with pytest.raises(ValueError, match="no held-out bytes"):
        conditional_bits_per_byte(_counting, b"ab", b"")


@pytest.mark.parametrize("name", ["zpaq", "ppmd"])
def test_context_mixing_compressors_learn_from_the_training_bytes(name):
    program, conditional = COMPRESSORS[name]
    require_program(program)  # .ci/run installs it
    rng = np.random.default_rng(2)
    train = b"static int add(int a, int b) { return a + b; }\n" * 200
    repeated = conditional(train, train[:2000])
    noise = conditional(train, rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    assert repeated < 0.5 < 7.5 < noise


def test_ppmd_sizes_the_training_bytes_alone_with_the_same_model_memory():
    """7-Zip sizes PPMd's memory to a file it is given: just under 512 KB of training text gets half the memory of
    the same text plus 8 KB, and the held-out bytes were credited with the difference (random bytes below 8 bits)."""
    require_program("7z")  # .ci/run installs it
    rng = np.random.default_rng(0)
    words = ["int", "char", "return", "if", "for", "static", "void", "struct", "x", "y", "i", "n", "(", ")", "{", "}",
             ";", "=", "+", "\n"]
    train = " ".join(rng.choice(words, 200_000)).encode()[:520_000]
    noise = rng.integers(0, 256, 8192, dtype=np.uint8).tobytes()
    assert baselines.ppmd_conditional_bits_per_byte(train, noise) >= 8.0


def test_zpaq_sizes_both_inputs_with_the_model_it_picks_for_train_and_heldout(monkeypatch):
    methods = []

    def archiver(argv, archive, data):
        methods.append(argv[4])
        chosen = "56,178,1" if argv[4] == "-m5" else argv[4][2:] + ",178,0"  # what zpaq prints: given, then its own
        return 8 * len(data), f"Adding {len(data)} bytes\n+ data {len(data)}\n[1..1] {len(data)} -method {chosen}\n"

    monkeypatch.setattr(baselines, "_run_archiver", archiver)
    assert baselines.zpaq_conditional_bits_per_byte(b"abcd", b"ef") == 8.0
    assert methods == ["-m5", "-m56,178,1"]  # train alone with the method chosen for train + heldout, not its own
    monkeypatch.setattr(baselines, "_run_archiver", lambda argv, archive, data: (8, "no method here"))
    with pytest.raises(RuntimeError, match="names no compression method"):
        baselines.zpaq_conditional_bits_per_byte(b"abcd", b"ef")


def test_zpaq_charges_a_few_appended_bytes_little_and_never_less_than_nothing():
    require_program("zpaq")
    train = b"".join(b"static int f%d(int a) { return a * %d; }\n" % (i, i) for i in range(400))
    cost = baselines.zpaq_conditional_bits_per_byte(train, b"/* x */\n" * 10)
    assert 0.0 <= cost < 4.0


def test_missing_or_failing_programs_are_reported_not_raised(monkeypatch):
    monkeypatch.setattr(baselines.shutil, "which", lambda program: None)
    report = compressor_baselines(b"int a;\n" * 20, [b"int b;\n"])
    assert report["zpaq"] == {"bits_per_byte": None, "note": "zpaq not installed"}
    assert report["ppmd"] == {"bits_per_byte": None, "note": "7z not installed"}
    assert 0.0 < report["xz"]["bits_per_byte"] < 8.0  # xz is Python's own
    monkeypatch.setattr(baselines.shutil, "which", lambda program: "/bin/false")
    monkeypatch.setitem(baselines.COMPRESSORS, "zpaq", ("false", lambda train, heldout, train_bits: (
        baselines._run_archiver(["false"], "a.zpaq", train + heldout)[0])))
    assert compressor_baselines(b"int a;\n", [b"int b;\n"])["zpaq"] == {
        "bits_per_byte": None, "note": "false failed: exit status 1"}


@pytest.mark.parametrize("error, note", [(MemoryError(), "xz failed: out of memory"),
                                         (lzma.LZMAError("Memory usage limit was reached"),
                                          "xz failed: Memory usage limit was reached")])
def test_a_compressor_out_of_memory_is_reported_not_raised(monkeypatch, error, note):
    def exhausted(data):
        raise error

    monkeypatch.setattr(baselines.shutil, "which", lambda program: None)
    monkeypatch.setattr(baselines, "xz_bits", exhausted)
    assert compressor_baselines(b"int a;\n", [b"int b;\n"])["xz"] == {"bits_per_byte": None, "note": note}


def test_at_most_a_few_compressor_runs_at_once_however_many_cores(monkeypatch):
    workers = []

    class Recording(ThreadPoolExecutor):
        def __init__(self, max_workers):
            workers.append(max_workers)
            super().__init__(max_workers)

    monkeypatch.setattr(baselines.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(baselines, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(baselines.shutil, "which", lambda program: None)
    compressor_baselines(b"int a;\n", [b"int b;\n"] * 8)
    assert workers == [baselines.MAX_PARALLEL_RUNS] == [4]


def test_the_training_bytes_are_compressed_once_per_call(monkeypatch):
    """Eight held-out files share one compression of the training bytes, and a second call does not reuse the
    first call's."""
    inputs = []

    def counting(data):
        inputs.append(data)
        return 8 * len(set(data)) + len(data)

    monkeypatch.setattr(baselines.shutil, "which", lambda program: None)
    monkeypatch.setattr(baselines, "xz_bits", counting)
    train, heldout = b"int a;\n" * 20, [b"int b%d;\n" % i for i in range(8)]
    for calls in (1, 2):
        assert compressor_baselines(train, heldout)["xz"]["runs"] == 8
        assert inputs.count(train) == calls and len(inputs) == 9 * calls


def test_zpaq_compresses_the_training_bytes_once_per_model_it_picks(monkeypatch):
    """zpaq picks a model per held-out file (from train + file); the training bytes are compressed once for each
    model picked, not once per file."""
    train = b"int a;\n" * 20
    train_runs = []

    def archiver(argv, archive, data):
        if data == train:
            train_runs.append(argv[4])
        chosen = argv[4][2:] if data == train else "56,178,1" if data.endswith(b"x") else "56,178,0"
        return 8 * len(data), f"+ data {len(data)}\n[1..1] {len(data)} -method {chosen}\n"

    monkeypatch.setattr(baselines, "COMPRESSORS", {"zpaq": baselines.COMPRESSORS["zpaq"]})
    monkeypatch.setattr(baselines.shutil, "which", lambda program: "/usr/bin/" + program)
    monkeypatch.setattr(baselines, "_run_archiver", archiver)
    report = compressor_baselines(train, [b"int b;x", b"int c;y", b"int d;x", b"int e;y", b"int f;x"])
    assert report["zpaq"] == {"bits_per_byte": 8.0, "runs": 5}
    assert sorted(train_runs) == ["-m56,178,0", "-m56,178,1"]


def test_each_held_out_file_is_conditioned_on_the_training_bytes_alone(monkeypatch):
    """A file that repeats an earlier held-out file must not get it for free: the model never sees other held-out
    files, so neither may the compressors."""
    monkeypatch.setattr(baselines.shutil, "which", lambda program: None)  # xz only: Python's own
    rng = np.random.default_rng(3)
    train = b"static int add(int a, int b) { return a + b; }\n" * 50
    novel = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    report = compressor_baselines(train, [novel, novel])
    assert report["xz"]["runs"] == 2
    assert report["xz"]["bits_per_byte"] > 7.5  # in one stream the second copy would cost almost nothing (~4 bits)
    with pytest.raises(ValueError, match="no held-out bytes"):
        compressor_baselines(train, [b""])


def test_file_groups_keep_every_file_once_and_group_only_over_the_input_cap():
    assert baselines.file_groups([10, 20, 30], train_bytes=100) == [range(0, 1), range(1, 2), range(2, 3)]
    groups = baselines.file_groups([10] * 10, train_bytes=100, max_input=700)
    assert [i for group in groups for i in group] == list(range(10))
    assert len(groups) == 6  # the most that fit: 6 * 100 training bytes + 100 held-out bytes = 700
    assert baselines.file_groups([10] * 4, train_bytes=10**9, max_input=10) == [range(0, 4)]
    assert baselines.file_groups([10] * 4, train_bytes=0, max_input=10) == [range(i, i + 1) for i in range(4)]
