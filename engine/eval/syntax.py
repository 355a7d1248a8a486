"""Does an inserted completion keep the C code parsing? A tree-sitter check used by `cllm eval`.

The check compares the number of ERROR and MISSING nodes tree-sitter-c reports before and after the insertion.
Positions are only drawn inside a function body, and the errors are counted over the whole file: everything outside
the edited function is unchanged, and a break such as an unclosed brace is reported by tree-sitter past the
function's end (a MISSING "}" at the end of the file), where a count limited to the old function span would miss it.
"""

from __future__ import annotations

from functools import lru_cache

import tree_sitter
import tree_sitter_c


@lru_cache(maxsize=1)
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_c.language()))


def count_errors(source: bytes) -> int:
    """Number of ERROR and MISSING nodes in the parse of `source`."""
    root = _parser().parse(source).root_node
    if not root.has_error:
        return 0
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
        stack.extend(child for child in node.children if child.has_error or child.is_missing)
    return count


def function_body_spans(source: bytes) -> list[tuple[int, int]]:
    """Byte spans (start, end) of the bodies of all function definitions, in file order."""
    spans: list[tuple[int, int]] = []
    stack = [_parser().parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "function_definition":
            body = node.child_by_field_name("body")
            if body is not None:
                spans.append((body.start_byte, body.end_byte))
            continue
        stack.extend(node.children)
    return sorted(spans)


def keeps_syntax(text: str, start: int, end: int, insertion: str, errors_before: int | None = None) -> bool:
    """True when replacing text[start:end] (character offsets) by `insertion` adds no ERROR/MISSING node.

    `errors_before` (count_errors of the unchanged file) may be passed in to reuse it across positions of one file.
    """
    if errors_before is None:
        errors_before = count_errors(text.encode("utf-8"))
    edited = text[:start] + insertion + text[end:]
    return count_errors(edited.encode("utf-8")) <= errors_before
