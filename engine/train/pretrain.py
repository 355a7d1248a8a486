"""`cllm pretrain`: a base model from the C the machine already has, with the manifest of its corpus.

The corpus: every C file under the given folders (by default PretrainPolicy.roots: /usr/include,
/usr/local/include and /usr/src where present), scanned with the workspace rules (engine/data/corpus.py: C extensions,
no hidden or build folders, no binaries, secrets, generated tables or duplicates), minus what is C++: folders
named like "c++" and headers whose code outside `#ifdef __cplusplus` blocks uses C++ (`namespace`, `template<`,
`class X {`, access specifiers, `::`). With a time budget the corpus is sampled (by a stable hash of each path,
so every library contributes) to about PretrainPolicy.budget_epochs times what the run will see: tokenizing
and encoding the rest would only cost time. Each document is named by its absolute path without the leading
'/' ("usr/include/stdio.h").

The base trains like a workspace (engine/train/loop.py, the time-budget policy picking its settings, its own BPE
vocabulary), with a held-out share kept small (PretrainPolicy.max_val_bytes). The run's model file records the
manifest (absolute path and sha256 of every corpus file: evaluation leaves such files out, fine-tuning replays
them) and mixture weights fitted at the end of the run (engine/train/finish.py BaseCorpusRecord), on a sample of held-out files with a 5-gram and match
index over training files from the same folders (a workspace's neighbours), so that the base serves ghost text
with a workspace's cache mixture before the workspace has a model of its own.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from ..model import checkpoint as ckpt_io
from ..config import BudgetPolicy, CorpusConfig, ModelConfig, PretrainPolicy, TrainConfig, from_dict
from ..data.corpus import Document, load_documents, read_texts, scan, split_documents
from ..eval.evaluate import EvalError
from ..events import DoneEvent, ManifestEntry, TrainingEvent, TrainingMetadata
from ..model.loaded import Model, load_model
from .finish import BaseCorpusRecord
from .loop import TrainError, train
from .start import Continue, Fresh, FromBase

_FILESYSTEM_ROOT = Path("/")  # a base corpus names its files by absolute path without the leading '/'
_CPLUSPLUS_BLOCK = re.compile(r"^\s*#\s*if(?:def)?\b(?!.*!)(?=.*__cplusplus)")  # #ifdef __cplusplus, #if defined(...)
_DIRECTIVE = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b")
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_CPLUSPLUS = {
    "namespace": re.compile(r"^\s*(?:inline\s+)?namespace\b[\w:\s]*\{", re.M),
    "template": re.compile(r"\btemplate\s*<"),
    "class": re.compile(r"^\s*class\s+\w+[^;(){]*\{", re.M),
    "access specifier": re.compile(r"^\s*(?:public|private|protected)\s*:(?!:)", re.M),
    "scope operator": re.compile(r"(?<!\[\[)\b[A-Za-z_]\w*::[A-Za-z_~]"),  # not a C23 [[gnu::attribute]]
}


def cplusplus_reason(path: str, text: str) -> str | None:
    """Why a .c/.h file is C++ rather than C ("C++ folder", "C++ code (namespace)", ...), or None for C.

    Code inside `#ifdef __cplusplus` (or `#if defined(__cplusplus)`) blocks and comments does not count: C
    headers wrap their `extern "C"` and C++ conveniences in such blocks."""
    if any("++" in part for part in PurePosixPath(path).parts[:-1]):
        return "C++ folder"
    code = _COMMENTS.sub(" ", _without_cplusplus_blocks(text))
    for construct, pattern in _CPLUSPLUS.items():
        if pattern.search(code):
            return f"C++ code ({construct})"
    return None


def _without_cplusplus_blocks(text: str) -> str:
    """`text` without the lines of `#if(def) __cplusplus` branches (their #else branch, the C one, stays)."""
    kept, depth, skipping = [], 0, None  # skipping: the depth of the C++-only branch being dropped
    for line in text.splitlines(keepends=True):
        directive = _DIRECTIVE.match(line)
        if directive:
            word = directive.group(1)
            if word.startswith("if"):
                depth += 1
                if skipping is None and _CPLUSPLUS_BLOCK.match(line):
                    skipping = depth
                    continue
            elif word == "endif":
                depth -= 1
                if skipping is not None and depth < skipping:
                    skipping = None
                    continue
            elif skipping == depth:  # #else / #elif of the C++ branch: C again
                skipping = None
                continue
        if skipping is None:
            kept.append(line)
    return "".join(kept)


@dataclass
class BaseCorpus:
    """The C files found for a base and what was left out (path, reason)."""

    roots: list[str]
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(doc.size for doc in self.documents)


def scan_base_corpus(paths: Sequence[str | os.PathLike] | None = None,
                     policy: PretrainPolicy = PretrainPolicy()) -> BaseCorpus:
    """The C files under `paths` (default: policy.roots that exist), C++ left out, duplicates across folders
    kept once. Raises TrainError when a given path is not a folder."""
    if paths:
        roots = [Path(p).expanduser().resolve() for p in paths]
        for root in roots:
            if not root.is_dir():
                raise TrainError(f"{root} is not a folder (expected a folder of C code to pretrain on)")
    else:
        roots = [Path(p) for p in policy.roots if Path(p).is_dir()]
    found = BaseCorpus(roots=[str(root) for root in roots])
    seen: set[str] = set()
    for root in roots:
        scanned = scan(root, CorpusConfig())
        found.skipped += [(f"{root}/{path}", reason) for path, reason in scanned.skipped]

        def left_out(doc: Document, reason: str, root: Path = root) -> None:
            found.skipped.append((f"{root}/{doc.path}", reason))

        for doc, text in read_texts(scanned.documents, left_out):
            name = (root / doc.path).as_posix().lstrip("/")
            reason = cplusplus_reason(doc.path, text)
            if reason is None and doc.sha256 in seen:
                reason = "duplicate of a file in another folder"
            if reason:
                found.skipped.append(("/" + name, reason))
                continue
            seen.add(doc.sha256)
            found.documents.append(Document(name, size=doc.size, root=_FILESYSTEM_ROOT, sha256=doc.sha256,
                                            lines=doc.lines))
    return found


def sample_documents(documents: Sequence[Document], max_bytes: int) -> list[Document]:
    """Documents in a stable order of their paths' hashes up to about `max_bytes` (all when they fit)."""
    if sum(doc.size for doc in documents) <= max_bytes:
        return list(documents)
    chosen, total = [], 0
    for doc in sorted(documents, key=lambda d: hashlib.sha256(d.path.encode("utf-8")).digest()):
        if total >= max_bytes:
            break
        chosen.append(doc)
        total += doc.size
    return sorted(chosen, key=lambda d: d.path)


def manifest(documents: Iterable[Document]) -> list[ManifestEntry]:
    """The manifest entries of a base's corpus: absolute path and sha256 of each file's bytes."""
    return [ManifestEntry(path="/" + doc.path, sha256=doc.sha256) for doc in documents]


def pretrain(found: BaseCorpus, model_cfg: ModelConfig, train_cfg: TrainConfig, out_path: str | os.PathLike,
             on_event: Callable[[TrainingEvent], None] | None = None, cancel: threading.Event | None = None,
             explicit: set[str] | None = None, policy: PretrainPolicy = PretrainPolicy(),
             start: Fresh | FromBase | Continue = Fresh()) -> DoneEvent:
    """Train a base model on `found` (scan_base_corpus) and write it to `out_path` with its manifest and mixture
    weights. Like train(): `explicit` names the settings the user chose (the budget policy picks the others),
    events go to `on_event`; returns the done event. TrainError when there is nothing to learn from.
    `start` Continue(a base this function wrote) extends it: its weights, Adam moments and tokenizer go on under
    a new schedule, a time budget samples the files it has not trained on first; FromBase(the shipped base) goes on
    from its weights and tokenizer with fresh moments. Either way the manifest lists the files of every run
    (evaluation must leave out all of them)."""
    if not found.documents:
        where = ", ".join(found.roots) or "none of " + ", ".join(policy.roots)
        raise TrainError(f"no C files (.c, .h) to pretrain on in {where}")
    documents = found.documents
    if train_cfg.time_budget is not None:
        budget = BudgetPolicy()
        seen = train_cfg.time_budget * budget.tokens_per_second * budget.bytes_per_token
        documents = sample_documents(documents, int(policy.budget_epochs * seen))
    total = sum(doc.size for doc in documents)
    train_cfg = replace(train_cfg, val_fraction=min(train_cfg.val_fraction, policy.max_val_bytes / max(total, 1)))
    earlier = earlier_manifest(start.path) if isinstance(start, (Continue, FromBase)) else []
    known = {(entry.path, entry.sha256) for entry in earlier}
    entries = [*earlier, *(entry for entry in manifest(documents) if (entry.path, entry.sha256) not in known)]
    record = BaseCorpusRecord(manifest=entries,
                              mixture_sample=lambda: _mixture_sample(documents, train_cfg.val_fraction, policy))
    return train(documents, model_cfg, train_cfg, out_path, on_event, cancel=cancel, explicit=explicit, start=start,
                 base_corpus=record)


def earlier_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    """The manifest of the base a run continues; TrainError when the file is not a base (CllmError when it is
    not a model file at all)."""
    meta = TrainingMetadata.from_json(ckpt_io.load_checkpoint(path).metadata)
    if not meta.manifest:
        raise TrainError(f"{path} is not a base model (it has no corpus manifest): `cllm pretrain --continue-from` "
                         "extends a base that `cllm pretrain` wrote")
    return meta.manifest


def _mixture_sample(documents: Sequence[Document], val_fraction: float,
                    policy: PretrainPolicy) -> tuple[list[Document], list[Document]]:
    """(held-out files to fit the base's mixture weights on, training files of their folders to build the 5-gram
    and match index from): the base's stand-in for a workspace and a file being edited in it."""
    train_docs, val_docs = split_documents(list(documents), val_fraction)
    held_out = sample_documents(val_docs, policy.mixture_val_bytes)
    folders = {PurePosixPath(doc.path).parent for doc in held_out}
    related = [doc for doc in train_docs if PurePosixPath(doc.path).parent in folders]
    neighbours = sample_documents(related or train_docs, policy.mixture_workspace_bytes)
    return load_documents(held_out), load_documents(neighbours)


def train_scratch_twin(model: Model, out_path: str | Path) -> Model:
    """A model trained from scratch on `model`'s workspace with its time budget and seed (the budget policy
    choosing the rest, as `cllm train --time-budget` does): what fine-tuning is measured against."""
    meta = model.metadata
    cfg = from_dict(TrainConfig, meta.train_config)
    if not meta.workspace or cfg.time_budget is None:
        raise EvalError("--compare-scratch needs a model trained on a workspace with --time-budget "
                        "(the scratch model gets the same budget)")
    twin = TrainConfig(time_budget=cfg.time_budget, seed=cfg.seed)
    train(meta.workspace, ModelConfig(), twin, out_path, explicit={"time_budget", "seed"})
    return load_model(out_path)
