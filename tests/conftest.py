"""Shared fixtures and helpers: a tiny trained model, a small C workspace, external-program requirements."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from collections.abc import Iterator
from typing import NoReturn

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from cllm.engine.model.checkpoint import Checkpoint, save_checkpoint
from cllm.engine.config import ModelConfig, TrainConfig, to_dict
from cllm.engine.data.windows import FIM_EXTRA_TOKENS, FIM_FORMAT, FimTokens, fim_sequence
from cllm.engine.model.kernels import adamw_step
from cllm.engine.model.network import forward_backward, make_scratch
from cllm.engine.model.params import decay_mask, init_params
from cllm.engine.model.tokenizer import Tokenizer

TINY_C_SOURCES = {
    "src/main.c": "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
    "src/math.c": (
        "static int add(int a, int b) {\n    return a + b;\n}\n\n"
        "static int max(int a, int b) {\n    if (a > b) {\n        return a;\n    }\n    return b;\n}\n"
    ),
    "src/loop.c": (
        "int sum(const int *v, int n) {\n    int total = 0;\n    for (int i = 0; i < n; i++) {\n"
        "        total += v[i];\n    }\n    return total;\n}\n"
    ),
}
TINY_SEQ_LEN = 64


def build_tiny_model(path: Path, steps: int = 300, seed: int = 0) -> Path:
    """Train a tiny model on TINY_C_SOURCES for `steps` AdamW steps (a few seconds) and save it to `path`.

    Small enough for tests (vocab ~300, d 32, 2 layers) yet trained, half of the windows as fill-in-the-middle,
    so it completes the snippets it saw."""
    texts = list(TINY_C_SOURCES.values())
    tokenizer = Tokenizer.train(texts, vocab_size=320)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                      max_seq_len=TINY_SEQ_LEN, dropout=0.0)
    stream = np.concatenate([tokenizer.encode_document(p, t) for p, t in TINY_C_SOURCES.items()])
    rng = np.random.default_rng(seed)
    fim = FimTokens.from_tokenizer(tokenizer)
    params = init_params(cfg, seed)
    grads, m, v = np.zeros_like(params), np.zeros_like(params), np.zeros_like(params)
    mask = decay_mask(cfg)
    batch, seq = 8, TINY_SEQ_LEN
    scratch = make_scratch(cfg, batch, seq)
    with threadpool_limits(1):  # tiny matrices: BLAS threads would only add contention
        for step in range(1, steps + 1):
            windows = [stream[s:s + seq + 1] for s in rng.integers(0, len(stream) - seq - 1, batch)]
            windows = np.stack([fim_sequence(w[:-FIM_EXTRA_TOKENS], rng.integers(0, seq - 2), fim) if rng.random() < 0.5
                                else w for w in windows])
            inputs, targets = windows[:, :-1].copy(), windows[:, 1:].copy()
            grads[:] = 0.0
            forward_backward(params, grads, inputs, targets, cfg, scratch, dropout=0.0, seed=step,
                             loss_scale=1.0 / inputs.size)
            adamw_step(params, grads, m, v, mask, 1e-2, 0.9, 0.95, 1e-8, 0.0, step)
    train_config = to_dict(TrainConfig(seq_len=seq, batch_size=batch))
    metadata = {"seq_len": seq, "train_config": train_config, "steps": steps, "files": len(texts), "fim": FIM_FORMAT}
    save_checkpoint(path, Checkpoint(cfg, tokenizer.to_json(), params, metadata))
    return path


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test, and every server or trainer it starts, keeps its cache (models, locks, bases) in a temporary
    folder, never in the user's own cache; none of them sees the package's shipped base unless a test names one
    (CLLM_SHIPPED_BASE), so that "no model yet" stays a state the tests can reach; no server they start warms
    the kernels up in the background (CLLM_BACKGROUND_WARMUP), which would only compete for the cores."""
    cache = tmp_path_factory.mktemp("cache")
    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "CLLM_SHIPPED_BASE", "CLLM_BACKGROUND_WARMUP")}
    os.environ["XDG_CACHE_HOME"] = str(cache)
    os.environ["CLLM_SHIPPED_BASE"] = ""
    os.environ["CLLM_BACKGROUND_WARMUP"] = "0"
    yield cache
    for name, previous in saved.items():
        if previous is None:
            os.environ.pop(name)
        else:
            os.environ[name] = previous


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained .cllm model (see build_tiny_model), built once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model.cllm")


def write_tiny_sources(root: Path) -> Path:
    """TINY_C_SOURCES (the files the tiny model was trained on) written out as a workspace at `root`."""
    for rel, text in TINY_C_SOURCES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def write_c_workspace(root: Path, files: int = 8) -> Path:
    """A small, varied but learnable C workspace (files x ~1.5 KB) for training tests."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(files)
    for i in range(files):
        parts = [f"#include <stdio.h>\n#include \"util{i % 3}.h\"\n\n/* Module {i}: small helpers. */\n\n"]
        for j in range(10):
            k, op = int(rng.integers(1, 9)), "+-*"[int(rng.integers(0, 3))]
            parts.append(f"static int step_{i}_{j}(int a, int b)\n{{\n    int s = a {op} b * {k};\n"
                         f"    if (s > {10 * k}) {{\n        return s - {k};\n    }}\n    return s;\n}}\n\n")
        parts.append(f"int main(void)\n{{\n    printf(\"%d\\n\", step_{i}_0(1, 2));\n    return 0;\n}}\n")
        (root / f"mod{i}.c").write_text("".join(parts))
    return root


@pytest.fixture
def c_workspace(tmp_path: Path) -> Path:
    """A folder of eight small C files (see write_c_workspace)."""
    return write_c_workspace(tmp_path / "ws")


def require_program(program: str) -> str:
    """The path of an external program an end-to-end test needs (nvim, chromium, node).

    Absent, the test is skipped, unless CLLM_REQUIRE_E2E=1 (as in CI), where a missing program is a failure."""
    found = shutil.which(program)
    if found:
        return found
    missing_prerequisite(f"{program} is not installed")


def missing_prerequisite(message: str) -> NoReturn:
    """Skip an end-to-end test whose prerequisite is missing, or fail it when CLLM_REQUIRE_E2E=1 (CI)."""
    if os.environ.get("CLLM_REQUIRE_E2E") == "1":
        pytest.fail(f"{message}, and CLLM_REQUIRE_E2E=1 requires every end-to-end test to run")
    pytest.skip(message)


TINY_INCLUDE_SOURCES = {
    "util.h": "#ifndef UTIL_H\n#define UTIL_H\nint util_add(int a, int b);\nint util_max(int a, int b);\n#endif\n",
    "list.h": (
        "#ifndef LIST_H\n#define LIST_H\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
        "struct list { struct list *next; int value; };\nint list_length(const struct list *l);\n"
        "#ifdef __cplusplus\n}\n#endif\n#endif\n"
    ),
    "sys/types.h": "typedef unsigned int uint;\ntypedef long ssize;\n",
    "util.c": "#include \"util.h\"\nint util_add(int a, int b) {\n    return a + b;\n}\n",
    "vector.h": "namespace tiny {\ntemplate <class T> class vector { T *data; };\n}\n",  # C++: left out
    "c++/12/algorithm.h": "int not_c;\n",  # a C++ tree: left out
}
TINY_BASE_MODEL = {"vocab_size": 300, "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "max_seq_len": 64}
TINY_BASE_TRAINING = {"seq_len": 32, "batch_size": 4, "spheres": 2, "threads": 1, "val_fraction": 0.3}


def write_tiny_include(root: Path) -> Path:
    """TINY_INCLUDE_SOURCES written out as a made-up system include folder at `root`."""
    for rel, text in TINY_INCLUDE_SOURCES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def build_tiny_base(include: Path, out: Path, steps: int = 20) -> Path:
    """A tiny base model pretrained (engine/train/pretrain.py) on the made-up include folder at `include`."""
    from cllm.engine.train.pretrain import pretrain, scan_base_corpus

    pretrain(scan_base_corpus([include]), ModelConfig(**TINY_BASE_MODEL),
             TrainConfig(max_steps=steps, **TINY_BASE_TRAINING), out)
    return out


@pytest.fixture(scope="session")
def tiny_base_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base model with its manifest (see build_tiny_base), built once per test session; its include
    folder is the file's sibling "include"."""
    folder = tmp_path_factory.mktemp("tiny_base")
    return build_tiny_base(write_tiny_include(folder / "include"), folder / "base.cllm")


# A workspace where a function is written twice: src/a.c holds it (its `if` on line 4), and completing its second
# copy in another file is a copy (Completion.source, engine/complete/sources.py).
COPIED_FUNCTION = ("static int clamp_zzz(int value, int low, int high) {\n    if (value < low) {\n"
                   "        return low;\n    }\n    return value > high ? high : value;\n}\n")
COPY_SOURCE = {"src/a.c": "/* helpers */\n\n" + COPIED_FUNCTION}
SECOND_COPY = "int y;\n\nstatic int clamp_zzz(int value, int low, int high) {\n    if (value < low"
SECOND_COPY_TEXT = ") {\n        return low;\n    }"  # what completing it multi-line copies


def copy_mixture_weights() -> np.ndarray:
    """Mixture weights half on the transformer, half on the match model: a match's prediction always wins."""
    from cllm.engine.complete.mixture import COMPONENTS, N_BUCKETS

    weights = np.zeros((N_BUCKETS, COMPONENTS))
    weights[:, 0] = weights[:, 3] = 0.5
    return weights


def write_copy_workspace(root: Path, model: Path, model_dir: Path) -> Path:
    """COPY_SOURCE as a workspace at `root`, and in `model_dir` the tiny `model` trained "on it", mixing with the
    match model (copy_mixture_weights) and showing every suggestion, however unsure (thresholds 0)."""
    from cllm.engine.complete.mixture import Mixture, mixture_metadata
    from cllm.engine.model.checkpoint import load_checkpoint

    for rel, text in COPY_SOURCE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    ckpt = load_checkpoint(model)
    ckpt.metadata.update(workspace=str(root), train_files=sorted(COPY_SOURCE),
                         mixture=mixture_metadata(Mixture(copy_mixture_weights())),
                         thresholds={"low": 0.0, "normal": 0.0, "high": 0.0})
    model_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model_dir / "model.cllm", ckpt)
    return root
