"""`cllm eval`: held-out scoring, line completion and syntax checks beside the 5-gram and compressor baselines."""
