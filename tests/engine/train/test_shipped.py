"""engine/train/shipped.py: the shipped base is float16 weights and tokenizer only, and the base a workspace starts
from is the user's when it loads, else the shipped one."""

from pathlib import Path

import numpy as np
import pytest

from cllm.engine.events import TrainingMetadata
from cllm.engine.model.checkpoint import load_checkpoint
from cllm.engine.paths import default_base_path
from cllm.engine.train.shipped import SHIPPED_BASE_ENV, base_candidates, base_kind, best_base, export_shipped, shipped_base


def test_the_shipped_base_keeps_weights_as_float16_and_no_optimizer_state(tiny_base_path, tmp_path):
    source = load_checkpoint(tiny_base_path, with_optimizer=True)
    assert source.optimizer is not None  # a pretraining run's file carries its optimizer ...
    shipped = export_shipped(tiny_base_path, tmp_path / "base.cllm")
    loaded = load_checkpoint(shipped, with_optimizer=True)
    assert loaded.optimizer is None  # ... the shipped one does not
    assert loaded.params.dtype == np.float32
    np.testing.assert_array_equal(loaded.params, source.params.astype(np.float16).astype(np.float32))
    assert loaded.tokenizer_json == source.tokenizer_json
    meta, source_meta = TrainingMetadata.from_json(loaded.metadata), TrainingMetadata.from_json(source.metadata)
    assert source_meta.resume is not None and meta.resume is None
    assert meta.manifest == source_meta.manifest
    assert shipped.stat().st_size < tiny_base_path.stat().st_size


def test_without_a_user_base_the_shipped_one_serves(tiny_base_path, tmp_path, monkeypatch):
    monkeypatch.setenv(SHIPPED_BASE_ENV, str(tiny_base_path))
    assert not default_base_path().exists()
    assert best_base() == tiny_base_path
    assert base_kind(best_base()) == "shipped"


def test_a_user_base_that_loads_wins_over_the_shipped_one(tiny_base_path, tmp_path, monkeypatch):
    monkeypatch.setenv(SHIPPED_BASE_ENV, str(tiny_base_path))
    user = tmp_path / "user-base.cllm"
    user.write_bytes(tiny_base_path.read_bytes())
    assert best_base(user) == user
    assert base_kind(user) == "user"


def test_a_damaged_user_base_gives_way_to_the_shipped_one(tiny_base_path, tmp_path, monkeypatch):
    monkeypatch.setenv(SHIPPED_BASE_ENV, str(tiny_base_path))
    user = tmp_path / "user-base.cllm"
    user.write_bytes(tiny_base_path.read_bytes()[:1000])
    assert best_base(user) == tiny_base_path
    assert base_candidates(user) == [user, tiny_base_path]  # a server tries it and falls back when it fails
    assert base_candidates(tmp_path / "none.cllm") == [tiny_base_path]


@pytest.mark.parametrize("setting", ["", "/no/such/base.cllm"])
def test_no_shipped_base_when_the_variable_names_none(setting, monkeypatch):
    monkeypatch.setenv(SHIPPED_BASE_ENV, setting)
    assert shipped_base() is None
    assert best_base(Path("/no/user/base.cllm")) is None


def test_the_package_ships_a_base_of_the_seed_shape_within_15_mb_with_its_manifest_and_notice():
    from cllm.engine.config import ModelConfig
    from cllm.engine.train.shipped import SHIPPED_BASE, SHIPPED_DIR

    assert SHIPPED_BASE.stat().st_size <= 15 * 1024 * 1024
    loaded = load_checkpoint(SHIPPED_BASE, with_optimizer=True)
    assert loaded.optimizer is None
    assert loaded.model_config == ModelConfig(dropout=loaded.model_config.dropout)  # the seed's shape, 512-token context included
    meta = TrainingMetadata.from_json(loaded.metadata)
    assert meta.resume is None and len(meta.manifest) > 1000
    manifest = (SHIPPED_DIR / "MANIFEST.md").read_text()
    notice = (SHIPPED_DIR / "NOTICE").read_text()
    projects = [row.split("|")[3].strip() for row in manifest.splitlines() if row.startswith("| ") and
                row.split("|")[1].strip().isdigit()]
    assert len(projects) >= 40
    assert all(f"- {project} (" in notice for project in projects)
