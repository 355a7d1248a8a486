"""Where a suggestion was copied from: the match model's origins, the copy tracker's rule, and "path:line" from a
Completer decoding through the mixture."""

import numpy as np
import pytest

from cllm.engine.complete.generate import Completer, CompletionOptions
from cllm.engine.complete.match_model import MATCH_MIN, MatchIndex
from cllm.engine.complete.mixture import DocumentCache, Mixture, MixtureScorer, workspace_models
from cllm.engine.complete.sources import CopyTracker, newline_tables
from cllm.engine.data.corpus import Document
from cllm.engine.model.loaded import load_model
from conftest import COPIED_FUNCTION as CLAMP, COPY_SOURCE, SECOND_COPY, SECOND_COPY_TEXT, copy_mixture_weights


@pytest.fixture(scope="module")
def completer(tiny_model_path) -> Completer:
    """The tiny model mixed half and half with the match model over a workspace holding src/a.c (COPY_SOURCE)."""
    model = load_model(tiny_model_path)
    tok = model.tokenizer
    docs = [Document(path, text, len(text)) for path, text in {**COPY_SOURCE, "src/other.c": "int x;\n"}.items()]
    kn, index = workspace_models(tok, docs)
    return Completer(model, scorer=MixtureScorer(tok, kn, index, Mixture(copy_mixture_weights())))


def _complete(completer: Completer, prefix: str, path: str | None = "src/b.c", **kwargs):
    return completer.complete(prefix, "", CompletionOptions(max_ms=1e9, multiline=True), path=path, **kwargs)


def test_completing_the_second_copy_of_a_function_names_the_first(completer):
    got = _complete(completer, SECOND_COPY)
    assert got.text == SECOND_COPY_TEXT
    assert got.source == "src/a.c:4"


def test_a_suggestion_not_copied_has_no_source(completer):
    got = _complete(completer, "int main(void) {\n    ")
    assert got.text.startswith("printf(")  # the transformer's, from its training text
    assert got.source is None


def test_a_copy_from_the_open_document_names_its_own_path_and_line(completer):
    prefix = "int y;\n" + CLAMP + SECOND_COPY[len("int y;\n\n"):]  # the function twice in b.c, the first on line 2
    got = _complete(completer, prefix)
    assert got.text == SECOND_COPY_TEXT and got.source == "src/b.c:3"
    assert _complete(completer, prefix, lines_before=100).source == "src/b.c:103"  # a face cut 100 lines off
    assert _complete(completer, prefix, path=None).source is None  # no path to name


def test_the_lines_the_completer_cuts_off_a_long_prefix_are_counted(completer):
    filler = "".join(f"int filler_{i};\n" for i in range(6000))  # past MAX_PREFIX_CHARS: the start is cut off
    got = _complete(completer, filler + "int y;\n" + CLAMP + SECOND_COPY[len("int y;\n\n"):])
    assert got.source == f"src/b.c:{6000 + 3}"


def test_the_match_model_says_where_the_token_it_predicts_lies():
    rng = np.random.default_rng(3)
    span = rng.integers(10, 200, 40).astype(np.int32)
    workspace = np.concatenate([rng.integers(200, 300, 25), span]).astype(np.int32)
    index = MatchIndex.from_occurrences(*_occurrences(workspace), files=[("w.c", 0, len(workspace))])
    cache = DocumentCache(span[:MATCH_MIN + 3], 300)
    predicted, _, origin = cache.copy(index)
    assert predicted == span[MATCH_MIN + 3] and origin == 25 + MATCH_MIN + 3 and index.file_at(origin) == ("w.c", 0)
    doubled = DocumentCache(np.concatenate([span, rng.integers(300, 320, 5), span[:MATCH_MIN + 3]]), 400)
    predicted, _, origin = doubled.copy(index)  # the document's own earlier copy wins a tie
    assert origin == len(workspace) + MATCH_MIN + 3 and doubled.tokens[origin - len(workspace)] == predicted
    assert index.file_at(len(workspace)) is None and MatchIndex([span]).file_at(0) is None


def _occurrences(tokens: np.ndarray):
    """(tokens, tables) of a MatchIndex over one stream, as workspace_index.py builds them."""
    built = MatchIndex([tokens])
    return built.tokens, built._tables


def test_most_tokens_must_be_copies_and_the_longest_run_names_the_place(tiny_model_path):
    tok = load_model(tiny_model_path).tokenizer
    text = "int a;\nint b;\nint c;\nint d;\n"
    stream = np.concatenate([tok.header_ids("w.c"), tok.encode(text)]).astype(np.int32)
    index = MatchIndex.from_occurrences(*_occurrences(stream), files=[("w.c", 0, len(stream))])
    line_of = {i: text[:len(tok.decode(stream[len(tok.header_ids("w.c")):i]))].count("\n") + 1
               for i in range(len(tok.header_ids("w.c")), len(stream))}
    tracker = CopyTracker(tok)
    short, long = line_of_first(line_of, 1), line_of_first(line_of, 3)
    for origin in [short, short + 1, long, long + 1, long + 2]:  # a run of two, then one of three
        tracker.expect(int(stream[origin]), origin, index)
        tracker.picked(int(stream[origin]))
    tracker.expect(5, 3, index)
    tracker.picked(6)  # not the prediction: no copy
    copy = tracker.copy(9, np.zeros(0, np.int32), 0, "b.c")
    assert copy is not None and (copy.path, copy.line, copy.in_document) == ("w.c", 3, False)
    assert tracker.copy(10, np.zeros(0, np.int32), 0, "b.c") is None  # 5 of 10: not most
    tracker.begin()
    assert tracker.copy(0, np.zeros(0, np.int32), 0, "b.c") is None


def line_of_first(line_of: dict[int, int], line: int) -> int:
    """The first token position on `line`."""
    return min(position for position, at in line_of.items() if at == line)


def test_newline_tables_count_a_token_s_newlines_and_those_before_its_text(tiny_model_path):
    tok = load_model(tiny_model_path).tokenizer
    newlines, leading = newline_tables(tok)
    for token in range(tok.vocab_size):
        piece = tok.token_bytes(token)
        assert newlines[token] == piece.count(b"\n")
        assert leading[token] == piece[:len(piece) - len(piece.lstrip())].count(b"\n")
