"""cllm.engine: the model. Knows nothing of editors or networks."""
