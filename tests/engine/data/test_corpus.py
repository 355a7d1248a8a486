"""Workspace scan: the right files are taken, every other candidate is skipped with the right reason."""

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cllm.engine.data import corpus
from cllm.engine.config import CorpusConfig
from cllm.engine.data.corpus import (FILE_MARKER, Document, DocumentChanged, IgnoreRule, find_secret, format_stats,
                                hidden_by_ignore_rules, load_documents, read_texts, sample_documents, scan, skip_summary,
                                split_documents, stats, write_consolidated)

MAIN_C = "#include \"util.h\"\n\nint main(void) {\n    return util();\n}\n"
UTIL_H = "#ifndef UTIL_H\n#define UTIL_H\nint util(void);\n#endif\n"


def write(root: Path, rel: str, content: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def make_unreadable(path: Path) -> str:
    """Make `path` a .c entry that cannot be opened; return the expected skip reason.

    chmod 000 is the natural way, but root (CI containers, this test machine) can still read such a file.
    When that happens the file is replaced by a dangling symlink: a directory entry whose open() fails,
    which exercises the same "cannot read this candidate" path of the scan.
    """
    path.write_text("int secret_sauce;\n")
    path.chmod(0)
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return "unreadable (Permission denied)"
    path.unlink()
    path.symlink_to(path.parent / "does-not-exist.c")
    return "unreadable (broken symlink)"


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    write(root, "main.c", MAIN_C)
    write(root, "include/util.h", UTIL_H)
    write(root, "src/lib/deep.c", "static int deep = 1;\n")
    write(root, "src/utf8.c", "/* héllo wörld — ünïcode comments */\nint x;\n")
    write(root, ".gitignore", "generated.c\n*.gen.h\nignored_dir/\n")
    write(root, "generated.c", "int generated;\n")
    write(root, "src/table.gen.h", "int table[3];\n")
    write(root, "ignored_dir/a.c", "int a;\n")
    write(root, "src/.gitignore", "local_*.c\n!local_keep.c\n")
    write(root, "src/local_tmp.c", "int tmp;\n")
    write(root, "src/local_keep.c", "int keep;\n")
    write(root, "blob.c", b"int x;\x00\x01\x02\xff binary")
    write(root, "latin1.h", "/* caf\xe9 */\nint y;\n".encode("latin-1"))
    write(root, "huge.c", "int big;\n" * (5_000_000 // 9 + 1))
    write(root, ".env", "API_KEY=hunter2\n")
    write(root, "src/table_inc.h", "static const int kTable[] = {\n" + "12,0,7,255,3,\n" * 20_000 + "};\n")
    write(root, "keys/server.pem", "-----BEGIN PRIVATE KEY-----\n")
    write(root, "src/leak.c", "/*\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n*/\n")
    write(root, "src/main_copy.c", MAIN_C)
    write(root, "build/out.c", "int built;\n")
    write(root, ".hidden/h.c", "int hidden;\n")
    write(root, "README.md", "not C\n")
    os.symlink(root / "src", root / "src" / "lib" / "loop")  # src/lib/loop -> src: a cycle
    unreadable_reason = make_unreadable(root / "locked.c")
    return root, unreadable_reason


def test_scan_takes_exactly_the_right_files(workspace):
    root, _ = workspace
    result = scan(root)
    assert sorted(d.path for d in result.documents) == [
        "include/util.h",
        "main.c",
        "src/lib/deep.c",
        "src/local_keep.c",
        "src/utf8.c",
    ]
    docs = {d.path: d for d in result.documents}
    assert docs["main.c"].text == MAIN_C and docs["main.c"].size == len(MAIN_C)
    assert docs["src/utf8.c"].size == len(docs["src/utf8.c"].text.encode("utf-8"))


def test_scan_gives_the_right_reason_for_each_skip(workspace):
    root, unreadable_reason = workspace
    skipped = dict(scan(root).skipped)
    assert skipped == {
        ".env": "secret (file name matches secret_patterns)",
        ".hidden/": "hidden folder",
        "blob.c": "binary (contains NUL bytes)",
        "build/": "build/vendor folder",
        "src/main_copy.c": "duplicate of main.c",
        "generated.c": "ignored by .gitignore",
        "huge.c": "too large (5.0 MB > 1.0 MB limit)",
        "ignored_dir/": "ignored by .gitignore",
        "keys/server.pem": "secret (file name matches secret_patterns)",
        "latin1.h": "not UTF-8 text (invalid byte at offset 6)",
        "locked.c": unreadable_reason,
        "src/leak.c": "secret (contains a private key)",
        "src/lib/loop/": "symlink loop (points back to an enclosing folder)",
        "src/local_tmp.c": "ignored by .gitignore",
        "src/table.gen.h": "ignored by .gitignore",
        "src/table_inc.h": "generated data table (100% digits and commas)",
    }


def test_duplicate_keeps_the_first_in_walk_order(tmp_path):
    write(tmp_path, "a.c", "int same;\n")
    write(tmp_path, "z/b.c", "int same;\n")
    result = scan(tmp_path)
    assert [d.path for d in result.documents] == ["a.c"]
    assert result.skipped == [("z/b.c", "duplicate of a.c")]


def test_symlinked_folder_is_walked_once_real_path_first(tmp_path):
    write(tmp_path, "real/x.c", "int x;\n")
    os.symlink(tmp_path / "real", tmp_path / "alias")  # sorts before "real" but must not win
    result = scan(tmp_path)
    assert [d.path for d in result.documents] == ["real/x.c"]
    assert result.skipped == [("alias/", "symlink to a folder already scanned (real)")]


def test_symlink_outside_workspace_is_not_followed(tmp_path):
    write(tmp_path, "outside/secret.c", "int outside;\n")
    write(tmp_path, "ws/in.c", "int inside;\n")
    os.symlink(tmp_path / "outside", tmp_path / "ws" / "ext")
    os.symlink(tmp_path / "outside" / "secret.c", tmp_path / "ws" / "link.c")
    result = scan(tmp_path / "ws")
    assert [d.path for d in result.documents] == ["in.c"]
    assert dict(result.skipped) == {
        "ext/": "symlink to a folder outside the workspace",
        "link.c": "symlink to a file outside the workspace",
    }


def test_fifo_does_not_hang_the_scan(tmp_path):
    os.mkfifo(tmp_path / "pipe.c")
    write(tmp_path, "ok.c", "int ok;\n")
    result = scan(tmp_path)
    assert [d.path for d in result.documents] == ["ok.c"]
    assert result.skipped == [("pipe.c", "not a regular file")]


# Made-up credentials in the shapes the providers issue (split so this file holds none of them whole).
SECRETS = {
    "an AWS access key": 'static const char *key = "AKIA' + 'IOSFODNN7EXAMPLE";',
    "a GitHub token": "// token: ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "a GitLab token": '#define TOKEN "glpat-' + 'xYz12345678901234567"',
    "a Slack token": "/* xoxb-" + "123456789012-abcdefABCDEF */",
    "a JSON web token": '"eyJhbGciOiJIUzI1NiJ9.' + 'eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"',
    "a private key": "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
    "a Google API key": 'key = "AIza' + 'SyD-1234567890abcdefghijklmnopqrstu";',
}


@pytest.mark.parametrize("what", sorted(SECRETS))
def test_files_holding_credentials_are_skipped_as_secret(tmp_path, what):
    write(tmp_path, "config.h", f"#ifndef CONFIG_H\n{SECRETS[what]}\n#endif\n")
    write(tmp_path, "ok.c", "int ok;\n")
    result = scan(tmp_path)
    assert [d.path for d in result.documents] == ["ok.c"]
    assert result.skipped == [("config.h", f"secret (contains {what})")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*SECRETS.values(), "AKIA", "gh", "ghp_", "xox", "eyJ", "-----BEGIN ", "k_live_",
                                 "AIza", "glpat-", "_", "-", ".", " ", "\n", "A1", "zZ9", "x" * 20, "7" * 16]),
                max_size=12).map("".join))
def test_the_literal_prefilter_finds_what_the_patterns_find(text):
    """find_secret skips the patterns when no literal of theirs occurs: it must agree with running them always."""
    found = corpus._SECRETS.search(text)
    assert find_secret(text) == (corpus._SECRET_SHAPES[int(found.lastgroup[1:])][0] if found else None)


def test_code_that_merely_looks_like_tokens_is_kept(tmp_path):
    write(tmp_path, "names.c", "int AKIA_count; char *gh_token_name; /* eyJ is base64 for {\" */\nint xoxb;\n")
    assert [d.path for d in scan(tmp_path).documents] == ["names.c"]


def test_names_that_are_not_utf8_are_skipped_and_the_scan_goes_on(tmp_path):
    for name in (b"caf\xe9.c", b"dir\xff/inner.c"):  # Latin-1 names, as old archives hold them
        path = tmp_path / os.fsdecode(name)
        path.parent.mkdir(exist_ok=True)
        path.write_text("int latin1;\n")
    write(tmp_path, "ok.c", "int ok;\n")
    result = scan(tmp_path)
    assert [d.path for d in result.documents] == ["ok.c"]
    assert sorted(reason for _, reason in result.skipped) == ["name is not UTF-8 (cannot be stored or shown as text)"] * 2
    train, val = split_documents(result.documents + [Document(os.fsdecode(b"x\xe9.c"), "int x;\n", 7)], 0.5)
    assert len(train) + len(val) == 2


def test_skip_summary_counts_reasons_by_kind():
    reasons = ["binary (contains NUL bytes)", "secret (contains an AWS access key)", "binary (contains NUL bytes)",
               "duplicate of a.c", "duplicate of b.c", "secret (file name matches secret_patterns)",
               "not a regular file", "binary (contains NUL bytes)", "too large (5.0 MB > 1.0 MB limit)"]
    assert skip_summary(reasons) == "skipped 9: 3 binary, 2 duplicate, 2 secret, 1 not a regular file, 1 too large"
    assert skip_summary([]) == "skipped 0"


def test_config_extensions_limits_and_extra_ignore(tmp_path):
    write(tmp_path, "a.c", "int a;\n")
    write(tmp_path, "b.h", "int b;\n")
    write(tmp_path, "c.cpp", "int c;\n")
    write(tmp_path, "gen/d.c", "int d;\n")
    config = CorpusConfig(extensions=(".c", ".cpp"), max_file_bytes=6, extra_ignore=("gen/",))
    result = scan(tmp_path, config)
    assert [d.path for d in result.documents] == []
    assert dict(result.skipped) == {
        "a.c": "too large (7 bytes > 6 bytes limit)",
        "c.cpp": "too large (7 bytes > 6 bytes limit)",
        "gen/": "ignored by settings (extra_ignore)",
    }
    assert [d.path for d in scan(tmp_path, CorpusConfig(extensions=(".cpp",))).documents] == ["c.cpp"]


def test_scan_refuses_a_non_folder(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        scan(tmp_path / "missing")
    write(tmp_path, "f.c", "int f;\n")
    with pytest.raises(ValueError, match="not a folder"):
        scan(tmp_path / "f.c")


def docs(n: int) -> list[Document]:
    return [Document(f"src/file_{i}.c", f"int v{i};\n", 9) for i in range(n)]


def test_split_is_deterministic_and_about_the_fraction():
    documents = docs(1000)
    train, val = split_documents(documents, 0.1)
    assert (train, val) == split_documents(list(reversed(documents))[::-1], 0.1)
    assert len(train) + len(val) == 1000 and 60 < len(val) < 140
    assert not {d.path for d in train} & {d.path for d in val}


def test_split_is_stable_when_files_are_added():
    _, val_small = split_documents(docs(200), 0.1)
    _, val_big = split_documents(docs(400), 0.1)
    assert {d.path for d in val_small} <= {d.path for d in val_big}


def test_split_edge_cases():
    assert split_documents([], 0.1) == ([], [])
    one = docs(1)
    assert split_documents(one, 0.5) == (one, [])
    train, val = split_documents(docs(2), 0.01)
    assert len(train) == 1 and len(val) == 1
    train, val = split_documents(docs(3), 0.99)
    assert len(train) >= 1
    assert split_documents(docs(5), 0.0) == (docs(5), [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_documents(docs(3), 1.0)


def test_stats_and_consolidated_file(tmp_path):
    documents = [Document("a.c", "int a;\nint b;\n", 14), Document("inc/b.h", "int c;", 6), Document("e.c", "", 0)]
    numbers = stats(documents)
    assert numbers == {"files": 3, "c_files": 2, "h_files": 1, "lines": 3, "bytes": 20}
    assert format_stats(numbers) == "3 files (2 .c, 1 .h), 3 lines, 20 bytes"
    out = tmp_path / "sub" / "repo_code.txt"
    write_consolidated(documents, out)
    assert out.read_text() == (
        f"{FILE_MARKER.format(path='a.c')}\nint a;\nint b;\n"
        f"{FILE_MARKER.format(path='inc/b.h')}\nint c;\n"
        f"{FILE_MARKER.format(path='e.c')}\n"
    )
    assert os.listdir(out.parent) == ["repo_code.txt"]


def test_scanned_documents_hold_no_text_and_read_it_back_from_disk(tmp_path):
    source = "int big[] = {\n" + "    1, 2, 3,\n" * 2000 + "};\nint last;"
    (tmp_path / "big.c").write_text(source)
    (doc,) = scan(tmp_path).documents
    held = [getattr(doc, slot) for slot in Document.__slots__]
    assert not any(isinstance(value, str) and len(value) >= doc.size for value in held), "no copy of the text"
    assert doc.size == len(source) and doc.lines == source.count("\n") + 1
    assert doc.text == source and stats([doc]) == stats([Document("big.c", source)])
    (loaded,) = load_documents([doc])
    assert loaded.text == source and loaded.sha256 == doc.sha256 == Document("x.c", source).sha256


def test_a_file_deleted_or_changed_after_the_scan_is_named_and_left_out(tmp_path):
    for name in ("a.c", "b.c", "c.c"):
        (tmp_path / name).write_text(f"int {name[0]};\n")
    docs = scan(tmp_path).documents
    (tmp_path / "a.c").unlink()
    (tmp_path / "b.c").write_text("int B;\n")  # same size, other bytes
    with pytest.raises(DocumentChanged, match="deleted after the scan"):
        docs[0].text
    gone = []
    assert [doc.path for doc, _ in read_texts(docs, lambda doc, why: gone.append((doc.path, why)))] == ["c.c"]
    assert gone == [("a.c", "deleted after the scan"), ("b.c", "changed after the scan")]
    write_consolidated(docs, tmp_path / "repo_code.txt")
    assert (tmp_path / "repo_code.txt").read_text() == f"{FILE_MARKER.format(path='c.c')}\nint c;\n"
    assert [doc.path for doc in load_documents(docs)] == ["c.c"]


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_in_git_ignore_rules_apply_to_untracked_files_only(tmp_path):
    root = tmp_path / "repo"
    write(root, ".gitignore", "/*\n!/.gitignore\n")  # Debian's packaging rule: everything at the top level
    write(root, "tracked/a.c", "int a;\n")
    write(root, "untracked/b.c", "int b;\n")
    write(root, "other/c.c", "int c;\n")
    git(root, "init", "-q")
    git(root, "add", "-f", "tracked/a.c")
    write(root, "src/.gitignore", "gen.c\n")
    write(root, "src/d.c", "int d;\n")
    write(root, "src/gen.c", "int gen;\n")
    result = scan(root)
    assert result.in_git
    assert sorted(doc.path for doc in result.documents) == ["tracked/a.c"]
    assert dict(result.skipped)["untracked/"] == "ignored by .gitignore"
    hidden = hidden_by_ignore_rules(result)
    assert hidden == [(IgnoreRule(".gitignore", 1, "/*"), 4)], "untracked/b.c, other/c.c, src/d.c and src/gen.c"
    git(root, "add", "-f", "src/d.c", "src/gen.c")
    assert sorted(doc.path for doc in scan(root).documents) == ["src/d.c", "src/gen.c", "tracked/a.c"]


def test_in_git_untracked_files_not_ignored_count(tmp_path):
    root = tmp_path / "repo"
    write(root, ".gitignore", "*.gen.c\n")
    write(root, "new.c", "int fresh;\n")
    write(root, "table.gen.c", "int t;\n")
    git(root, "init", "-q")
    result = scan(root / ".")
    assert [doc.path for doc in result.documents] == ["new.c"]
    assert result.skipped == [(".git/", "hidden folder"), ("table.gen.c", "ignored by .gitignore")]


def test_a_folder_its_repository_ignores_is_scanned_as_outside_git(tmp_path):
    root = tmp_path / "repo"
    write(root, ".gitignore", "corpus/\n")
    write(root, "corpus/.gitignore", "skip.c\n")
    write(root, "corpus/keep.c", "int keep;\n")
    write(root, "corpus/skip.c", "int skip;\n")
    git(root, "init", "-q")
    result = scan(root / "corpus")
    assert not result.in_git
    assert [doc.path for doc in result.documents] == ["keep.c"]


def test_hidden_by_ignore_rules_names_the_file_and_line_outside_git(tmp_path):
    root = tmp_path / "ws"
    write(root, ".gitignore", "# packaging\n\n/*\n!/debian/\n")
    write(root, "kernel/sched.c", "int s;\n")
    write(root, "kernel/sched.h", "int h;\n")
    write(root, "README", "text\n")
    write(root, "lib/.gitignore", "*.c\n")
    write(root, "lib/x.c", "int x;\n")
    result = scan(root)
    assert result.documents == []
    rule = IgnoreRule(".gitignore", 3, "/*")
    assert hidden_by_ignore_rules(result) == [(rule, 3)]
    assert str(rule) == "'/*' (.gitignore line 3)"
    kept = scan(root, CorpusConfig(gitignore=False))
    assert sorted(doc.path for doc in kept.documents) == ["kernel/sched.c", "kernel/sched.h", "lib/x.c"]


def test_scan_reports_progress_and_stops_when_progress_raises(tmp_path):
    root = tmp_path / "ws"
    for i in range(5):
        write(root, f"f{i}.c", f"int f{i};\n")
    seen = []
    scan(root, progress=lambda done, expected: seen.append((done, expected)))
    assert seen == [(i, None) for i in range(1, 6)]

    def stop(done, expected):
        if done == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        scan(root, progress=stop)


def test_sample_documents_is_deterministic_bounded_and_whole_when_small():
    docs = [Document(f"d{i}/f.c", "x" * 100, 100) for i in range(50)]
    assert sample_documents(docs, 10_000) == docs
    sample = sample_documents(docs, 1_000)
    assert len(sample) == 10 and sample == sample_documents(list(reversed(docs)), 1_000)
    assert sample != docs[:10], "spread over the tree, not the first files walked"


@pytest.mark.parametrize("name, content, reason", [
    ("../outside.c", None, "outside the workspace"),
    ("link.c", "symlink", "outside the workspace"),
    ("key.c", "const char *k = \"" + "AKIA" + "ABCDEFGHIJKLMNOP" + "\";\n", "secret (contains an AWS access key)"),
    ("blob.c", "int x;\0\n", "binary (contains NUL bytes)"),
    ("fifo.c", "fifo", "not a regular file"),
])
def test_the_read_policy_refuses_what_training_refuses(tmp_path, name, content, reason):
    root = tmp_path / "ws"
    root.mkdir()
    outside = tmp_path / "outside.c"
    outside.write_text("int secret_outside(void);\n")
    if content == "symlink":
        (root / name).symlink_to(outside)
    elif content == "fifo":
        os.mkfifo(root / name)
    elif content is not None:
        (root / name).write_text(content)
    assert corpus.read_checked(root.resolve(), name) == (None, reason)
    docs, missing = corpus.read_documents(root, [name])
    assert docs == [] and missing == [name]


_PATH_PARTS = st.sampled_from(["..", ".", "", "inside.c", "sub", "out_link", "loop", "outside.c", "secret.c",
                               "d" * 300, "a\0b", "~", "x.c"])


def _hostile_tree(tmp_path: Path) -> tuple[Path, Path, str]:
    """A workspace with a file, a subfolder, a symlink out, a symlink loop and a secret; a folder beside it holding
    a file with a marker no read inside the workspace may return; a symlink to the workspace itself."""
    marker = "int outside_marker_never_read(void) { return 7; }\n"
    if (tmp_path / "ws").exists():
        return tmp_path / "ws", tmp_path / "link_to_ws", marker
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "outside.c").write_text(marker)
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "inside.c").write_text("int inside(void) { return 1; }\n")
    (root / "sub" / "x.c").write_text("int x(void) { return 2; }\n")
    (root / "secret.c").write_text('const char *k = "AKIAIOSFODNN7EXAMPLE";\n')
    (root / "out_link").symlink_to(outside)
    (root / "sub" / "outside.c").symlink_to(outside / "outside.c")
    (root / "loop").symlink_to("loop")
    (tmp_path / "link_to_ws").symlink_to(root)
    return root, tmp_path / "link_to_ws", marker


@settings(max_examples=150, deadline=None)
@given(paths=st.lists(st.tuples(st.booleans(), st.lists(_PATH_PARTS, min_size=1, max_size=5)), max_size=6),
       through_link=st.booleans())
def test_fuzzed_metadata_paths_never_read_outside_the_workspace(tmp_path_factory, paths, through_link):
    """Whatever a model file's train_files name (.., absolute paths, symlinks out, loops, NUL, names past the
    limit), read_documents returns only texts inside the workspace that pass the read policy, and never raises;
    a workspace reached through a symlink to it keeps the same rules."""
    root, link, marker = _hostile_tree(tmp_path_factory.getbasetemp())
    names = [("/" if absolute else "") + "/".join(parts) for absolute, parts in paths]
    docs, missing = corpus.read_documents(link if through_link else root, names)
    assert len(docs) + len(missing) == len(names)
    for doc in docs:
        assert marker not in doc.text and "AKIA" not in doc.text
        assert (root / doc.path).resolve().is_relative_to(root.resolve())


@settings(max_examples=30, deadline=None)
@given(extra=st.lists(st.tuples(st.lists(st.sampled_from(["sub", "deep", "..", "out_link"]), max_size=3),
                                st.sampled_from(["loop2", "up", "far"])), max_size=4))
def test_fuzzed_symlinks_in_a_symlinked_workspace_never_take_the_scan_outside(tmp_path_factory, extra):
    """Symlinks to anywhere (up, out, loops) in a workspace opened through a symlink to it: the scan finishes,
    takes only files inside the real workspace and names every symlink it did not follow with a reason."""
    base = tmp_path_factory.mktemp("scan")
    root, link, marker = _hostile_tree(base)
    for target_parts, name in extra:
        target = "/".join(target_parts) or "."
        with contextlib.suppress(FileExistsError):
            (root / "sub" / name).symlink_to(target)
    result = corpus.scan(link, CorpusConfig())
    paths = {doc.path for doc in result.documents}
    assert paths <= {"inside.c", "sub/x.c"} | {f"sub/{name}/x.c" for _, name in extra} | {
        f"sub/{name}/inside.c" for _, name in extra} | {f"sub/{name}/sub/x.c" for _, name in extra}
    assert "out_link/" in dict(result.skipped) and "secret.c" in dict(result.skipped)
    for doc in result.documents:
        assert marker not in doc.text


def _nest_past_the_path_limit(root: Path) -> str:
    """Folders nested under `root` until their path is past PATH_MAX (made relative to each other, as a checkout
    can), with a C file at the bottom; the first folder's name."""
    name = "n" * 200
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(os.pathconf(root, "PC_PATH_MAX") // len(name) + 2):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with os.fdopen(os.open("deep.c", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("int deep(void) { return 3; }\n")
    finally:
        os.close(fd)
    return name


def test_a_folder_nested_past_the_path_limit_is_skipped_with_a_reason_and_the_scan_goes_on(tmp_path):
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    _nest_past_the_path_limit(tmp_path)
    result = corpus.scan(tmp_path, CorpusConfig())
    assert [doc.path for doc in result.documents] == ["main.c"]
    reasons = [reason for path, reason in result.skipped if path.endswith("/")]
    assert reasons == ["too deep (its path is past the system's length limit)"]


def test_an_unreadable_folder_is_skipped_with_a_reason_and_the_scan_goes_on(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.c").write_text("int a;\n")
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    scandir = os.scandir

    def refusing(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(corpus.os, "scandir", refusing)
    result = corpus.scan(tmp_path, CorpusConfig())
    assert [doc.path for doc in result.documents] == ["main.c"]
    assert ("locked/", "unreadable folder (Permission denied)") in result.skipped
