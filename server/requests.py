"""A workspace's settings and the requests checked against them: completion options, file paths, training.

Plain functions of the workspace's root and its parsed settings (server/settings.py), so that server/workspace.py
keeps only the composition.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from cllm.engine import CompletionOptions

from .settings import DEFAULT_EDITOR_TIME_BUDGET, Settings, check_training, parse_settings
from .trainer_job import refused

log = logging.getLogger("cllm.server.workspace.settings")  # under the workspace's logger, where its lines always were


def parsed_settings(settings: dict | None) -> tuple[Settings, list[str]]:
    """The parsed `cllm` settings object and its problems, each logged (they are ignored, the rest applies)."""
    parsed, problems = parse_settings(settings)
    for problem in problems:
        log.warning("%s", problem)
    return parsed, problems


def completion_options(settings: Settings, **overrides: Any) -> CompletionOptions:
    """Engine defaults, then the settings (maxTokens, multiline), then per-request overrides."""
    values: dict[str, Any] = {}
    if settings.max_tokens is not None:
        values["max_tokens"] = settings.max_tokens
    if settings.multiline is not None:
        values["multiline"] = settings.multiline
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(CompletionOptions)})
    if unknown:
        raise ValueError(f"unknown completion option(s): {', '.join(unknown)}")
    return CompletionOptions(**values)


def relative_path(root: Path, path: str | Path | None) -> str | None:
    """A file's path as the model saw it in training: relative to `root`, '/'-separated, when inside."""
    if path is None:
        return None
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(root).as_posix()
        except (ValueError, OSError):
            return candidate.name
    return candidate.as_posix()


def training_options(settings: Settings, overrides: dict[str, Any]) -> tuple[dict[str, int | float], list[str]]:
    """The checked options of a run: the editors' default budget, the `training` settings, then `overrides`."""
    return check_training({"time_budget": DEFAULT_EDITOR_TIME_BUDGET, **settings.training,
                           **{name: value for name, value in overrides.items() if value is not None}})


def check_request(root: Path, settings: Settings, path: Path | str | None,
                  overrides: dict[str, Any]) -> tuple[dict[str, int | float], Path, dict[str, Any] | None]:
    """(options, source folder, None) for a good training request, else (..., the refusal)."""
    options, problems = training_options(settings, overrides)
    source = root if path is None else Path(path).expanduser().resolve()
    if problems:
        return options, source, refused("invalid", "; ".join(problems))
    if not source.is_dir():
        return options, source, refused("invalid", f"folder {source} does not exist")
    if not source.is_relative_to(root):
        return options, source, refused("invalid", f"folder {source} is not inside the workspace {root}")
    return options, source, None
