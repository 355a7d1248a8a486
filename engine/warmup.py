"""Compile every numba kernel into numba's cache before the first use needs it (`cllm warmup`).

A fresh install compiles each kernel the first time it runs, which makes the first completion wait half a minute.
Rather than listing kernel signatures by hand, warm_up drives the real callers with tiny inputs: it trains a tiny
model on a few made-up C files (spheres, forward and backward, AdamW, validation, the mixture's fit), then serves it
as the servers do (the workspace cache model, a prompt, a keystroke reusing the KV cache, fill-in-the-middle,
sampling). Whatever compiles lands in numba's cache (`cache=True` on every kernel), so the next process loads it.
kernels() lists every dispatcher of the engine, so that a caller can tell which of them are ready.
"""

from __future__ import annotations

import importlib
import pkgutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_SOURCES = {
    "src/list.c": (
        "#include \"list.h\"\n\nstruct node *list_push(struct node *head, int value) {\n"
        "    struct node *n = malloc(sizeof *n);\n    n->value = value;\n    n->next = head;\n    return n;\n}\n\n"
        "int list_sum(const struct node *head) {\n    int total = 0;\n    for (; head; head = head->next) {\n"
        "        total += head->value;\n    }\n    return total;\n}\n"
    ),
    "src/list.h": (
        "#ifndef LIST_H\n#define LIST_H\n#include <stdlib.h>\nstruct node { int value; struct node *next; };\n"
        "struct node *list_push(struct node *head, int value);\nint list_sum(const struct node *head);\n#endif\n"
    ),
    "src/main.c": "#include <stdio.h>\n#include \"list.h\"\n\nint main(void) {\n    struct node *head = NULL;\n"
                  "    for (int i = 0; i < 10; i++) {\n        head = list_push(head, i);\n    }\n"
                  "    printf(\"%d\\n\", list_sum(head));\n    return 0;\n}\n",
    "src/max.c": "static int max(int a, int b) {\n    if (a > b) {\n        return a;\n    }\n    return b;\n}\n",
}
_MODEL = Path("model") / "model.cllm"  # where, in the scratch folder, the first stage leaves the model for the second
_PREFIX = "#include \"list.h\"\n\nint list_count(const struct node *head) {\n    int n = 0;\n"


@dataclass(frozen=True)
class Kernel:
    """One numba kernel of the engine: its module-qualified name, and whether numba inlines it into its callers
    (then it never has a compiled entry of its own)."""

    name: str
    dispatcher: object
    inlined: bool

    def signatures(self) -> list:
        """The argument types it is compiled for in this process (from numba's cache or just now)."""
        return list(self.dispatcher.signatures)

    def status(self) -> str:
        """"inlined"; "compiled" in this process; "cache": loaded from numba's cache, or in it for the next
        process (a kernel only other kernels call loads with them, so it may have no signature here); "missing"."""
        if self.inlined:
            return "inlined"
        stats = self.dispatcher.stats
        if stats.cache_misses:
            return "compiled"
        return "cache" if stats.cache_hits or self._in_cache() else "missing"

    def _in_cache(self) -> bool:
        """Whether numba's cache holds an entry for this kernel's current source."""
        try:
            return bool(self.dispatcher._cache._cache_file._load_index())
        except (AttributeError, OSError):  # numba's cache internals moved, or no cache folder
            return False


def kernels() -> list[Kernel]:
    """Every numba dispatcher defined in the engine's modules (each module imported), sorted by name."""
    from numba.core.registry import CPUDispatcher

    import cllm.engine as engine

    found: dict[str, Kernel] = {}
    for info in pkgutil.walk_packages(engine.__path__, engine.__name__ + "."):
        module = importlib.import_module(info.name)
        for attr, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                name = f"{module.__name__.removeprefix('cllm.engine.')}.{attr}"
                found[name] = Kernel(name, value, value.targetoptions.get("inline") == "always")
    return [found[name] for name in sorted(found)]


def _train(folder: Path) -> None:
    """Train a tiny model of _SOURCES into folder/_MODEL as `cllm train` trains (two spheres, dropout,
    validation, the mixture's fit)."""
    from .config import ModelConfig, TrainConfig
    from .train.loop import train

    workspace = folder / "workspace"
    for rel, text in _SOURCES.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    out = folder / _MODEL
    out.parent.mkdir()
    model = ModelConfig(vocab_size=300, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=32, dropout=0.1)
    training = TrainConfig(epochs=1, batch_size=4, seq_len=32, grad_accum=1, spheres=2, threads=2, max_steps=2,
                           warmup_steps=1, val_fraction=0.25)
    train(workspace, model, training, out)


def _serve(folder: Path) -> None:
    """Serve the model at folder/_MODEL as the servers do: the cache model, a prompt, a keystroke reusing the KV
    cache, fill-in-the-middle, sampling."""
    from .complete.generate import CompletionOptions
    from .complete.serving import ServedModel

    served = ServedModel.open(folder / _MODEL)
    served.build()
    greedy = CompletionOptions(max_tokens=8)
    served.complete(_PREFIX, "", greedy, path="src/count.c", doc_key="warmup")
    served.complete(_PREFIX + "    for", "", greedy, path="src/count.c", doc_key="warmup")
    served.complete(_PREFIX, "    return n;\n}\n", CompletionOptions(max_tokens=8, multiline=True), path="src/count.c")
    served.complete(_PREFIX, "", CompletionOptions(max_tokens=8, temperature=0.8, top_k=20, top_p=0.9))
    served.stop()


@dataclass(frozen=True)
class Stage:
    """One part of the warm-up: what it drives, and the function that drives it (given a scratch folder)."""

    title: str
    run: Callable[[Path], None]


def stages() -> list[Stage]:
    """The warm-up's parts, in order (the second serves the model the first trains)."""
    return [Stage("training a tiny model", _train), Stage("serving completions", _serve)]


def warm_up(on_stage: Callable[[Stage], None] = lambda stage: None) -> list[Kernel]:
    """Run every stage (calling `on_stage` before each) in a scratch folder; returns kernels() afterwards."""
    with tempfile.TemporaryDirectory(prefix="cllm-warmup-") as scratch:
        for stage in stages():
            on_stage(stage)
            stage.run(Path(scratch))
    return kernels()
