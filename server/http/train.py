"""The training routes: POST /v1/train starts training the workspace (or a folder inside it, checked against the
allowed roots) with the editor settings' keys, POST /v1/train/cancel stops the run; progress is on /v1/events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ..settings import parse_settings
from .api import POLICY, WORKSPACE, error, read_json_object
from .input import path_field
from .security import AccessPolicy, PathOutsideRoot


def parse_train_request(policy: AccessPolicy, body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for Workspace.start_training from {"path"?, "training"?: {camelCase settings}}.

    The path is checked against the allowed roots (after symlinks) before anything is read; training options
    use the same keys and checks as the editor settings (server/settings.py).
    """
    unknown = set(body) - {"path", "training"}
    if unknown:
        raise error(400, f"unknown field(s) {sorted(unknown)}; expected 'path' and/or 'training'")
    kwargs: dict[str, Any] = {}
    if body.get("training") is not None:
        settings, problems = parse_settings({"training": body["training"]})
        if problems:
            raise error(400, "; ".join(problems))
        kwargs.update(settings.training)
    requested = path_field(body, "path")
    if requested is not None:
        kwargs["path"] = _training_folder(policy, requested)
    return kwargs


def _training_folder(policy: AccessPolicy, requested: str) -> Path:
    """The folder `requested` names: 403 outside the allowed roots, 404 when it is no folder, 400 when it cannot
    be looked up (a name past the system's length limits, a symlink loop, a folder cllm may not read)."""
    shown = requested if len(requested) <= 80 else requested[:77] + "..."
    try:
        path = policy.resolve_training_path(requested)
        if path.is_dir():
            return path
    except PathOutsideRoot as exc:
        raise error(403, str(exc)) from None
    except (OSError, ValueError) as exc:
        raise error(400, f"path {shown!r} cannot be used: {getattr(exc, 'strerror', None) or exc}") from None
    raise error(404, f"path {shown!r} is not a folder")


async def train(request: web.Request) -> web.Response:
    """POST /v1/train: start training (202), 429 when a run is already going."""
    kwargs = parse_train_request(request.app[POLICY], await read_json_object(request, optional=True))
    result = request.app[WORKSPACE].start_training(**kwargs)
    if result.get("started"):
        return web.json_response(result, status=202)
    status_code = {"busy": 429, "unavailable": 503}.get(result.get("code"), 400)
    raise error(status_code, result.get("reason", "training did not start"))


async def cancel(request: web.Request) -> web.Response:
    """POST /v1/train/cancel: {"cancelled": true} when a run was stopped, false when none was running."""
    return web.json_response({"cancelled": bool(request.app[WORKSPACE].cancel_training())})
