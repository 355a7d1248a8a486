"""cllm.server: the faces of the engine: the `cllm` CLI, the language server and the HTTP server."""
