"""The one base class of the engine's own errors, so that the faces (CLI, servers) catch a single type.

Each subclass stays beside the code that raises it (CheckpointError in checkpoint.py, TrainError in train.py,
SphereError in spheres.py, EvalError in evaluate.py, WorkspaceBusy in paths.py); its message is one line that
says what is wrong and what to do, ready to show to a user as it is.
"""


class CllmError(Exception):
    """An error cllm expects and explains: a bad model file, impossible settings, a busy workspace, ..."""
