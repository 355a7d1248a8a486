"""The proxy's merging of two servers' answers (the routing itself runs against clangd in
tests/e2e/test_lsp_proxy.py)."""

from __future__ import annotations

from cllm.server.proxy import merge_capabilities, merge_completions

OURS = {"jsonrpc": "2.0", "id": 7, "result": {"isIncomplete": True, "items": [{"label": "return 0;", "detail": "cllm"}]}}
NOTHING = {"jsonrpc": "2.0", "id": 7, "result": {"isIncomplete": True, "items": []}}


def test_our_item_follows_theirs_in_a_completion_list_or_array():
    listed = {"jsonrpc": "2.0", "id": 7, "result": {"isIncomplete": False, "items": [{"label": "printf"}],
                                                    "itemDefaults": {"insertTextFormat": 1}}}
    merged = merge_completions(listed, OURS)["result"]
    assert [item["label"] for item in merged["items"]] == ["printf", "return 0;"]
    assert merged["isIncomplete"] is True and merged["itemDefaults"] == {"insertTextFormat": 1}
    array = merge_completions({"jsonrpc": "2.0", "id": 7, "result": [{"label": "puts"}]}, OURS)
    assert array["id"] == 7 and [item["label"] for item in array["result"]["items"]] == ["puts", "return 0;"]
    assert merge_completions({"jsonrpc": "2.0", "id": 7, "result": None}, OURS)["result"]["items"] == OURS["result"]["items"]


def test_their_answer_is_kept_as_it_is_when_we_add_nothing():
    error = {"jsonrpc": "2.0", "id": 7, "error": {"code": -32602, "message": "no such file"}}
    assert merge_completions(error, NOTHING) is error
    assert merge_completions(error, {"jsonrpc": "2.0", "id": 7, "error": {"code": 1, "message": "x"}}) is error
    assert merge_completions(error, OURS)["result"]["items"] == OURS["result"]["items"]


def test_capabilities_are_theirs_plus_our_completion_inline_and_commands():
    theirs = {"id": 0, "result": {"capabilities": {"hoverProvider": True, "completionProvider": {"triggerCharacters": ["."]},
                                                   "executeCommandProvider": {"commands": ["clangd.applyFix"]}},
                                  "serverInfo": {"name": "clangd", "version": "14"}}}
    ours = {"id": 0, "result": {"capabilities": {"completionProvider": {}, "inlineCompletionProvider": {},
                                                 "executeCommandProvider": {"commands": ["cllm.status"]}}}}
    merged = merge_capabilities(theirs, ours)["result"]
    caps = merged["capabilities"]
    assert caps["hoverProvider"] is True and caps["completionProvider"] == {"triggerCharacters": ["."]}
    assert caps["inlineCompletionProvider"] == {}
    assert caps["executeCommandProvider"]["commands"] == ["clangd.applyFix", "cllm.status"]
    assert merged["serverInfo"] == {"name": "clangd + cllm", "version": "14"}
