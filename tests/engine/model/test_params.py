"""The flat parameter buffer: names, shapes, views, initialisation and the weight-decay mask."""

import numpy as np
import pytest

from cllm.engine.config import ModelConfig
from cllm.engine.model.params import decay_mask, init_params, num_params, param_specs, views

CFG = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=32, positions="learned")


def test_specs_follow_the_contract():
    specs = dict(param_specs(CFG))
    assert specs["wte"] == (300, 32)
    assert specs["wpe"] == (32, 32)
    assert specs["layers.1.attn.qkv.weight"] == (32, 96)
    assert specs["layers.1.attn.qkv.bias"] == (96,)
    assert specs["layers.0.attn.proj.weight"] == (32, 32)
    assert specs["layers.0.mlp.fc.weight"] == (32, 64)
    assert specs["layers.0.mlp.fc.bias"] == (64,)
    assert specs["layers.0.mlp.proj.weight"] == (64, 32)
    assert specs["ln_f.weight"] == (32,) and specs["ln_f.bias"] == (32,)
    assert len(specs) == 2 + 12 * CFG.n_layers + 2
    assert num_params(CFG) == sum(int(np.prod(s)) for s in specs.values())


def test_rotary_positions_have_no_position_table():
    rope = ModelConfig(vocab_size=300, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=32, positions="rope")
    assert "wpe" not in dict(param_specs(rope))
    assert num_params(CFG) - num_params(rope) == 32 * 32


def test_views_share_memory_and_tile_the_buffer():
    flat = np.zeros(num_params(CFG), np.float32)
    named = views(flat, CFG)
    named["ln_f.bias"][3] = 7.0
    assert flat[-32 + 3] == 7.0
    named["wte"][0, 0] = 1.0
    assert flat[0] == 1.0
    assert sum(v.size for v in named.values()) == flat.size
    assert all(v.flags.c_contiguous for v in named.values())


def test_views_refuse_a_buffer_of_the_wrong_size():
    with pytest.raises(ValueError, match="expected"):
        views(np.zeros(10, np.float32), CFG)


def test_init_is_gpt2_style_and_seeded():
    big = ModelConfig(vocab_size=2000, d_model=64, n_layers=4, n_heads=4, d_ff=256, max_seq_len=64)
    flat = init_params(big, seed=3)
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat, init_params(big, seed=3))
    assert not np.array_equal(flat, init_params(big, seed=4))
    named = views(flat, big)
    assert abs(named["wte"].std() - 0.02) < 0.001
    assert abs(named["layers.0.mlp.fc.weight"].std() - 0.02) < 0.001
    scaled = 0.02 / np.sqrt(8)
    assert abs(named["layers.2.mlp.proj.weight"].std() - scaled) < 0.0005
    assert abs(named["layers.1.attn.proj.weight"].std() - scaled) < 0.0005
    assert np.all(named["layers.3.ln2.weight"] == 1.0) and np.all(named["ln_f.weight"] == 1.0)
    assert np.all(named["layers.3.ln2.bias"] == 0.0) and np.all(named["layers.0.attn.qkv.bias"] == 0.0)


def test_decay_mask_covers_matrices_only():
    named = views(decay_mask(CFG), CFG)
    for name, view in named.items():
        assert np.all(view == (1.0 if view.ndim == 2 else 0.0)), name
