"""Workspace scan: which C files become training data, and why the others do not.

Inside a git work tree the files git would add, outside it the files no .gitignore ignores (or every file with
CorpusConfig.gitignore False); hidden, build and vendor folders, secrets (by name or content), oversized, binary,
non-UTF-8 and duplicate files are skipped, each with a readable reason (`skip_summary` counts them). Documents
hold no text, so memory does not grow with the workspace: `read_texts` reads them when needed. Also the
deterministic held-out split, corpus statistics and the consolidated corpus file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from pathspec import GitIgnoreSpec

from ..config import CorpusConfig
from ..faults import fault_point
from ..files import atomic_write

FILE_MARKER = "// ===== FILE: {path} ====="
# The common shapes of credentials pasted into code: a file holding one is skipped as "secret (contains <what>)".
_AWS_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA")
# (what, pattern, literals): every match of the pattern contains one of its literals, so a text holding none of them
# is clean without running the pattern (Python's regex tries every alternative at every position: ~5 MB/s, most of
# a kernel-sized scan; a substring test runs at memory speed).
_SECRET_SHAPES = (
    ("a private key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----", ("-----BEGIN ",)),
    ("an AWS access key", rf"\b(?:{'|'.join(_AWS_PREFIXES)})[A-Z0-9]{{16}}\b", _AWS_PREFIXES),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}", ("AIza",)),
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})",
     ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}", ("glpat-",)),
    ("a Slack token", r"\bxox[abeoprs]-[A-Za-z0-9-]{10,}|hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
     ("xox", "hooks.slack.com/services/T")),
    ("a Stripe key", r"\b[rs]k_live_[A-Za-z0-9]{20,}", ("k_live_",)),
    ("a JSON web token", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", ("eyJ",)),
)
_SECRET_LITERALS = tuple(literal for _, _, literals in _SECRET_SHAPES for literal in literals)
_SECRETS = re.compile("|".join(f"(?P<s{i}>{pattern})" for i, (_, pattern, _) in enumerate(_SECRET_SHAPES)))

# Large files made almost only of numbers (generated lookup tables, embedded binary blobs) teach a completion model
# nothing about code and can dominate a small corpus (brotli's three dictionary tables are half of its bytes).
_DATA_TABLE_MIN_BYTES = 64_000
_DATA_TABLE_FRACTION = 0.8
_DATA_TABLE_CHARS = "0123456789, \n\t\r"
_NOT_UTF8_NAME = "name is not UTF-8 (cannot be stored or shown as text)"
_DELETED = "deleted during the scan"
_GONE = "deleted after the scan"
_CHANGED = "changed after the scan"


def find_secret(text: str) -> str | None:
    """What kind of credential `text` holds (e.g. "an AWS access key"), or None."""
    if not any(literal in text for literal in _SECRET_LITERALS):
        return None
    found = _SECRETS.search(text)
    return _SECRET_SHAPES[int(found.lastgroup[1:])][0] if found else None


class DocumentChanged(Exception):
    """A scanned file was deleted, changed or became unreadable after the scan; the message says which."""


class Document:
    """One source file: its path relative to the workspace ('/' separated), its size in bytes and its text.

    A scanned document does not hold its text (a kernel-sized tree is a gigabyte of it): `text` reads the file again
    at each use and raises DocumentChanged when it was deleted or changed since the scan (its sha256 and line count
    are kept). `Document(path, text, size)` holds a text the caller already has."""

    __slots__ = ("path", "size", "root", "_text", "_sha256", "_lines")

    def __init__(self, path: str, text: str | None = None, size: int | None = None, *, root: Path | None = None,
                 sha256: str | None = None, lines: int | None = None) -> None:
        if (text is None) == (root is None) or (root is not None and sha256 is None):
            raise ValueError("a Document holds its text, or names the folder its file is read from (root) and the "
                             "sha256 of its bytes")
        self.path, self.root, self._text, self._sha256, self._lines = path, root, text, sha256, lines
        self.size = size if size is not None else len(text.encode("utf-8"))

    def __repr__(self) -> str:
        return f"Document({self.path!r}, size={self.size}{', held' if self._text is not None else ''})"

    def __eq__(self, other: object) -> bool:
        """Same path, size and text (held), or same path, size, folder and recorded sha256 (read from a file)."""
        if not isinstance(other, Document):
            return NotImplemented
        fields = ("path", "size", "root", "_text", "_sha256")
        return all(getattr(self, name) == getattr(other, name) for name in fields)

    __hash__ = None  # mutable, compared by value

    @property
    def text(self) -> str:
        """The text: the one held, or the file's as read now (DocumentChanged when it is not the scanned one)."""
        if self._text is not None:
            return self._text
        try:
            data = (self.root / self.path).read_bytes()
        except FileNotFoundError:
            raise DocumentChanged(_GONE) from None
        except OSError as exc:
            raise DocumentChanged(f"unreadable after the scan ({exc.strerror})") from None
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self._sha256:
            raise DocumentChanged(_CHANGED)
        return data.decode("utf-8")

    @property
    def text_bytes(self) -> int:
        """UTF-8 bytes of the text, without reading the file: the scan's size, or the held text's own length."""
        return self.size if self._text is None else len(self._text.encode("utf-8"))

    @property
    def sha256(self) -> str:
        """sha256 of the text as UTF-8 (the scanned file's bytes), hex."""
        return self._sha256 or hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def lines(self) -> int:
        """Lines of the text, a last line without its newline included."""
        if self._lines is None:
            text = self.text
            self._lines = text.count("\n") + (bool(text) and not text.endswith("\n"))
        return self._lines


def read_texts(documents: Iterable[Document],
               gone: Callable[[Document, str], None] = lambda doc, reason: None) -> Iterator[tuple[Document, str]]:
    """Each document with its text, read now (one file at a time: the caller decides how many it keeps); a file
    deleted or changed since the scan is handed to `gone` with the reason and left out."""
    for doc in documents:
        try:
            text = doc.text
        except DocumentChanged as exc:
            gone(doc, str(exc))
            continue
        yield doc, text


def load_documents(documents: Iterable[Document]) -> list[Document]:
    """The documents holding their texts (files deleted or changed since the scan left out): for the small
    samples that scoring reads many times over."""
    return [Document(doc.path, text, doc.size) for doc, text in read_texts(documents)]


def read_documents(root: Path, paths: Sequence[str],
                   config: CorpusConfig = CorpusConfig()) -> tuple[list[Document], list[str]]:
    """Documents holding the texts of relative `paths` under `root` that pass the read policy (read_checked: the
    rules training reads by), and the paths left out. Whatever names the paths (a model file's metadata, an
    editor's save), nothing outside the workspace, no secret and no binary is read."""
    docs, missing = [], []
    real_root = Path(root).resolve()
    for rel in paths:
        data, reason = read_checked(real_root, rel, config)
        if reason is not None:
            missing.append(rel)
            continue
        text = data.decode("utf-8")
        docs.append(Document(path=rel, text=text, size=len(data)))
    return docs, missing


def read_checked(real_root: Path, rel: str, config: CorpusConfig = CorpusConfig()) -> tuple[bytes | None, str | None]:
    """The read policy of everything cllm learns or completes from: the bytes of `rel` under `real_root` (already
    resolved), or None and why it must not be read: outside the workspace once symlinks are resolved, not a
    regular file, too large, unreadable, binary, not UTF-8, holding a secret, a generated data table."""
    path = real_root / rel
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop on older Pythons;
        return None, f"unreadable ({getattr(exc, 'strerror', None) or exc})"  # ValueError: a NUL in the name
    if not _inside(resolved, real_root):
        return None, "outside the workspace"
    data, reason = _read_regular(path, config.max_file_bytes)
    return (data, None) if reason is None and (reason := content_reason(data)) is None else (None, reason)


def _read_regular(path: Path, limit: int) -> tuple[bytes | None, str | None]:
    """The bytes of the regular file at `path` (at most `limit`), or None and why not."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None, "unreadable (broken symlink)" if path.is_symlink() else _GONE
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return None, "not a regular file"
    if info.st_size > limit:
        return None, f"too large ({_human_bytes(info.st_size)} > {_human_bytes(limit)} limit)"
    try:
        # Non-blocking: a file swapped for a FIFO after the check above does not hang the read.
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    if len(data) > limit:
        return None, f"too large (over the {_human_bytes(limit)} limit)"
    return data, None


def content_reason(data: bytes) -> str | None:
    """Why these bytes are not text to learn or complete from (binary, not UTF-8, a secret, a generated data
    table), or None."""
    if b"\0" in data:
        return "binary (contains NUL bytes)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (invalid byte at offset {exc.start})"
    secret = find_secret(text)
    if secret:
        return f"secret (contains {secret})"
    if len(data) >= _DATA_TABLE_MIN_BYTES:
        numeric = sum(map(text.count, _DATA_TABLE_CHARS)) / len(text)
        if numeric >= _DATA_TABLE_FRACTION:
            return f"generated data table ({numeric:.0%} digits and commas)"
    return None


@dataclass(frozen=True)
class IgnoreRule:
    """One line of an ignore file: the file (as git or the scan names it), its 1-based line number, its text."""

    source: str
    line: int
    pattern: str

    def __str__(self) -> str:
        return f"'{self.pattern}' ({self.source} line {self.line})"


@dataclass
class ScanResult:
    """The files taken as training data and the (path, reason) of every candidate left out.

    `ignored` lists the files and folders (ending in '/') an ignore rule left out, with the rule when the scan
    knows it (outside git) or None (inside git, where `hidden_by_ignore_rules` asks git)."""

    root: Path
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, IgnoreRule | None]] = field(default_factory=list)
    in_git: bool = False


def scan(root: str | os.PathLike, config: CorpusConfig = CorpusConfig(),
         progress: Callable[[int, int | None], None] | None = None) -> ScanResult:
    """Walk `root` for source files (config.extensions) and decide, for each, whether it is training data.

    Folders go in name order, real ones before symlinks, so the result is deterministic. `progress(seen, expected or
    None)` is called per candidate and whatever it raises ends the scan. ValueError when `root` is not a folder."""
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise ValueError(f"{root} is not a folder (expected a workspace folder of C code)")
    listing = git_listing(root_path) if config.gitignore else None
    return _Walker(root_path, config, listing, progress).run()


def git_listing(root: Path) -> set[str] | None:
    """The paths under `root` that git would add (tracked, plus untracked ones no ignore rule excludes); None outside
    a git work tree, without git, or when git lists nothing (a folder its repository ignores is scanned as outside)."""
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, check=False)
    except OSError:
        return None
    paths = {os.fsdecode(path) for path in listed.stdout.split(b"\0") if path}
    return paths if listed.returncode == 0 and paths else None


def hidden_by_ignore_rules(result: ScanResult, config: CorpusConfig = CorpusConfig()) -> list[tuple[IgnoreRule | None, int]]:
    """The source files (config.extensions) that ignore rules left out of `result`, counted per rule, most first
    (rule None: git did not name one). Files inside ignored folders are counted too, so this walks those folders."""
    counts: Counter = Counter()
    rules = _git_rules(result.root, [path for path, _ in result.ignored]) if result.in_git else {}
    for path, rule in result.ignored:
        rule = rule or rules.get(path.rstrip("/"))
        if not path.endswith("/"):
            counts[rule] += path.endswith(tuple(config.extensions))
            continue
        for _, _, names in os.walk(result.root / path):
            counts[rule] += sum(name.endswith(tuple(config.extensions)) for name in names)
    return [(rule, n) for rule, n in counts.most_common() if n]


def sample_documents(documents: Sequence[Document], max_bytes: int,
                     rank: Callable[[Document], int] | None = None,
                     size: Callable[[Document], int] = lambda doc: doc.size) -> list[Document]:
    """All of `documents` when they hold at most `max_bytes`, else a deterministic sample of about that size taken
    in the order of a stable hash of the path (spread over the tree, the first file always), lower `rank`s first (a
    continued run ranks unseen files first). `size` measures a file in another unit (forward windows)."""
    if sum(size(doc) for doc in documents) <= max_bytes:
        return list(documents)
    sample, total = [], 0
    for doc in sorted(documents, key=lambda d: (rank(d) if rank else 0, _path_score("sample:" + d.path))):
        if total + size(doc) <= max_bytes or not sample:
            sample.append(doc)
            total += size(doc)
    return sample


def split_documents(documents: list[Document], val_fraction: float) -> tuple[list[Document], list[Document]]:
    """Hold out about `val_fraction` of the files, by a stable hash of their path (a file's side never changes as
    files come and go). At least one file trains; with two or more and val_fraction > 0, one is held out."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    scores = {doc.path: _path_score(doc.path) for doc in documents}
    val_paths = {path for path, score in scores.items() if score < val_fraction}
    if documents and len(val_paths) == len(documents):
        val_paths.remove(max(val_paths, key=scores.__getitem__))
    if not val_paths and len(documents) >= 2 and val_fraction > 0:
        val_paths.add(min(scores, key=scores.__getitem__))
    train = [doc for doc in documents if doc.path not in val_paths]
    val = [doc for doc in documents if doc.path in val_paths]
    return train, val


def stats(documents: Iterable[Document]) -> dict[str, int]:
    """Counts the original design printed: files (all, .c, .h), lines and bytes."""
    result = {"files": 0, "c_files": 0, "h_files": 0, "lines": 0, "bytes": 0}
    for doc in documents:
        result["files"] += 1
        result["c_files"] += doc.path.endswith(".c")
        result["h_files"] += doc.path.endswith(".h")
        result["lines"] += doc.lines
        result["bytes"] += doc.size
    return result


def format_stats(numbers: dict[str, int]) -> str:
    """One human line for `stats` output, e.g. '42 files (30 .c, 12 .h), 9,876 lines, 321,000 bytes'."""
    return (
        f"{numbers['files']:,} files ({numbers['c_files']:,} .c, {numbers['h_files']:,} .h), "
        f"{numbers['lines']:,} lines, {numbers['bytes']:,} bytes"
    )


def write_consolidated(documents: Iterable[Document], path: str | os.PathLike) -> bool:
    """Write all documents into one text file, each preceded by a FILE_MARKER line (atomically, streamed file by
    file: a large corpus is never assembled in memory; files deleted or changed since the scan are left out).
    A file of that name that cllm did not write (it does not start with a marker line) is left as it is: returns
    False then, True once written."""
    path = Path(path)
    if path.exists() and not _starts_with_marker(path):
        return False

    def write(f) -> None:
        for doc, text in read_texts(documents):
            f.write((FILE_MARKER.format(path=doc.path) + "\n").encode("utf-8"))
            f.write((text if text.endswith("\n") or not text else text + "\n").encode("utf-8"))
    atomic_write(path, write)
    return True


def _starts_with_marker(path: Path) -> bool:
    """Whether the file at `path` begins as a consolidated corpus file does (a FILE_MARKER line)."""
    head = FILE_MARKER.split("{", 1)[0].encode("utf-8")
    try:
        with open(path, "rb") as f:
            return f.read(len(head)) == head
    except OSError:
        return False


def skip_counts(reasons: Iterable[str]) -> dict[str, int]:
    """Skip reasons counted by kind, most frequent first: {"binary": 3, "secret": 2, ...}.

    A reason's kind is its text before any detail ("too large (5.0 MB > ...)" counts as "too large",
    "duplicate of main.c" as "duplicate")."""
    kinds = Counter(re.split(r" \(| of ", reason, maxsplit=1)[0] for reason in reasons)
    return dict(sorted(kinds.items(), key=lambda item: (-item[1], item[0])))


def skip_summary(reasons: Iterable[str]) -> str:
    """One line counting skip reasons by kind, most frequent first: 'skipped 8: 3 binary, 2 secret, ...'."""
    kinds = skip_counts(reasons)
    counts = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    return f"skipped {sum(kinds.values())}" + (f": {counts}" if counts else "")


def _path_score(path: str) -> float:
    """A number in [0, 1) derived from the path alone, identical across runs and machines (a name that is not
    UTF-8 hashes as its original bytes)."""
    return int.from_bytes(hashlib.sha256(path.encode("utf-8", "surrogateescape")).digest()[:8], "big") / 2.0**64


def _human_bytes(n: int) -> str:
    """'1.0 MB'-style size for skip reasons."""
    for unit in ("bytes", "KB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


class _Walker:
    """State of one scan: the ignore rules in force, folders already visited, content hashes seen."""

    def __init__(self, root: Path, config: CorpusConfig, listing: set[str] | None,
                 progress: Callable[[int, int | None], None] | None):
        self.root = root
        self.real_root = root.resolve()
        self.config = config
        self.result = ScanResult(root=root, in_git=listing is not None)
        self.visited: set[Path] = set()
        self.hashes: dict[str, str] = {}
        self.settings_spec = GitIgnoreSpec.from_lines(config.extra_ignore)
        self.listing = listing
        self.listed_folders = {path[:i] for path in listing or () for i, ch in enumerate(path) if ch == "/"}
        self.progress = progress or (lambda seen, expected: None)
        self.candidates = 0
        extensions = tuple(config.extensions)
        self.expected = None if listing is None else sum(path.endswith(extensions) for path in listing)

    def run(self) -> ScanResult:
        """Walk real folders depth-first, then the symlinked folders found on the way (and so on)."""
        stack: list[tuple[Path, str, list]] = [(self.root, "", [])]
        deferred: list[tuple[Path, str, list]] = []
        while stack or deferred:
            if not stack:
                stack.append(deferred.pop(0))
            folder, rel, specs = stack.pop()
            try:
                subfolders = self._visit(folder, rel, specs)
            except OSError as exc:  # a path past the system's limits, a loop, a folder cllm may not enter
                self._skip(rel + "/", folder_error_reason(exc))
                continue
            for sub, linked in reversed(subfolders):
                (deferred if linked else stack).append(sub)
        return self.result

    def _visit(self, folder: Path, rel: str, specs: list) -> list[tuple[tuple[Path, str, list], bool]]:
        """Scan one folder unless its real path was walked already; its subfolders still to walk, each with
        whether it is a symlink (walked after the real folders)."""
        real = folder.resolve()
        if real in self.visited:
            self._skip(rel + "/", self._revisit_reason(folder, real))
            return []
        self.visited.add(real)
        return [(sub, sub[0].is_symlink()) for sub in self._scan_folder(folder, rel, specs)]

    def _scan_folder(self, folder: Path, rel: str, specs: list) -> list[tuple[Path, str, list]]:
        """Handle the files of one folder; return the subfolders still to walk."""
        entries = sorted(os.scandir(folder), key=lambda e: e.name)  # OSError: the caller skips the folder
        fault_point("scan-listed")
        gitignore = folder / ".gitignore"
        if self.listing is None and self.config.gitignore and gitignore.is_file():
            source = f"{rel}/.gitignore" if rel else ".gitignore"
            specs = specs + [(rel, *_read_gitignore(gitignore, source))]
        subfolders = []
        for entry in entries:
            rel_path = f"{rel}/{entry.name}" if rel else entry.name
            if not _is_dir(entry):
                try:
                    self._consider_file(entry, rel_path, specs)
                except OSError as exc:
                    self._skip(rel_path, f"unreadable ({exc.strerror or exc})")
                continue
            try:
                reason = self._folder_reason(entry, rel_path, specs)
            except OSError as exc:
                reason = folder_error_reason(exc)
            if reason:
                self._skip(rel_path + "/", reason)
            else:
                subfolders.append((Path(entry.path), rel_path, specs))
        return subfolders

    def _folder_reason(self, entry: os.DirEntry, rel_path: str, specs: list) -> str | None:
        """Why a subfolder is not walked, or None to walk it."""
        if not _is_utf8(entry.name):
            return _NOT_UTF8_NAME
        if entry.name.startswith("."):
            return "hidden folder"
        if entry.name in self.config.skip_dirs:
            return "build/vendor folder"
        ignored = self._ignore_reason(rel_path + "/", specs)
        if ignored:
            return ignored
        if entry.is_symlink() and not _inside(Path(entry.path).resolve(), self.real_root):
            return "symlink to a folder outside the workspace"
        return None

    def _revisit_reason(self, folder: Path, real: Path) -> str:
        """Reason for a symlinked folder whose target was already walked."""
        if _inside(folder.parent.resolve(), real):
            return "symlink loop (points back to an enclosing folder)"
        return f"symlink to a folder already scanned ({_relative(real, self.real_root)})"

    def _consider_file(self, entry: os.DirEntry, rel_path: str, specs: list) -> None:
        """Take a candidate file as a document or record why not; other files pass silently."""
        name = entry.name
        secret = any(fnmatchcase(name, pattern) for pattern in self.config.secret_patterns)
        if not secret and not name.endswith(tuple(self.config.extensions)):
            return
        self.candidates += 1
        self.progress(self.candidates, self.expected)
        reason = (None if _is_utf8(name) else _NOT_UTF8_NAME) or self._ignore_reason(rel_path, specs)
        reason = reason or ("secret (file name matches secret_patterns)" if secret else None)
        data = digest = None
        if reason is None:
            data, reason = self._read_candidate(entry)
        if reason is None:
            digest, reason = self._check_content(rel_path, data)
        if reason is None:
            lines = data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))
            self.result.documents.append(Document(rel_path, size=len(data), root=self.root, sha256=digest, lines=lines))
        else:
            self._skip(rel_path, reason)

    def _read_candidate(self, entry: os.DirEntry) -> tuple[bytes | None, str | None]:
        """The file's bytes, or None and the reason it cannot or should not be read."""
        try:
            os.stat(entry.path)
        except FileNotFoundError:
            return None, "unreadable (broken symlink)" if entry.is_symlink() else _DELETED
        except OSError:
            pass  # _read_regular names the error
        if entry.is_symlink() and not _inside(Path(entry.path).resolve(), self.real_root):
            return None, "symlink to a file outside the workspace"
        return _read_regular(Path(entry.path), self.config.max_file_bytes)

    def _check_content(self, rel_path: str, data: bytes) -> tuple[str | None, str | None]:
        """The sha256 of the file's bytes, or None and why these bytes are not training text (content_reason, or a
        duplicate)."""
        reason = content_reason(data)
        if reason is not None:
            return None, reason
        digest = hashlib.sha256(data).hexdigest()
        if digest in self.hashes:
            return None, f"duplicate of {self.hashes[digest]}"
        self.hashes[digest] = rel_path
        return digest, None

    def _ignore_reason(self, rel_path: str, specs: list) -> str | None:
        """'ignored by .gitignore' / 'ignored by settings' when the ignore rules exclude `rel_path` (a folder
        ends in '/'): inside git, when git would not add it; outside, by the layered .gitignore files."""
        if self.listing is not None and not self._listed(rel_path):
            self.result.ignored.append((rel_path, None))
            return "ignored by .gitignore"
        ignored, rule = None, None
        for base, spec, rules in specs:
            if base and not rel_path.startswith(base + "/"):
                continue
            check = spec.check_file(rel_path[len(base) + 1 :] if base else rel_path)
            if check.include is not None:
                ignored, rule = check.include, rules[check.index]
        if ignored:
            self.result.ignored.append((rel_path, rule))
            return "ignored by .gitignore"
        if self.settings_spec.match_file(rel_path):
            return "ignored by settings (extra_ignore)"
        return None

    def _listed(self, rel_path: str) -> bool:
        """Inside git: whether git lists `rel_path`, holds files under it (a folder), or lists a folder above it
        (a submodule or a symlinked folder, whose files git does not list one by one)."""
        path = rel_path.rstrip("/")
        if path in self.listing or (rel_path.endswith("/") and path in self.listed_folders):
            return True
        return any(path[:i] in self.listing for i, ch in enumerate(path) if ch == "/")

    def _skip(self, rel_path: str, reason: str) -> None:
        self.result.skipped.append((rel_path, reason))


def _read_gitignore(path: Path, source: str) -> tuple[GitIgnoreSpec, list[IgnoreRule]]:
    """The rules of one .gitignore file and, for each of the spec's patterns, the line it came from (blank and
    comment lines are not rules; unreadable or undecodable lines are ignored, as git would)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    kept = [(number, line) for number, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    spec = GitIgnoreSpec.from_lines([line for _, line in kept])
    return spec, [IgnoreRule(source, number, line.strip()) for number, line in kept]


def _git_rules(root: Path, paths: Sequence[str]) -> dict[str, IgnoreRule]:
    """The ignore rule git names for each of `paths` (relative to `root`; `git check-ignore -v`)."""
    request = b"".join(os.fsencode(path.rstrip("/")) + b"\0" for path in paths)
    try:
        answer = subprocess.run(["git", "-C", str(root), "check-ignore", "-v", "-z", "--stdin"], input=request,
                                capture_output=True, check=False).stdout
    except OSError:
        return {}
    fields = [os.fsdecode(part) for part in answer.split(b"\0")]
    return {path: IgnoreRule(source, int(line), pattern)
            for source, line, pattern, path in zip(fields[0::4], fields[1::4], fields[2::4], fields[3::4])
            if line.isdigit()}


def _is_utf8(name: str) -> bool:
    """False for a file or folder name whose bytes are not UTF-8 (os.scandir keeps them as lone surrogates):
    such a path cannot be shown, stored in the model's metadata or put in a prompt header as it is."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def folder_error_reason(exc: OSError) -> str:
    """Why a folder the scan could not enter is skipped, from the error the system gave."""
    if exc.errno == errno.ENAMETOOLONG:
        return "too deep (its path is past the system's length limit)"
    if exc.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    return f"unreadable folder ({exc.strerror or exc})"


def _is_dir(entry: os.DirEntry) -> bool:
    """True for folders and symlinks to folders; False (not an error) for broken entries."""
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    """True when `path` is `folder` or lies under it (both already resolved)."""
    return path == folder or folder in path.parents


def _relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, '/' separated ('.' for the root itself)."""
    return path.relative_to(root).as_posix() if path != root else "."
