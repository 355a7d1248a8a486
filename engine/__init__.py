"""cllm.engine: the model. Knows nothing of editors or networks.

The faces (the CLI, the language server, the HTTP server, the demo and the benchmarks) reach the model through
these names:
- load_model(path) -> Model (its training record parsed once, a TrainingMetadata), or CheckpointError saying what
  to do (engine/model/loaded.py);
- ServedModel(model, model_dir, IndexSettings(max_mb=...)) or ServedModel.open(path) -> the model serving
  completions: `complete(prefix, suffix, CompletionOptions, ...)` -> Completion; `build()` (or `start()` in the
  background) mixes in the workspace cache model from the workspace index (engine/complete/serving.py);
  `file_saved`, `swap`, `mixes`, `ready`;
- Completer(model).complete(...) -> Completion, the transformer alone (engine/complete/generate.py);
- train(workspace, ..., base=...) -> the final training record, or TrainError (fine-tuning a base when given);
- scan_base_corpus(paths) and pretrain(corpus, ...) -> a base model from the machine's own C (engine/train/pretrain.py);
- evaluation_files(model, on) and evaluate(model, documents, train_documents, ...) -> the report, format_table for
  text, or EvalError.
`train` and `evaluate` here are the functions; their modules stay importable as `from cllm.engine.train.loop import ...`.
"""

from .model.checkpoint import CheckpointError
from .model.loaded import Model, load_model
from .eval.evaluate import DEFAULT_POSITIONS, EvalError, evaluate, evaluation_files, format_table
from .complete.generate import Completer, Completion, CompletionOptions
from .complete.serving import ServedModel
from .train.pretrain import pretrain, scan_base_corpus
from .train.loop import TrainError, train
from .complete.workspace_index import IndexSettings

__all__ = ["DEFAULT_POSITIONS", "CheckpointError", "Completer", "Completion", "CompletionOptions", "EvalError",
           "IndexSettings", "Model", "ServedModel", "TrainError", "evaluate", "evaluation_files", "format_table",
           "load_model", "pretrain", "scan_base_corpus", "train"]
