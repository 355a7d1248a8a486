"""cllm.engine: the model, from files to completions; it knows nothing of editors or networks.

The faces (server/cli, server/lsp.py, server/http, the demo and the benchmarks) reach it through the names below:
loading a model and completing with it (engine/complete), training and pretraining (engine/train), and evaluating
(engine/eval). The folders follow the path data takes: data/ -> model/ -> train/ -> complete/ -> eval/.
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
