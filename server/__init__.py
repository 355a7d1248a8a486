"""cllm.server: the faces of the engine: the `cllm` CLI, the language server and the HTTP server."""

from importlib.metadata import version

__version__ = version("cllm")  # the one source is pyproject.toml's [project] version
