"""The transformer: numba kernels (forward beside backward), the flat parameter buffer, the tokenizer, the .cllm
file and the loaded Model."""
