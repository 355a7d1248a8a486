"""The JSON-RPC layer under the language server: pygls' LanguageServerProtocol, made to answer what it
would drop."""

from __future__ import annotations

import logging
from typing import Any

from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)


class _Answered:
    """Stands in for a request already answered with an error: pygls drops messages whose jsonrpc is not 2.0."""

    jsonrpc = "answered"


class CllmProtocol(LanguageServerProtocol):
    """LanguageServerProtocol that answers requests whose parameters do not fit the method with an error
    (pygls alone would drop them and leave the client waiting)."""

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "jsonrpc" not in data or "method" not in data or "id" not in data:
                raise
            if isinstance(data["id"], (int, str)):
                self._send_response(data["id"], None, exc.to_response_error())
            log.warning("invalid parameters for %s: %s", data.get("method"), exc.__cause__ or exc)
            return _Answered()
