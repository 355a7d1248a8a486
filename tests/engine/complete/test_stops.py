"""Stop rules, one rule per test: fed text as a decoder would produce it, token by token."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cllm.engine.complete.stops import BracketCounter, StopRules, bracket_depth, trim_suffix_overlap


def run(rules: StopRules, pieces: list[str]) -> tuple[str, str | None]:
    """Feed `pieces` one at a time like the decoder; the kept text (finished) and the stop reason."""
    text = ""
    for piece in pieces:
        text += piece
        stop = rules.check(text)
        if stop is not None:
            return rules.finish(text[:stop.keep]), stop.reason
    return rules.finish(text), None


def chars(text: str) -> list[str]:
    return list(text)


def test_single_line_stops_at_end_of_line():
    rules = StopRules("int x = ", "", multiline=False)
    assert run(rules, ["foo", "(1);", "\n", "int y;"]) == ("foo(1);", "newline")


def test_single_line_after_a_finished_line_suggests_the_next_line():
    rules = StopRules("int main(void) {", "", multiline=False)
    assert run(rules, chars("\n    return 0;\n}")) == ("\n    return 0;", "newline")


def test_single_line_on_a_blank_line_stops_at_a_leading_newline():
    rules = StopRules("int main(void) {\n    ", "", multiline=False)
    assert run(rules, ["\n", "foo"]) == ("", "newline")


def test_multiline_stops_when_its_own_block_balances():
    rules = StopRules("    ", "", multiline=True)
    text = "for (i = 0; i < n; i++) {\n        s += i;\n    }\n    return s;\n"
    assert run(rules, chars(text)) == ("for (i = 0; i < n; i++) {\n        s += i;\n    }", "balanced")


def test_multiline_waits_for_the_end_of_the_line_that_balances():
    rules = StopRules("", "", multiline=True)
    text = "if (a) {\n  x();\n} else {\n  y();\n}\nz();\n"
    assert run(rules, chars(text)) == ("if (a) {\n  x();\n} else {\n  y();\n}", "balanced")


def test_multiline_stops_before_a_brace_that_closes_an_outer_block():
    rules = StopRules("int f(void) {\n", "", multiline=True)
    expected = ("    int x = g(1);\n    return x;", "block_end")
    assert run(rules, chars("    int x = g(1);\n    return x;\n}\n")) == expected


def test_multiline_closing_a_paren_from_the_prefix_is_not_the_end():
    rules = StopRules("if (ready", "", multiline=True)
    assert run(rules, chars(") {\n    go();\n}\nafter();\n")) == (") {\n    go();\n}", "balanced")


def test_multiline_stops_at_a_blank_line():
    rules = StopRules("", "", multiline=True)
    expected = ("#include <a.h>\n#include <b.h>", "blank_line")
    assert run(rules, chars("#include <a.h>\n#include <b.h>\n\nint x;\n")) == expected


def test_multiline_stops_before_a_line_repeating_the_previous_one():
    rules = StopRules("int main(void) {\n", "", multiline=True)
    text = "    put(a);\n    put(b);\n    put(b);\n    put(b);\n"
    assert run(rules, chars(text)) == ("    put(a);\n    put(b);", "repetition")


def test_repeated_lines_without_words_do_not_stop_the_suggestion():
    rules = StopRules("", "", multiline=True)
    assert run(rules, chars("if (a) {\n  if (b) {\n  }\n  }\n}\nnext();\n"))[1] == "balanced"


def test_brackets_in_strings_chars_and_comments_do_not_count():
    assert bracket_depth('f("(", \'{\', /* [ */ x) // (\n') == 0
    assert bracket_depth('f("\\"(")') == 0
    rules = StopRules("", "", multiline=True)
    assert run(rules, chars('puts("}");\nx = 1;\n\n')) == ('puts("}");\nx = 1;', "blank_line")


def test_cursor_inside_a_comment_keeps_the_lexer_state():
    counter = BracketCounter().feed("/* a comment with (")
    assert counter.depth == 0
    rules = StopRules("int x; /* note: ", "", multiline=True)
    assert run(rules, chars("} is not code */\nint y;\n\n")) == ("} is not code */\nint y;", "blank_line")


def test_user_stop_strings_cut_before_their_first_occurrence():
    rules = StopRules("", "", multiline=True, stop=("END",))
    assert run(rules, ["abc E", "ND def"]) == ("abc", "stop")


def test_a_line_repeating_the_next_line_after_the_cursor_ends_the_suggestion():
    rules = StopRules("int f(void) {\n    ", "\n    return 0;\n}\n", multiline=True)
    assert run(rules, chars("int x = 1;\n    return 0;\n")) == ("int x = 1;", "suffix")


def test_single_line_stops_when_reaching_the_text_after_the_cursor():
    rules = StopRules("call(", ");\n", multiline=False)
    assert run(rules, ["a", ",", " b", ");", " more"]) == ("a, b", "suffix")


@pytest.mark.parametrize("text, suffix, expected", [
    ("a, b);", ");", "a, b"),           # the suggestion ran into the text after the cursor
    ("g()", ")", "g()"),                # trimming would leave g( open
    ("x = 1;", ";", "x = 1"),
    ("return 0;", "\n    return 0;\n}", ""),  # merely a repeat of what follows
    ("foo", "bar", "foo"),
])
def test_suffix_overlap_trimming(text, suffix, expected):
    assert trim_suffix_overlap(text, suffix) == expected


def test_trailing_whitespace_is_trimmed():
    rules = StopRules("x", "", multiline=True)
    assert rules.finish("y = 2;   \n  \n") == "y = 2;"


# ------------------------------------------------------------------------------------------- settled text

def stream(rules: StopRules, pieces: list[str]) -> tuple[list[str], str]:
    """Feed `pieces` as the decoder does: (what streaming sends, the final text), checking each sent piece."""
    text, sent, out = "", 0, []
    for piece in pieces:
        text += piece
        stop = rules.check(text)
        if stop is not None:
            text = text[:stop.keep]
            break
        settled = rules.settled(text)
        assert settled >= sent, "settled text never shrinks"
        out.append(text[sent:settled])
        sent = settled
    final = rules.finish(text)
    assert final.startswith("".join(out)), "only final text is ever sent"
    out.append(final[sent:])
    return out, final


CODE_CHARS = st.sampled_from(list("ab(){};= \n\t\"/*") + ["return", "x1", "if"])


@settings(max_examples=400, deadline=None)
@given(prefix=st.lists(CODE_CHARS, max_size=30).map(lambda t: "int f(void) {\n" + "".join(t)),
       suffix=st.lists(CODE_CHARS, max_size=12).map("".join),
       pieces=st.lists(st.lists(CODE_CHARS, min_size=1, max_size=3).map("".join), max_size=25),
       multiline=st.booleans(),
       stops=st.lists(st.lists(CODE_CHARS, min_size=1, max_size=3).map("".join), max_size=3))
def test_streamed_pieces_add_up_to_the_final_text(prefix, suffix, pieces, multiline, stops):
    out, final = stream(StopRules(prefix, suffix, multiline, stops), pieces)
    assert "".join(out) == final


def test_settled_text_streams_before_the_end():
    rules = StopRules("int f(void) {\n", "\n}\n", False, ["\n\n"])
    out, final = stream(rules, ["    ", "return", " a", " +", " b", ";", "\n"])
    assert final == "    return a + b;"
    assert len([piece for piece in out if piece]) >= 3, out
    assert out[:2] == ["", "    retur"], "whitespace, then the last character a stop string may start at, wait"


def test_text_that_may_still_be_the_suffix_is_held_back():
    rules = StopRules("x = ", "\n  foo(1);\n", True)
    assert rules.check("foo(") is None and rules.settled("foo(") == 0
    rules = StopRules("x = ", "\n  foo(1);\n", True)
    assert rules.check("fox") is None and rules.settled("fox") == 3


# ------------------------------------------------------------------------------------------- repetition guard

def words(text: str) -> list[str]:
    """`text` in the pieces a tokenizer might give: words, runs of spaces, single other characters."""
    import re
    return re.findall(r"\w+|\s+|.", text)


def test_a_suggestion_repeating_a_span_of_itself_is_cut_where_the_repetition_starts():
    rules = StopRules("static int\nfoo(PyObject *o, Py_ha", "", multiline=False)
    looped = "sh, PyObject* identity, Py_hash_t hash, PyObject* identity, Py_hash_t hash, PyObject* identity,\n"
    assert run(rules, words(looped)) == ("sh, PyObject* identity, Py_hash_t hash,", "repetition")


def test_an_unfinished_second_copy_is_cut_at_the_end():
    rules = StopRules("    call(", "", multiline=False)
    assert run(rules, words("alpha, beta_gamma, alpha, beta_ga")) == ("alpha, beta_gamma,", None)


def test_repeats_of_a_single_word_or_number_stay():
    for prefix, text in [("{NULL, ", "NULL, NULL, NULL, NULL}\n"), ("{", "0x00, 0x00, 0x00, 0x00,\n")]:
        assert run(StopRules(prefix, "", multiline=False), words(text)) == (text.strip(), "newline")


def test_a_suggestion_retyping_the_line_above_the_cursor_is_dropped():
    for cursor_line, text in [("    ", "Py_INCREF(self);\n"), ("    Py_IN", "CREF(self);\n"), ("    ", "Py_INCREF(self);")]:
        rules = StopRules("    x = 1;\n    Py_INCREF(self);\n" + cursor_line, "", multiline=False)
        assert run(rules, chars(text))[0] == ""
    rules = StopRules("#endif\n", "", multiline=False)  # a line naming one word may repeat
    assert run(rules, chars("#endif\n")) == ("#endif", "newline")


def test_the_next_line_after_a_finished_line_does_not_retype_it():
    rules = StopRules("    return self->hash;", "", multiline=False)
    assert run(rules, chars("\n    return self->hash;\n")) == ("", "repetition")


def test_a_suggestion_that_only_retypes_the_suffix_is_dropped():
    rules = StopRules("    x = ", "compute(a, b);\n", multiline=False)
    assert run(rules, words("compute(a, b);\n")) == ("", "suffix")


def test_streaming_never_sends_text_the_guard_cuts():
    rules = StopRules("foo(PyObject *o, ", "", False)
    out, final = stream(rules, words("PyObject* identity, Py_hash_t hash, PyObject* identity, Py_hash_t hash, x"))
    assert final == "PyObject* identity, Py_hash_t hash," and "".join(out) == final
