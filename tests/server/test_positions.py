"""Document lines, LSP positions and which documents are C (server/positions.py)."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from cllm.server.positions import is_c_document, offset_at, split_lines

UTF16 = PositionCodec(types.PositionEncodingKind.Utf16)


def test_lines_end_only_at_lsp_line_breaks():
    assert split_lines("a\nb\r\nc\rd\x0ce") == ["a\n", "b\r\n", "c\r", "d\x0ce"]
    assert split_lines("") == []


def test_offsets_follow_utf16_and_clamp_to_the_line():
    text = "int x = 1;\r\n/* 😀 */ y\nlast"
    assert offset_at(text, types.Position(line=0, character=4), UTF16) == 4
    # the emoji is two UTF-16 units but one Python character
    assert text[offset_at(text, types.Position(line=1, character=5), UTF16):].startswith(" */")
    assert offset_at(text, types.Position(line=0, character=99), UTF16) == len("int x = 1;")
    assert offset_at(text, types.Position(line=2, character=4), UTF16) == len(text)
    assert offset_at(text, types.Position(line=3, character=0), UTF16) is None
    assert offset_at("a\n", types.Position(line=1, character=0), UTF16) == 2


def test_only_c_documents_are_completed():
    assert is_c_document("file:///w/a.c", "c")
    assert is_c_document("file:///w/a.h", "cpp")
    assert is_c_document("file:///w/weird.txt", "c")
    assert not is_c_document("file:///w/a.py", "python")
    assert not is_c_document("file:///w/a.cpp", "cpp")


class _CountingCodec(PositionCodec):
    """A UTF-16 codec that records the longest string it counted units of."""

    longest = 0

    def client_num_units(self, string: str):
        self.longest = max(self.longest, len(string))
        return super().client_num_units(string)


def test_a_keystroke_in_a_multi_megabyte_single_line_reads_only_up_to_the_cursor():
    line = "int x = 1; /* é */ " * 300_000  # ~5.7 MB on one line, not ASCII
    codec = _CountingCodec(types.PositionEncodingKind.Utf16)
    assert offset_at(line, types.Position(line=0, character=40), codec) == 40
    assert codec.longest <= 40
    assert offset_at(line, types.Position(line=0, character=10**9), codec) == len(line)  # clamped to the line
    ascii_line = "x" * 5_000_000
    assert offset_at(ascii_line, types.Position(line=0, character=4_000_000), codec) == 4_000_000
