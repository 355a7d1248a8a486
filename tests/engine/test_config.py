"""engine/config.py: the time-budget policy that fills in the settings a user left unset."""

import pytest

from cllm.engine.config import (BUDGET_FIELDS, BudgetPolicy, FinetunePolicy, ModelConfig, TrainConfig,
                                budget_defaults, budget_replay, budget_sample_bytes, finetune_defaults)

MB = 1_000_000


def test_without_a_budget_the_documented_defaults_stand():
    assert budget_defaults(MB, None, ModelConfig(), TrainConfig()) == {}
    train, model = TrainConfig(), ModelConfig()
    assert (train.epochs, train.batch_size, train.seq_len, train.lr, train.grad_accum) == (10, 32, 128, 1e-3, 4)
    assert (model.dropout, model.vocab_size) == (0.1, 10_000)


def test_a_short_budget_on_a_small_workspace_gets_many_small_steps_at_a_higher_rate():
    picked = budget_defaults(MB, 600, ModelConfig(), TrainConfig())
    assert picked == {"epochs": 10, "grad_accum": 1, "lr": 2e-3, "dropout": 0.0, "vocab_size": 4096}
    assert set(picked) == set(BUDGET_FIELDS)


def test_the_vocabulary_grows_with_the_corpus_up_to_the_default():
    sizes = [budget_defaults(n, 600, ModelConfig(), TrainConfig())["vocab_size"] for n in (10_000, 250_000, MB, 100 * MB)]
    assert sizes == sorted(sizes) and sizes[0] >= 1024 and sizes[-1] == ModelConfig.vocab_size
    assert all(size % 256 == 0 for size in sizes[:-1])


def test_data_poor_runs_keep_dropout_and_run_more_epochs_long_budgets_accumulate():
    tiny = budget_defaults(50_000, 600, ModelConfig(), TrainConfig())
    assert tiny["dropout"] == ModelConfig.dropout and tiny["epochs"] > TrainConfig.epochs
    assert tiny["epochs"] <= BudgetPolicy().max_epochs
    assert budget_defaults(20 * MB, 4 * 3600, ModelConfig(), TrainConfig())["grad_accum"] == TrainConfig.grad_accum


def test_explicit_settings_always_win():
    picked = budget_defaults(MB, 600, ModelConfig(), TrainConfig(), explicit={"lr", "vocab_size", "dropout"})
    assert set(picked) == {"epochs", "grad_accum"}
    assert budget_defaults(MB, 600, ModelConfig(), TrainConfig(), explicit=BUDGET_FIELDS) == {}


def test_wider_models_keep_their_learning_rate():
    assert "lr" not in budget_defaults(MB, 600, ModelConfig(d_model=512), TrainConfig())


def test_budget_sample_bytes_is_some_passes_over_what_the_budget_trains_on():
    policy = BudgetPolicy()
    assert budget_sample_bytes(None) is None
    assert budget_sample_bytes(300) == int(policy.sample_passes * 300 * policy.tokens_per_second * policy.bytes_per_token)
    assert budget_sample_bytes(600) == 2 * budget_sample_bytes(300)


def test_a_fine_tuning_budget_that_would_memorise_a_small_workspace_replays_more_base_text():
    small, large = 200_000, 20 * MB
    budget_passes = 600 * BudgetPolicy.tokens_per_second * BudgetPolicy.bytes_per_token / small
    assert budget_passes > FinetunePolicy.max_epochs  # the case the rule is for
    replay = finetune_defaults(small, 600, ModelConfig(), TrainConfig())["replay_fraction"]
    assert TrainConfig.replay_fraction < replay <= FinetunePolicy.max_replay
    workspace_passes = budget_passes * (1.0 - replay)
    assert workspace_passes == pytest.approx(FinetunePolicy.max_epochs) or replay == FinetunePolicy.max_replay
    assert finetune_defaults(large, 600, ModelConfig(), TrainConfig())["replay_fraction"] == TrainConfig.replay_fraction
    assert finetune_defaults(10, 600, ModelConfig(), TrainConfig())["replay_fraction"] == FinetunePolicy.max_replay


def test_the_fine_tuning_epochs_count_passes_over_the_stream_replay_makes():
    ws = 200_000
    replay = budget_replay(ws, 600)
    with_replay = finetune_defaults(ws, 600, ModelConfig(), TrainConfig())["epochs"]
    assert with_replay == budget_defaults(int(ws / (1.0 - replay)), 600, ModelConfig(), TrainConfig())["epochs"]
    assert with_replay < budget_defaults(ws, 600, ModelConfig(), TrainConfig())["epochs"]


def test_fine_tuning_without_a_budget_or_with_an_explicit_share_keeps_its_replay():
    assert "replay_fraction" not in finetune_defaults(200_000, None, ModelConfig(), TrainConfig())
    assert budget_replay(200_000, None) == 0.0
    mine = TrainConfig(replay_fraction=0.1)
    assert "replay_fraction" not in finetune_defaults(200_000, 600, ModelConfig(), mine, explicit={"replay_fraction"})


def test_positions_are_validated():
    with pytest.raises(ValueError, match="positions must be one of learned, rope, got 'alibi'"):
        ModelConfig(positions="alibi").validate()
    with pytest.raises(ValueError, match="rotary positions need an even head size, got 3"):
        ModelConfig(d_model=24, n_heads=8, positions="rope").validate()


def test_each_option_is_declared_once_with_its_own_flag_and_setting():
    from cllm.engine.config import OPTIONS, CorpusConfig, config_options

    flags = [o.flag for o in OPTIONS]
    settings = [o.setting for o in OPTIONS if o.setting]
    assert len(set(flags)) == len(flags) and len(set(settings)) == len(settings)
    assert config_options(ModelConfig)["n_layers"].flag == "layers" and config_options(ModelConfig)["d_ff"].setting == "ffn"
    assert config_options(CorpusConfig)["gitignore"].argument == "--no-gitignore"
    assert ModelConfig().n_layers == ModelConfig.n_layers == 4, "the defaults stay class attributes"


def test_a_check_accepts_its_range_and_says_it_in_words():
    from cllm.engine.config import COUNT, SIZE, Check

    assert SIZE.accepts(1) and SIZE.accepts(100_000) and not SIZE.accepts(0) and not SIZE.accepts(100_001)
    assert SIZE.expected() == "a whole number from 1 to 100000" and COUNT.expected() == "a whole number >= 0"
    dropout = Check(float, minimum=0, exclusive_maximum=1)
    assert dropout.accepts(0.0) and not dropout.accepts(1.0) and dropout.expected() == "a number in [0, 1)"
    assert dropout.json_schema() == {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
    assert Check(str, choices=("a", "b")).json_schema() == {"type": "string", "enum": ["a", "b"]}


def test_the_extension_lists_the_schema_as_it_is():
    """vscode-extension/src/trainingOptions.json is written from editor_settings() at the extension's build
    (scripts/training-options.mjs); the extension's tests hold package.json against it."""
    import json
    from pathlib import Path

    from cllm.engine.config import editor_settings

    listed = Path(__file__).resolve().parents[2] / "vscode-extension" / "src" / "trainingOptions.json"
    assert json.loads(listed.read_text())["settings"] == editor_settings(), \
        "the option schema changed: run `npm run options` in vscode-extension/"
