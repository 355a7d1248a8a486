"""The tree-sitter check of `cllm eval`: does an insertion add parse errors?"""

from cllm.engine.eval.syntax import count_errors, function_body_spans, keeps_syntax

SOURCE = "int f(int x) {\n  if (x > 0) {\n    return 1;\n  }\n  return 0;\n}\n\nint y = 3;\n"


def test_clean_code_has_no_errors_and_one_function_body():
    assert count_errors(SOURCE.encode()) == 0
    (start, end), = function_body_spans(SOURCE.encode())
    assert SOURCE[start] == "{" and SOURCE[end - 1] == "}"


def test_a_correct_line_keeps_syntax():
    cursor = SOURCE.index("return 1;") + len("return ")
    line_end = SOURCE.index("\n", cursor)
    assert keeps_syntax(SOURCE, cursor, line_end, "x * 2;")


def test_a_broken_insertion_is_detected():
    cursor = SOURCE.index("return 1;") + len("return ")
    line_end = SOURCE.index("\n", cursor)
    assert not keeps_syntax(SOURCE, cursor, line_end, "1; while (x) {")
    assert not keeps_syntax(SOURCE, cursor, line_end, "(x + ;")


def test_existing_errors_do_not_count_against_the_insertion():
    broken = SOURCE.replace("int y = 3;", "int y = = ;")
    before = count_errors(broken.encode())
    assert before > 0
    cursor = broken.index("return 0;") + len("return ")
    assert keeps_syntax(broken, cursor, broken.index("\n", cursor), "x - 1;", before)
