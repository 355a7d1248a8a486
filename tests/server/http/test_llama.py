"""llama.cpp request fields mapped onto cllm completion options, and the response objects clients read."""

import pytest

from cllm.engine import Completion
from cllm.server.http.llama import LlamaRequestError, final_object, parse_completion, parse_infill

LIMITS = {"max_tokens": 2048, "max_stops": 32}


def test_infill_fields_map_to_the_cursor_and_options():
    req = parse_infill({"input_prefix": "int f() {\n", "prompt": "    ret", "input_suffix": "\n}\n",
                        "input_extra": [{"filename": "/a.c", "text": "int a;", "time": 1}], "n_predict": 9999,
                        "top_k": 40, "top_p": 0.99, "t_max_predict_ms": 500, "stop": ["\n\n"], "n_cmpl": 3,
                        "samplers": ["top_k"], "cache_prompt": True, "id_slot": 0, "n_indent": 4}, **LIMITS)
    assert (req.prefix, req.suffix, req.stream, req.warm_only) == ("int f() {\n    ret", "\n}\n", False, False)
    assert req.options == {"max_tokens": 2048, "top_k": 40, "top_p": 0.99, "max_ms": 500.0, "stop": ("\n\n",)}


@pytest.mark.parametrize("n_predict, max_tokens, warm_only", [(None, None, False), (-1, None, False),
                                                               (0, 0, True), (16, 16, False)])
def test_n_predict(n_predict, max_tokens, warm_only):
    req = parse_completion({"prompt": "x", "n_predict": n_predict}, **LIMITS)
    assert (req.options.get("max_tokens"), req.warm_only) == (max_tokens, warm_only)


def test_a_zero_time_budget_means_none_and_a_negative_seed_the_default():
    assert parse_completion({"prompt": "x", "t_max_predict_ms": 0, "seed": -1}, **LIMITS).options == {}


@pytest.mark.parametrize("body", [{"prompt": 1}, {"prompt": "x", "stream": 1}, {"prompt": "x", "top_k": 1.5},
                                  {"prompt": "x", "temperature": True}, {"prompt": "x", "stop": "x"}])
def test_wrong_types_are_refused(body):
    with pytest.raises(LlamaRequestError):
        parse_completion(body, **LIMITS)


def test_the_final_object_has_numeric_timings_and_settings():
    req = parse_infill({"n_predict": 32}, **LIMITS)
    body = final_object(Completion("a + b;", 4, "newline", 8.0, prompt_tokens=20), req, 1024, 64)
    assert (body["content"], body["stop"], body["stop_type"], body["has_new_line"]) == ("a + b;", True, "eos", False)
    assert body["generation_settings"]["n_ctx"] == 1024 and body["generation_settings"]["n_predict"] == 32
    assert body["tokens_cached"] == 24 and body["timings"]["predicted_per_second"] == 500.0
    warm = final_object(None, parse_infill({"n_predict": 0}, **LIMITS), 1024, 64)
    assert warm["content"] == "" and warm["generation_settings"]["n_predict"] == 0
    assert all(isinstance(v, (int, float)) for v in warm["timings"].values())
