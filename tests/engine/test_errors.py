"""One base class for the engine's own errors: the faces catch CllmError and show its one-line message."""

import pytest

from cllm.engine.model.checkpoint import CheckpointError
from cllm.engine.errors import CllmError
from cllm.engine.eval.evaluate import EvalError
from cllm.engine.paths import WorkspaceBusy
from cllm.engine.train.spheres import SphereError
from cllm.engine.train.loop import TrainError


@pytest.mark.parametrize("error", [CheckpointError, TrainError, SphereError, EvalError, WorkspaceBusy])
def test_every_engine_error_is_a_cllm_error(error):
    with pytest.raises(CllmError, match="what went wrong"):
        raise error("what went wrong")


def test_errors_keep_their_builtin_kinds():
    """Callers that caught the builtin kinds before the common base still catch them."""
    assert issubclass(TrainError, ValueError)
    assert issubclass(SphereError, RuntimeError) and issubclass(WorkspaceBusy, RuntimeError)
