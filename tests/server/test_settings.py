"""The `cllm` settings: accepted values, reported problems, trainer flags."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cllm.server.settings import (PRETRAIN_OPTIONS, SHAPE_OPTIONS, TRAINING_KEYS, Settings, check_training, layer_settings,
                                  parse_settings, train_arguments)


def test_good_settings_are_taken():
    settings, problems = parse_settings({"enable": False, "maxTokens": 32, "multiline": True, "modelDir": "/m",
                                         "indexMemoryMB": 256,
                                         "training": {"epochs": 3, "timeBudget": 60, "spheres": 12, "threads": 0}})
    assert problems == []
    assert settings == Settings(enable=False, max_tokens=32, multiline=True, model_dir="/m", index_memory_mb=256.0,
                                training={"epochs": 3, "time_budget": 60.0, "spheres": 12, "threads": 0})


def test_each_problem_is_named_and_ignored():
    settings, problems = parse_settings({"enable": 1, "maxTokens": -1, "modelDir": "", "bogus": 2,
                                         "training": {"epochs": 1.5, "spheres": 0, "dModel": True, "x": 1}})
    assert settings == Settings()
    joined = "\n".join(problems)
    for key in ("cllm.enable", "cllm.maxTokens", "cllm.modelDir", "cllm.bogus", "cllm.training.epochs",
                "cllm.training.spheres", "cllm.training.dModel", "cllm.training.x"):
        assert key in joined
    assert len(problems) == 8


def test_the_index_memory_cap_is_a_positive_number_or_null():
    assert parse_settings({"indexMemoryMB": 0.5}) == (Settings(index_memory_mb=0.5), [])
    assert parse_settings({"indexMemoryMB": None}) == (Settings(), [])
    for bad, reason in ((0, "must be positive"), (-64, "must be positive"), ("512", "must be a number"),
                        (True, "must be a number"), (float("inf"), "must be a number"), (10**400, "out of range")):
        settings, problems = parse_settings({"indexMemoryMB": bad, "maxTokens": 8})
        assert settings == Settings(max_tokens=8)  # ignored; the rest applies
        assert len(problems) == 1 and problems[0].startswith("setting cllm.indexMemoryMB") and reason in problems[0]


def test_non_objects_are_reported():
    assert parse_settings(None) == (Settings(), [])
    assert parse_settings([1])[1] and parse_settings({"training": 3})[1]


def test_training_overrides_by_python_name_become_trainer_flags():
    good, problems = check_training({"epochs": 2, "time_budget": 1.5, "d_model": 32, "seed": 0, "max_steps": None})
    assert problems == []
    assert train_arguments(good) == ["--epochs", "2", "--time-budget", "1.5", "--d-model", "32", "--seed", "0"]
    assert check_training({"warp": 9})[1] == ["unknown training option 'warp'"]


def test_non_finite_numbers_are_problems_not_crashes():
    good, problems = check_training({"epochs": float("inf"), "lr": float("nan"), "time_budget": float("inf")})
    assert good == {}
    assert len(problems) == 3 and all("must be a number" in p for p in problems)


def test_huge_numbers_are_problems_not_crashes():
    good, problems = check_training({"epochs": 10**400, "lr": -10**400, "seed": 2**53})
    assert good == {"seed": 2**53}
    assert len(problems) == 2 and all("out of range" in p for p in problems)


def test_no_gitignore_is_a_switch_flag():
    settings, problems = parse_settings({"training": {"noGitignore": True, "epochs": 2}})
    assert problems == [] and settings.training == {"no_gitignore": True, "epochs": 2}
    assert train_arguments(settings.training) == ["--no-gitignore", "--epochs", "2"]
    assert train_arguments({"no_gitignore": False}) == []
    assert parse_settings({"training": {"noGitignore": "yes"}})[1] == [
        "setting cllm.training.noGitignore must be true or false, got 'yes'"]


BASE = {"modelDir": "/m", "maxTokens": 8, "training": {"timeBudget": 60, "maxSteps": 4}}


def test_no_section_leaves_the_initialization_options_in_force():
    # eglot: didChangeConfiguration {"settings": {}} and the pull answered [null]
    assert layer_settings(BASE, None) == (BASE, [])
    assert layer_settings(BASE, {}) == (BASE, [])


def test_a_section_overrides_key_by_key_and_training_too():
    merged, problems = layer_settings(BASE, {"maxTokens": 16, "training": {"maxSteps": 9, "epochs": 2}})
    assert problems == []
    assert merged == {"modelDir": "/m", "maxTokens": 16, "training": {"timeBudget": 60, "maxSteps": 9, "epochs": 2}}
    assert BASE["training"] == {"timeBudget": 60, "maxSteps": 4}  # the base is not changed


def test_a_null_key_goes_back_to_the_default():
    merged, _ = layer_settings(BASE, {"modelDir": None, "training": {"timeBudget": None}})
    assert merged == {"maxTokens": 8, "training": {"maxSteps": 4}}
    assert parse_settings(merged)[0].model_dir is None


def test_a_section_that_is_not_an_object_is_reported_and_the_base_stays():
    merged, problems = layer_settings(BASE, [1])
    assert merged == BASE and problems == ["settings for cllm must be an object, got [1]"]


def test_a_section_over_no_base_is_the_section():
    assert layer_settings(None, {"enable": False}) == ({"enable": False}, [])
    assert layer_settings({}, {"training": {"epochs": 1}}) == ({"training": {"epochs": 1}}, [])


def test_training_base_and_base_corpus_are_checked_and_leave_the_training_options_alone():
    settings, problems = parse_settings({"training": {"epochs": 2, "base": "prepare", "baseCorpus": ["/inc"]}})
    assert (settings.base, settings.base_corpus, settings.training, problems) == ("prepare", ["/inc"], {"epochs": 2}, [])
    assert parse_settings({})[0].base == "ask"
    settings, problems = parse_settings({"training": {"base": "later", "baseCorpus": "/inc"}})
    assert (settings.base, settings.base_corpus) == ("ask", [])
    assert problems == ["setting cllm.training.base must be one of ask, prepare, scratch, got 'later'",
                        "setting cllm.training.baseCorpus must be a list of folders, got '/inc'"]


def test_an_editor_clearing_fresh_base_and_base_corpus_brings_back_their_defaults():
    """The VS Code extension sends a cleared training.fresh, base or baseCorpus as null (vscode-extension/src/settings.ts)."""
    start = {"training": {"fresh": True, "base": "prepare", "baseCorpus": ["/inc"]}}
    merged, _ = layer_settings(start, {"training": {"fresh": None, "base": None, "baseCorpus": None}})
    settings, problems = parse_settings(merged)
    assert (settings.base, settings.base_corpus, settings.training, problems) == ("ask", [], {}, [])

def test_every_training_setting_is_an_option_of_the_schema_checked_as_declared():
    from cllm.engine.config import OPTIONS

    assert {o.setting: o for o in OPTIONS if o.setting} == TRAINING_KEYS
    assert parse_settings({"training": {"dModel": 100_000, "threads": 0}})[0].training == {"d_model": 100_000,
                                                                                            "threads": 0}
    assert parse_settings({"training": {"dModel": 100_001, "lr": 0}})[1] == [
        "setting cllm.training.dModel must be a whole number from 1 to 100000, got 100001",
        "setting cllm.training.lr must be a number > 0, got 0.0"]


def test_switches_become_flags_and_the_shape_and_pretrain_options_come_from_the_schema():
    settings, problems = parse_settings({"training": {"fresh": True, "noGitignore": True, "layers": 2}})
    assert problems == [] and train_arguments(settings.training) == ["--fresh", "--no-gitignore", "--layers", "2"]
    assert SHAPE_OPTIONS == ("vocab_size", "d_model", "layers", "heads", "ffn", "position_encoding")
    assert set(PRETRAIN_OPTIONS) == {"time_budget", "max_steps", "epochs", "seed", "threads", "seq_len"}


def test_an_impossible_model_dir_is_one_problem_and_the_default_folder_serves(tmp_path):
    from cllm.engine.paths import model_dir
    from cllm.server.workspace import Workspace

    for bad, words in (("~nosuchuser/x", "no such user"), ("/tmp/" + "a" * 300, "too long"),
                       ("/tmp/" + ("b" * 200 + "/") * 30, "too long")):
        settings, problems = parse_settings({"modelDir": bad})
        assert settings.model_dir is None and len(problems) == 1, bad
        assert words in problems[0].lower() and "default model folder" in problems[0] and len(problems[0]) < 200
        workspace = Workspace(tmp_path, settings={"modelDir": bad})
        try:
            assert workspace.model_dir == model_dir(tmp_path).resolve()
        finally:
            workspace.close()
    assert parse_settings({"modelDir": str(tmp_path / "not" / "yet")}) == (Settings(model_dir=str(tmp_path / "not" / "yet")), [])


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.one_of(st.sampled_from(["~", "~nosuchuser", "~root", "..", ".", "", "a" * 256, "\0",
                                                  "model", " ", "\\"]), st.text(max_size=20)), max_size=30))
def test_fuzzed_model_dirs_are_taken_or_one_problem_never_an_error(parts):
    """Any modelDir string (unknown users, NUL, names past the limits, odd characters): parse_settings either takes
    it or names one short problem, and the Workspace's model folder can be looked up either way."""
    value = "/".join(parts)
    settings_, problems = parse_settings({"modelDir": value})
    if problems:
        assert settings_.model_dir is None and len(problems) == 1 and len(problems[0]) < 300
    elif value:
        assert settings_.model_dir == value
        Path(value).expanduser().resolve()


def test_eagerness_is_one_of_three_and_normal_by_default():
    assert parse_settings({}) == (Settings(eagerness="normal"), [])
    assert parse_settings({"eagerness": "low"}) == (Settings(eagerness="low"), [])
    assert parse_settings({"eagerness": None}) == (Settings(), [])
    for bad, reason in (("eager", "must be one of low, normal, high, got 'eager'"), (1, "must be a non-empty string"),
                        (True, "must be a non-empty string")):
        settings, problems = parse_settings({"eagerness": bad, "maxTokens": 8})
        assert settings == Settings(max_tokens=8)
        assert len(problems) == 1 and reason in problems[0] and "cllm.eagerness" in problems[0]
