"""Loading a .cllm file for completion."""

import pytest

from cllm.engine.model.checkpoint import CheckpointError
from cllm.engine.complete.serving import load_model


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return load_model(tiny_model_path)


def test_load_model_reads_config_tokenizer_and_training_context(model, tiny_model_path):
    assert model.path == tiny_model_path
    assert model.context == 64  # the training seq_len recorded in the metadata
    assert model.tokenizer.vocab_size == model.config.vocab_size


def test_load_model_refuses_a_bad_file_clearly(tmp_path):
    bad = tmp_path / "bad.cllm"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(CheckpointError):
        load_model(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.cllm")
