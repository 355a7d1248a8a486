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
- train(workspace, ..., start=FromBase(path)) -> the final training record, or TrainError (engine/train/start.py);
- scan_base_corpus(paths) and pretrain(corpus, ...) -> a base model from the machine's own C (engine/train/pretrain.py);
- evaluation_files(model, on) and evaluate(model, documents, train_documents, ...) -> the report, format_table for
  text, or EvalError.
The modules behind them are named for what they hold (engine/complete/serving.py, generate.py, mixture.py, ngram.py, ...).
`train` and `evaluate` here are the functions; their modules stay importable as `from cllm.engine.train.loop import ...`.
"""

from .model.checkpoint import CheckpointError
from .eval.evaluate import DEFAULT_POSITIONS, EvalError, evaluate, evaluation_files, format_table
from .complete.generate import Completer, Completion, CompletionOptions, Model
from .complete.serving import complete, indexed_completer, load_model, make_completer
from .train.pretrain import pretrain, scan_base_corpus
from .train.loop import TrainError, train
from .complete.workspace_index import IndexSettings

__all__ = ["DEFAULT_POSITIONS", "CheckpointError", "Completer", "Completion", "CompletionOptions", "EvalError",
           "IndexSettings", "Model", "TrainError", "complete", "evaluate", "evaluation_files", "format_table",
           "indexed_completer", "load_model", "make_completer", "pretrain", "scan_base_corpus", "train"]
