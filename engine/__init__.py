"""cllm.engine: the model, from files to completions; it knows nothing of editors or networks.

The faces (server/cli, server/lsp.py, server/http, the demo and the benchmarks) reach it through the names below:
loading a model and completing with it (engine/complete), training and pretraining (engine/train), and evaluating
(engine/eval). The folders follow the path data takes: data/ -> model/ -> train/ -> complete/ -> eval/.
"""

import importlib
import sys
from types import ModuleType
from typing import Any

# name -> the module that defines it, imported on first use: reading engine/config.py does not load numba
_HOMES = {
    "CheckpointError": ".model.checkpoint",
    "DEFAULT_POSITIONS": ".eval.evaluate", "EvalError": ".eval.evaluate", "evaluate": ".eval.evaluate",
    "evaluation_files": ".eval.evaluate", "format_table": ".eval.evaluate",
    "Completer": ".complete.generate", "Completion": ".complete.generate",
    "CompletionOptions": ".complete.generate", "Model": ".model.loaded", "load_model": ".model.loaded",
    "ServedModel": ".complete.serving",
    "pretrain": ".train.pretrain", "scan_base_corpus": ".train.pretrain",
    "TrainError": ".train.loop", "train": ".train.loop",
    "IndexSettings": ".complete.workspace_index",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """Import the module holding `name` on first use and keep the name here."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value


class _Facade(ModuleType):
    """This package, where `train` stays the function: importing the subpackage of the same name would otherwise
    set it as an attribute of its parent, over the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _HOMES and isinstance(value, ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade
