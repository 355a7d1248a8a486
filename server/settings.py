"""The `cllm` settings section: what editors may configure, checked once and turned into plain values.

Every editor configures the server alike, through `initializationOptions` or the `cllm` section of
`workspace/didChangeConfiguration` (or of the `workspace/configuration` pull):

    {"enable": true, "maxTokens": 64, "multiline": true, "modelDir": "/path", "indexMemoryMB": 512,
     "learnWhileIdle": true, "idleSeconds": 90, "eagerness": "normal",
     "training": {"epochs": 10, "timeBudget": 600, "spheres": 12, "threads": 0}}

`learnWhileIdle` (default true) lets the model learn in the background from saved files once the editor has been
idle for `idleSeconds` (default 90); server/learning.py.

`indexMemoryMB` caps the workspace index (the 5-gram and match index the completions mix in,
engine/complete/workspace_index.py): past it a deterministic sample of the files is indexed. A change applies at the next
build of the index, that is the next model load (a new model, a modelDir change or a restart).

The other training keys (mainly for tests and experiments) are the options of engine/config.py that have a
setting name: each is the `cllm train` flag it maps to, checked alike (OPTIONS; e.g. maxSteps, dModel, layers).
`noGitignore` (true or false, as `cllm train --no-gitignore`) takes every C file of the workspace, whatever git
ignores. Training continues the workspace's model when there is one (as `cllm train` does); `fresh: true` starts
over.

When no base model exists at all (neither the user's from `cllm pretrain` nor the one shipped in the package, as
when a packager ships none), `training.base` says what "Train on Workspace" does: "ask" (the default: the language
server asks the user), "prepare" (build the base first, then fine-tune on it) or "scratch". With a base, training
fine-tunes it and nothing is asked.
`training.baseCorpus` (a list of folders, mainly for tests) is what a prepared base learns from, as `cllm pretrain
PATH...`; by default the system's C headers and sources.

`eagerness` ("low", "normal" or "high"; default "normal") hides a suggestion whose confidence is below the model's
threshold for it (engine/complete/confidence.py): low shows only suggestions that are nearly always right, high
shows more of the uncertain ones.

Unknown keys and values of the wrong type are reported (one message per problem) and ignored; the rest of the
settings still apply. Unset values mean "the engine's default" (engine/config.py, engine/complete/generate.py).

Layers (`layer_settings`): initializationOptions are the base and the client's `cllm` section is laid over
them key by key (`training` too; null clears a key). A client with no section at all (eglot sends `{"settings": {}}` and answers
the pull with null) leaves initializationOptions in force.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cllm.engine.complete.confidence import DEFAULT_EAGERNESS, check_eagerness
from cllm.engine.config import OPTIONS, Check, Option

# camelCase setting key -> its option; a checked training request names each option by its flag ("layers")
TRAINING_KEYS: dict[str, Option] = {o.setting: o for o in OPTIONS if o.setting}
_BY_NAME: dict[str, Option] = {o.flag: o for o in TRAINING_KEYS.values()}
_EVERY_OPTION: dict[str, Option] = {o.flag: o for o in OPTIONS}  # also those without a setting (--only-better)
# Training started from an editor (the language server's Train command, the HTTP API, the dashboard) stops after
# this many seconds unless the `training.timeBudget` setting (or the request) says otherwise; `cllm train` on the
# command line has no default budget.
DEFAULT_EDITOR_TIME_BUDGET = 600.0

BASE_CHOICES = ("ask", "prepare", "scratch")
# The training options `cllm pretrain` takes too: a base prepared for an editor runs with the same budget and
# threads. The shape options (fixed by a base) ask for a model from scratch instead.
PRETRAIN_OPTIONS = tuple(o.flag for o in TRAINING_KEYS.values() if "pretrain" in o.commands and not o.shape)
SHAPE_OPTIONS = tuple(o.flag for o in OPTIONS if o.shape)
MAX_SETTING = 2**53  # JSON's exactly representable integers: far beyond any real setting, far below an overflow


@dataclass
class Settings:
    """The checked `cllm` settings. None means: use the engine's default."""

    enable: bool = True
    max_tokens: int | None = None
    multiline: bool | None = None
    model_dir: str | None = None
    index_memory_mb: float | None = None  # the workspace index's memory cap (engine IndexSettings.max_mb)
    learn_while_idle: bool = True  # background learning from saves (server/learning.py)
    idle_seconds: float = 90.0  # quiet seconds before it starts or resumes
    eagerness: str = DEFAULT_EAGERNESS  # which suggestions are shown, by their confidence (EAGERNESS)
    training: dict[str, int | float] = field(default_factory=dict)
    base: str = "ask"  # training.base: what training does while no base model exists (BASE_CHOICES)
    base_corpus: list[str] = field(default_factory=list)  # training.baseCorpus: folders a prepared base learns from


def is_number(value: Any) -> bool:
    """True for a JSON number: an int of any size or a finite float (not a bool, not NaN or infinity).

    Huge ints are checked without converting them to float, which would overflow."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _eagerness_problem(value: str) -> str | None:
    """What is wrong with an eagerness setting (confidence.check_eagerness says it), None when it is one."""
    try:
        check_eagerness(value)
    except ValueError as exc:
        return f"setting cllm.{exc}"
    return None


def _check_value(key: str, value: Any, kind: type, positive: bool) -> tuple[Any, str | None]:
    """Return (value converted to `kind`, None) or (None, problem) for one setting."""
    checked, problem = _typed_value(key, value, kind)
    if problem is None and kind in (int, float) and (checked < 0 or (positive and checked == 0)):
        bound = "positive" if positive else "zero or more"
        return None, f"setting cllm.{key} must be {bound}, got {checked!r}"
    return checked, problem


def _check_option(key: str, value: Any, check: Check) -> tuple[Any, str | None]:
    """As _check_value, for a training option by its check (engine/config.py)."""
    checked, problem = _typed_value(key, value, check.kind)
    if problem is None and not check.accepts(checked):
        return None, f"setting cllm.{key} must be {check.expected()}, got {checked!r}"
    return checked, problem


def _typed_value(key: str, value: Any, kind: type) -> tuple[Any, str | None]:
    """(value converted to `kind`, None) or (None, problem) when `value` is not a JSON value of that type."""
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return None, f"setting cllm.{key} must be true or false, got {value!r}"
    if kind is str:
        if isinstance(value, str) and value:
            return value, None
        return None, f"setting cllm.{key} must be a non-empty string, got {value!r}"
    if not is_number(value):
        return None, f"setting cllm.{key} must be a number, got {value!r}"
    if abs(value) > MAX_SETTING:
        return None, f"setting cllm.{key} is out of range (its size must be at most 2**53)"
    if kind is int:
        if value != int(value):
            return None, f"setting cllm.{key} must be a whole number, got {value!r}"
        return int(value), None
    return float(value), None


def check_training(values: dict[str, Any], labels: dict[str, str] | None = None) -> tuple[dict[str, int | float], list[str]]:
    """Check training overrides given by python name (epochs, time_budget, ...): (good values, problems).

    `labels` names the options in messages (the settings' camelCase keys); by default the python names.
    """
    good: dict[str, int | float] = {}
    problems: list[str] = []
    for name, value in values.items():
        if value is None:
            continue
        option = _BY_NAME.get(name)
        if option is None:
            problems.append(f"unknown training option {name!r}")
            continue
        label = (labels or {}).get(name, name)
        checked, problem = _check_option(f"training.{label}", value, option.check)
        if problem:
            problems.append(problem)
        else:
            good[name] = checked
    return good, problems


def parse_settings(raw: Any) -> tuple[Settings, list[str]]:
    """Turn a `cllm` settings object (camelCase keys) into Settings, with a list of problems found."""
    settings = Settings()
    if raw is None:
        return settings, []
    if not isinstance(raw, dict):
        return settings, [f"settings for cllm must be an object, got {raw!r}"]
    problems: list[str] = []
    simple = {"enable": ("enable", bool), "maxTokens": ("max_tokens", int), "multiline": ("multiline", bool),
              "modelDir": ("model_dir", str), "indexMemoryMB": ("index_memory_mb", float),
              "learnWhileIdle": ("learn_while_idle", bool), "idleSeconds": ("idle_seconds", float),
              "eagerness": ("eagerness", str)}
    for key, value in raw.items():
        if key in simple:
            name, kind = simple[key]
            if value is None:
                continue
            checked, problem = _check_value(key, value, kind, positive=True)
            problem = problem or (model_dir_problem(checked) if key == "modelDir" else None)
            if problem is None and key == "eagerness":
                problem = _eagerness_problem(checked)
            if problem:
                problems.append(problem)
            else:
                setattr(settings, name, checked)
        elif key == "training":
            settings.training, more = _parse_training(value)
            settings.base, settings.base_corpus, base_problems = _parse_base(value)
            problems += more + base_problems
        else:
            problems.append(f"unknown setting cllm.{key} (ignored)")
    return settings, problems


def model_dir_problem(value: str) -> str | None:
    """Why `modelDir` cannot be a model folder (an unknown user's `~user`, a name past the system's length limits,
    a path that cannot be looked up), as the message shown to the user, or None. The default folder serves then."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:76] + "...'"
    fallback = "; the default model folder is used"
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory" for ~nosuchuser
        return f"cllm.modelDir {shown}: no such user's home folder{fallback}"
    try:
        os.stat(path.resolve())
    except FileNotFoundError:
        return None  # created when a model is trained
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, EACCES on a parent, an embedded NUL
        return f"cllm.modelDir {shown}: {getattr(exc, 'strerror', None) or exc}{fallback}"
    return None


def layer_settings(base: Any, section: Any) -> tuple[Any, list[str]]:
    """The settings in force: `base` (initializationOptions) with the client's `cllm` section over it, and the
    problem when the section is not an object (then `base` stays in force).

    A null or empty section changes nothing. Each key of the section replaces the base's, `training` key by
    key; a key set to null goes back to the engine's default (how a client says a setting was cleared)."""
    if section is None:
        return base, []
    if not isinstance(section, dict):
        return base, [f"settings for cllm must be an object, got {section!r}"]
    merged = dict(base) if isinstance(base, dict) else {}
    for key, value in section.items():
        if key == "training" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _without_nulls({**merged[key], **value})
        merged[key] = value
    return _without_nulls(merged), []


def _without_nulls(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _parse_training(raw: Any) -> tuple[dict[str, int | float], list[str]]:
    """The `training` object of the settings (camelCase keys) -> python names."""
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        return {}, [f"setting cllm.training must be an object, got {raw!r}"]
    by_name: dict[str, Any] = {}
    labels: dict[str, str] = {}
    problems: list[str] = []
    for key, value in raw.items():
        if key in ("base", "baseCorpus"):
            continue  # _parse_base
        if key in TRAINING_KEYS:
            by_name[TRAINING_KEYS[key].flag] = value
            labels[TRAINING_KEYS[key].flag] = key
        else:
            problems.append(f"unknown setting cllm.training.{key} (ignored)")
    good, more = check_training(by_name, labels)
    return good, problems + more


def _parse_base(raw: Any) -> tuple[str, list[str], list[str]]:
    """training.base and training.baseCorpus of the `training` object: (choice, folders, problems)."""
    if not isinstance(raw, dict):
        return "ask", [], []
    choice, corpus, problems = raw.get("base"), raw.get("baseCorpus"), []
    if choice is not None and choice not in BASE_CHOICES:
        problems.append(f"setting cllm.training.base must be one of {', '.join(BASE_CHOICES)}, got {choice!r}")
        choice = None
    if corpus is not None and not (isinstance(corpus, list) and all(isinstance(p, str) and p for p in corpus)):
        problems.append(f"setting cllm.training.baseCorpus must be a list of folders, got {corpus!r}")
        corpus = None
    return choice or "ask", corpus or [], problems


def train_arguments(options: dict[str, int | float]) -> list[str]:
    """The `cllm train` command-line flags for checked training options (python names)."""
    args: list[str] = []
    for name, value in options.items():
        option = _EVERY_OPTION[name]
        if option.check.kind is bool:
            args += [option.argument] if value else []
        else:
            args += [option.argument, str(value)]
    return args


def request_command_line(command: str, request: dict[str, Any]) -> list[str]:
    """The `cllm COMMAND` arguments a user would type for a trainer request (the JSON of server/cli/request.py):
    the same run from a shell, as the server log shows it."""
    positional = request["paths"] if "paths" in request else [request["path"]]
    switches: list[str] = []
    for key, value in request.items():
        if key not in ("path", "paths", "options") and value not in (None, False):
            flag = "--" + key.replace("_", "-")
            switches += [flag] if value is True else [flag, str(value)]
    return [command, *positional, "--json", *switches, *train_arguments(request.get("options", {}))]
