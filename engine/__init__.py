"""cllm.engine: the model. Knows nothing of editors or networks.

The faces (the CLI, the language server, the HTTP server, the demo and the benchmarks) reach the model through
these names:
- load_model(path) -> Model, or CheckpointError saying what to do;
- make_completer(model) -> Completer, the completer the model ships with (`mixes` says whether it mixes the
  workspace cache model in); Completer.complete(prefix, suffix, CompletionOptions, ...) -> Completion;
- indexed_completer(model, model_dir, serve, IndexSettings(max_mb=...)) -> an IndexBuilder that builds the
  workspace index in the background (engine/complete/workspace_index.py), capped in memory, and serves a mixing completer
  from its snapshots, for servers;
- complete(model, prefix, suffix, options, path=...) -> Completion, through one shared completer per model;
- train(workspace, ..., base=...) -> the final training record, or TrainError (fine-tuning a base when given);
- scan_base_corpus(paths) and pretrain(corpus, ...) -> a base model from the machine's own C (engine/train/pretrain.py);
- evaluation_files(model, on) and evaluate(model, documents, train_documents, ...) -> the report, format_table for
  text, or EvalError.
The modules behind them are named for what they hold (engine/complete/serving.py, generate.py, mixture.py, ngram.py, ...).
`train` and `evaluate` here are the functions; their modules stay importable as `from cllm.engine.train.loop import ...`.
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
    "CompletionOptions": ".complete.generate", "Model": ".complete.generate",
    "complete": ".complete.serving", "indexed_completer": ".complete.serving", "load_model": ".complete.serving",
    "make_completer": ".complete.serving",
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
    """This package, where `train` and `complete` stay the functions: importing the subpackages of the same name
    would otherwise set them as attributes of their parent, over the functions."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in _HOMES and isinstance(value, ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade
