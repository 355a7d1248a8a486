"""engine/train/loop.py on tiny models: learning, resume equivalence, stop rules, events, the model file."""

import importlib
import json
import math
import re
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from cllm.engine.model.checkpoint import load_checkpoint
from cllm.engine.model.loaded import load_model
from cllm.engine.config import CorpusConfig, ModelConfig, TrainConfig, budget_sample_bytes
from cllm.engine.data.corpus import Document
from cllm.engine.events import CheckpointEvent, EpochEvent, PhaseEvent, StepEvent
from cllm.engine.train.loop import TrainCancelled, TrainError, learning_rate, train, warmup_steps
from cllm.engine.train.start import Continue, FromBase, Resume
from conftest import TINY_BASE_TRAINING

train_module = importlib.import_module("cllm.engine.train.loop")  # the module (cllm.engine.train.loop is the function)
budget_module = importlib.import_module("cllm.engine.train.budget")
finish_module = importlib.import_module("cllm.engine.train.finish")
MODEL = ModelConfig(vocab_size=400, d_model=32, n_layers=2, n_heads=2, d_ff=64, max_seq_len=32, dropout=0.1)
TRAIN = TrainConfig(epochs=3, batch_size=8, seq_len=32, grad_accum=2, lr=3e-3, warmup_steps=4, spheres=12,
                    threads=2, val_fraction=0.25, patience=5)


def _run(source, out, cfg=TRAIN, **kw):
    """The done event and the training events from the start event on (test_phases_* look at those before)."""
    events = []
    done = train(source, MODEL, cfg, out, events.append, **kw)
    return done, [event for event in events if not isinstance(event, PhaseEvent)]


def test_validation_loss_falls_and_the_file_holds_the_best_weights(c_workspace, tmp_path):
    done, events = _run(c_workspace, tmp_path / "m.cllm", replace(TRAIN, epochs=4))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("epoch") == 4 and kinds.count("checkpoint") == 4
    assert events[0].settings.replay_fraction == 0.0  # no base: nothing replayed
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert epochs[-1].val_loss < epochs[0].val_loss - 0.3
    assert 0 < done.val_bits_per_byte == min(e.val_bits_per_byte for e in epochs)
    assert done.stop_reason == "completed" and done.steps == events[0].total_steps
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps and len(steps[-1].spheres) == 12
    assert steps[0].seconds_remaining > 0  # steps remain, at the measured step time (no budget)
    assert {"id", "sequences", "tokens", "busy", "wait", "loss"} <= set(steps[-1].to_json()["spheres"][0])
    json.dumps([e.to_json() for e in events])  # every event is JSON-ready
    ckpt = load_checkpoint(done.checkpoint, with_optimizer=True)
    meta = ckpt.metadata
    assert meta["steps"] == done.steps and meta["epochs"] == 4 and meta["spheres"] == 12
    assert len(meta["val_files"]) >= 1 and len(meta["train_files"]) + len(meta["val_files"]) == 8
    assert ckpt.model_config.vocab_size <= MODEL.vocab_size
    assert (tmp_path / "repo_code.txt").read_text().count("FILE:") == 8
    assert meta["mixture"] is not None  # the shipped completer mixes, and its held-out exact match is recorded
    assert isinstance(done.line_exact_match, float) and 0.0 <= done.line_exact_match <= 1.0
    assert meta["line_exact_match"] == done.line_exact_match
    thresholds = meta["thresholds"]  # fitted on the same held-out lines, per eagerness
    assert set(thresholds) == {"low", "normal", "high"}
    assert 1.0 >= thresholds["low"] >= thresholds["normal"] >= thresholds["high"] >= 0.0


def test_resume_after_n_steps_equals_uninterrupted_training_bitwise(c_workspace, tmp_path):
    total, first = 9, 4  # crosses an epoch boundary (validation + checkpoint) after the resume
    full, _ = _run(c_workspace, tmp_path / "full.cllm", replace(TRAIN, max_steps=total))
    part, _ = _run(c_workspace, tmp_path / "part.cllm", replace(TRAIN, max_steps=first))
    assert part.steps == first and part.stop_reason == "max_steps"
    resumed, events = _run(c_workspace, tmp_path / "resumed.cllm", replace(TRAIN, max_steps=total),
                           start=Resume(tmp_path / "part.cllm"))
    assert events[0].step == first and resumed.steps == total
    a = load_checkpoint(tmp_path / "full.cllm", with_optimizer=True).optimizer
    b = load_checkpoint(tmp_path / "resumed.cllm", with_optimizer=True).optimizer
    assert a["step"] == b["step"] == total
    for key in ("params", "m", "v"):
        assert np.array_equal(a[key], b[key]), key


def test_training_is_bitwise_identical_for_any_thread_count(c_workspace, tmp_path):
    results = {}
    for threads in (1, 3):
        done, _ = _run(c_workspace, tmp_path / f"t{threads}.cllm", replace(TRAIN, epochs=2, threads=threads))
        assert done.threads == threads
        results[threads] = load_checkpoint(done.checkpoint, with_optimizer=True)
    assert np.array_equal(results[1].params, results[3].params)
    assert np.array_equal(results[1].optimizer["params"], results[3].optimizer["params"])
    assert results[1].metadata["val_bits_per_byte"] == results[3].metadata["val_bits_per_byte"]


def test_time_budget_stops_cleanly_with_a_resumable_checkpoint(c_workspace, tmp_path):
    done, events = _run(c_workspace, tmp_path / "m.cllm", replace(TRAIN, epochs=50, time_budget=1e-3))
    assert done.stop_reason == "time_budget" and done.steps == 1
    assert [e.seconds_remaining for e in events if isinstance(e, StepEvent)] == [0.0]  # the budget is spent
    assert events[-1] == CheckpointEvent(path=str(tmp_path / "m.cllm"))
    ckpt = load_checkpoint(tmp_path / "m.cllm", with_optimizer=True)
    assert ckpt.optimizer["step"] == 1 and ckpt.metadata["resume"]["batch"] == 1
    # a budget that holds the whole run leaves the schedule as planned
    done, events = _run(c_workspace, tmp_path / "big.cllm", replace(TRAIN, epochs=2, time_budget=1e6))
    planned = events[0].total_steps
    assert done.stop_reason == "completed" and done.steps == planned
    assert load_checkpoint(tmp_path / "big.cllm").metadata["resume"]["schedule_steps"] == planned


def test_the_time_budget_keeps_room_for_scoring_the_held_out_lines(c_workspace, tmp_path, monkeypatch):
    """The held-out line scoring at the end (HELDOUT_POSITIONS completions) counts in the finish estimate: with
    line completions timed at a quarter second each, 60 of them (15 s) leave no room in a 10 s budget after step 1."""
    probes = []

    def slow_lines(model, documents, scorer=None, *, positions=finish_module.HELDOUT_POSITIONS, seed=0):
        if positions < finish_module.HELDOUT_POSITIONS:  # the probe that times a line completion
            probes.append(positions)
            time.sleep(0.25 * positions)
        return 0.5

    monkeypatch.setattr(finish_module, "line_exact_match", slow_lines)
    done, _ = _run(c_workspace, tmp_path / "m.cllm", replace(TRAIN, epochs=50, time_budget=10.0))
    assert probes == [1, budget_module.LINE_PROBE_POSITIONS], "one untimed completion loads the kernels, then timed once"
    assert done.stop_reason == "time_budget" and done.steps == 1


@pytest.fixture
def finish_estimates(monkeypatch):
    """Records, per budgeted run, the calls of workspace_models ("build") and finish_estimate ("estimate") in order
    and each estimate with the run's held-out inputs; a forward batch of the mixture's fit "takes" a second."""
    calls, estimates = [], []
    real_models, real_estimate = finish_module.workspace_models, budget_module.Budget.finish_estimate

    def models(*args):
        calls.append("build")
        return real_models(*args)

    def estimate(run):
        parts = real_estimate(run)
        calls.append("estimate")
        estimates.append((run.heldout, parts))
        return parts

    monkeypatch.setattr(finish_module, "workspace_models", models)
    monkeypatch.setattr(budget_module.Budget, "finish_estimate", estimate)
    monkeypatch.setattr(finish_module, "batch_seconds", lambda *args: 1.0)
    return calls, estimates


def test_the_finish_estimate_counts_the_held_out_scoring_prepared_before_the_stop_decision(c_workspace, tmp_path,
                                                                                           finish_estimates):
    """A budgeted run builds the workspace models (and the copying models' probabilities) once, at its first stop
    check, so their time is spent before the decision; the estimate then counts the mixture's forward batches over
    the held-out sample, more for more held-out text."""
    calls, estimates = finish_estimates
    mixture_parts = []
    for val_fraction in (0.25, 0.75):  # one held-out file, then five
        calls.clear()
        estimates.clear()
        _run(c_workspace, tmp_path / f"m{val_fraction}.cllm",
             replace(TRAIN, epochs=50, time_budget=1e4, max_steps=2, val_fraction=val_fraction))
        assert calls[:2] == ["build", "estimate"] and calls.count("build") == 1, calls
        heldout, parts = estimates[0]
        assert heldout.fit_docs == heldout.val_docs  # 10 % of the budget holds them all
        assert heldout.batches > 0 and parts.mixture == heldout.batches + heldout.fit_seconds
        assert parts.validation > 0 and parts.lines > 0 and parts.save > 0
        mixture_parts.append(parts.mixture)
    assert mixture_parts[1] > mixture_parts[0] + 1


def test_a_tight_budget_fits_the_mixture_on_fewer_held_out_files(c_workspace, tmp_path, finish_estimates):
    """The mixture's forward passes take at most MIXTURE_BUDGET_SHARE of the budget by the estimate: at a second a
    batch, a 200-s budget scores 20 batches' worth of held-out files, a sample of them, and the estimate counts it."""
    _, estimates = finish_estimates
    budget = 200.0
    done, _ = _run(c_workspace, tmp_path / "m.cllm",
                   replace(TRAIN, epochs=50, time_budget=budget, max_steps=2, val_fraction=0.75))
    heldout, parts = estimates[0]
    fit, val = ({doc.path for doc in docs} for docs in (heldout.fit_docs, heldout.val_docs))
    assert 1 < len(fit) < len(val) and fit < val
    assert 0 < heldout.batches <= budget_module.MIXTURE_BUDGET_SHARE * budget
    assert parts.mixture == heldout.batches + heldout.fit_seconds
    assert load_checkpoint(done.checkpoint).metadata["mixture"] is not None  # fitted on that sample


def test_the_validation_estimate_leaves_out_the_first_batch_which_loads_the_kernels(c_workspace, tmp_path, monkeypatch,
                                                                                   finish_estimates):
    """The first evaluation batch loads or compiles the kernels (on a busy machine it once took a 600-s budget's
    whole estimate and stopped the run after one step): it is not the one timed. Here it "takes" 100 s more."""
    _, estimates = finish_estimates
    clock = type("Clock", (), {"offset": 0.0, "perf_counter": lambda self: time.perf_counter() + self.offset})()
    real_batch, calls = train_module._Run._evaluate_batch, []

    def cold_first(run, *args):
        calls.append(len(calls))
        clock.offset += 100.0 if len(calls) == 1 else 0.0
        return real_batch(run, *args)

    monkeypatch.setattr(budget_module, "time", clock)
    monkeypatch.setattr(train_module._Run, "_evaluate_batch", cold_first)
    _run(c_workspace, tmp_path / "m.cllm", replace(TRAIN, epochs=50, time_budget=1e4, max_steps=2))
    _, parts = estimates[0]
    assert len(calls) >= 2 and 0 < parts.validation < 100.0


def test_a_run_without_a_time_budget_does_not_time_the_held_out_scoring(c_workspace, tmp_path, monkeypatch):
    """Only a time budget reads the finish estimate: without one, no batch is timed and no fit is rehearsed."""
    def untimed(*args):
        raise AssertionError("timed without a time budget")

    monkeypatch.setattr(finish_module, "batch_seconds", untimed)
    monkeypatch.setattr(finish_module, "fitted_mixture", untimed)  # the rehearsal of the fit (heldout.py fits)
    done, _ = _run(c_workspace, tmp_path / "m.cllm", replace(TRAIN, max_steps=1))
    assert done.steps == 1 and load_checkpoint(done.checkpoint).metadata["mixture"] is not None


def test_cancel_event_stops_at_the_next_step(c_workspace, tmp_path):
    cancel = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, StepEvent):
            cancel.set()

    done = train(c_workspace, MODEL, TRAIN, tmp_path / "m.cllm", on_event, cancel=cancel)
    assert done.stop_reason == "cancelled" and done.steps == 1
    assert load_checkpoint(tmp_path / "m.cllm").metadata["steps"] == 1


def test_documents_without_held_out_files_skip_validation(tmp_path):
    docs = [Document(f"f{i}.c", f"int f{i}(int x) {{ return x * {i}; }}\n" * 20, 0) for i in range(3)]
    done, events = _run(docs, tmp_path / "m.cllm", replace(TRAIN, epochs=2, val_fraction=0.0))
    assert done.val_bits_per_byte is None and done.stop_reason == "completed"
    assert [e.val_loss for e in events if isinstance(e, EpochEvent)] == [None, None]
    assert events[0].val_files == 0 and events[0].workspace is None


def test_unusable_input_raises_train_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no C here")
    with pytest.raises(TrainError, match="no C files"):
        train(tmp_path, MODEL, TRAIN, tmp_path / "m.cllm")
    with pytest.raises(TrainError, match="seq_len 64 exceeds"):
        train([Document("a.c", "int a;\n" * 50, 0)], MODEL, replace(TRAIN, seq_len=64), tmp_path / "m.cllm")
    with pytest.raises(TrainError, match="max_steps must be positive"):
        train([Document("a.c", "int a;\n", 0)], MODEL, replace(TRAIN, max_steps=0), tmp_path / "m.cllm")
    with pytest.raises(TrainError, match="time_budget must be"):
        train([Document("a.c", "int a;\n", 0)], MODEL, replace(TRAIN, time_budget=math.inf), tmp_path / "m.cllm")
    with pytest.raises(TrainError, match="lr must be"):
        train([Document("a.c", "int a;\n", 0)], MODEL, replace(TRAIN, lr=math.nan), tmp_path / "m.cllm")


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = replace(TRAIN, lr=1.0, min_lr_ratio=0.1, warmup_steps=10, warmup_fraction=0.2)
    rates = [learning_rate(s, cfg, 100) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert learning_rate(100, cfg, 100) == pytest.approx(0.1)
    assert math.isclose(learning_rate(1, cfg, 10), 1.0)  # warm-up capped at a fifth of a 10-step run


def test_warm_up_is_at_most_its_fraction_of_the_run():
    cfg = TrainConfig()  # documented defaults: 100 warm-up steps, at most 5 % of the run
    assert warmup_steps(cfg, 190) == 9 and warmup_steps(cfg, 10_000) == 100
    assert learning_rate(8, cfg, 190) == pytest.approx(cfg.lr)  # a short run reaches the peak rate after 9 steps
    assert learning_rate(0, cfg, 10_000) == pytest.approx(cfg.lr / 100)


def test_explicit_settings_let_a_budgeted_run_pick_the_rest_and_record_them(c_workspace, tmp_path):
    cfg = replace(TRAIN, epochs=1, time_budget=60.0)
    done, events = _run(c_workspace, tmp_path / "m.cllm", cfg, explicit={"time_budget", "epochs", "lr"})
    start = events[0]
    assert start.auto == ["dropout", "grad_accum", "vocab_size"]
    assert start.settings.grad_accum == 1 and start.settings.lr == TRAIN.lr  # --lr was given
    assert start.vocab_size <= 1024 and start.epochs == 1
    meta = load_checkpoint(done.checkpoint).metadata
    assert meta["train_config"]["grad_accum"] == 1 and meta["train_config"]["epochs"] == 1
    _, plain = _run(c_workspace, tmp_path / "plain.cllm", cfg)  # explicit=None: the configs are final
    assert plain[0].auto == [] and plain[0].settings.grad_accum == TRAIN.grad_accum


def test_phases_report_progress_before_the_start_event(c_workspace, tmp_path):
    events = []
    done = train(c_workspace, MODEL, replace(TRAIN, epochs=1), tmp_path / "m.cllm", events.append)
    start = next(i for i, event in enumerate(events) if event.kind == "start")
    phases = events[:start]
    assert all(isinstance(event, PhaseEvent) for event in phases) and not any(
        isinstance(event, PhaseEvent) for event in events[start:])
    ends = {event.phase: event for event in phases if event.done == event.total}
    assert list(ends) == ["scan", "tokenizer", "tokenize"]
    assert ends["scan"].done == events[start].files and ends["scan"].unit == "files"
    assert ends["tokenizer"].unit == ends["tokenize"].unit == "bytes"
    assert ends["tokenize"].done >= ends["tokenizer"].done >= events[start].corpus["bytes"] * 0.5
    assert phases[-1] == PhaseEvent(phase="train", done=0, total=events[start].total_steps, unit="steps")
    assert done.corpus_fraction == 1.0


def test_a_file_deleted_after_the_scan_is_skipped_with_its_reason(c_workspace, tmp_path):
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, PhaseEvent) and event.phase == "scan" and event.done == event.total:
            (c_workspace / "mod3.c").unlink()

    done = train(c_workspace, MODEL, replace(TRAIN, epochs=1), tmp_path / "m.cllm", on_event)
    start = next(event for event in events if event.kind == "start")
    assert [(s.path, s.reason) for s in start.skipped] == [("mod3.c", "deleted after the scan")]
    assert start.files == start.train_files + start.val_files == 7 and start.corpus["files"] == 7
    meta = load_checkpoint(tmp_path / "m.cllm").metadata
    assert "mod3.c" not in meta["train_files"] + meta["val_files"] and done.steps > 0
    assert "mod3.c" not in (tmp_path / "repo_code.txt").read_text()


@pytest.mark.parametrize("phase", ["scan", "tokenizer", "tokenize"])
def test_cancel_in_a_phase_before_the_first_step_writes_no_model(c_workspace, tmp_path, phase):
    cancel = threading.Event()
    out = tmp_path / "m.cllm"

    def on_event(event):
        if isinstance(event, PhaseEvent) and event.phase == phase:
            cancel.set()

    with pytest.raises(TrainCancelled, match=f"cancelled during the {phase} phase, before the first step"):
        train(c_workspace, MODEL, TRAIN, out, on_event, cancel=cancel)
    assert not out.exists() and not list(tmp_path.glob(".tokens-*")), "no model, no token file left behind"


def test_cancel_during_validation_ends_the_run_with_the_model_written(c_workspace, tmp_path, monkeypatch):
    cancel = threading.Event()
    evaluate = train_module._Run._evaluate

    def cancelled_midway(run, params):
        cancel.set()
        return evaluate(run, params)

    monkeypatch.setattr(train_module._Run, "_evaluate", cancelled_midway)
    done = train(c_workspace, MODEL, replace(TRAIN, epochs=3), tmp_path / "m.cllm", cancel=cancel)
    assert done.stop_reason == "cancelled" and done.epochs == 1 and done.val_bits_per_byte is None
    assert load_checkpoint(tmp_path / "m.cllm").metadata["steps"] == done.steps


def test_validation_scores_an_even_sample_of_a_long_held_out_stream(c_workspace, tmp_path, monkeypatch):
    scored = []
    evaluate = train_module._Run._evaluate

    def recording(run, params):
        result = evaluate(run, params)
        scored.append((result[1], run.data.val_stream.size))
        return result

    monkeypatch.setattr(train_module._Run, "_evaluate", recording)
    monkeypatch.setattr(train_module, "VALIDATION_WINDOWS", 2)
    done = train(c_workspace, MODEL, replace(TRAIN, epochs=2), tmp_path / "m.cllm")
    tokens, stream = scored[0]
    assert len(scored) == 2 and scored[0] == scored[1], "the same windows at every validation"
    assert 0 < tokens <= 2 * TRAIN.seq_len < stream - 1
    assert done.val_bits_per_byte is not None and math.isfinite(done.val_bits_per_byte)


def test_no_c_files_names_the_ignore_rule_and_no_gitignore_overrides(tmp_path):
    root = tmp_path / "ws"
    (root / "kernel").mkdir(parents=True)
    (root / ".gitignore").write_text("# Debian packaging\n/*\n!/debian/\n")
    for name in ("a.c", "b.c", "c.h"):
        (root / "kernel" / name).write_text(f"int {name[0]}(int x) {{ return x + 1; }}\n" * 40)
    with pytest.raises(TrainError, match=re.escape(
            "ignore rules hide 3 C files (3 by '/*' (.gitignore line 2)); train with --no-gitignore")):
        train(root, MODEL, TRAIN, tmp_path / "m.cllm")
    done = train(root, MODEL, replace(TRAIN, max_steps=1), tmp_path / "m.cllm",
                 corpus_config=CorpusConfig(gitignore=False))
    assert done.steps == 1 and load_checkpoint(tmp_path / "m.cllm").metadata["files"] == 3


def test_a_time_budget_trains_on_a_sample_of_a_tree_too_big_for_it(c_workspace, tmp_path):
    limit = budget_sample_bytes(0.09)
    assert 4_000 < limit < 5_000, "about three of the eight 1.4 KB files"
    done, events = _run(c_workspace, tmp_path / "m.cllm", replace(TRAIN, time_budget=0.09))
    meta = load_checkpoint(tmp_path / "m.cllm").metadata
    assert 1 <= len(meta["train_files"]) < events[0].files - len(meta["val_files"])
    assert events[0].train_files == len(meta["train_files"])
    assert 0 < done.corpus_fraction < len(meta["train_files"]) / 6


def test_a_continued_budgeted_run_starts_from_the_model_and_trains_on_unseen_files_first(c_workspace, tmp_path):
    out, cfg = tmp_path / "m.cllm", replace(TRAIN, time_budget=0.09, max_steps=2)
    first, _ = _run(c_workspace, out, cfg)
    before = load_checkpoint(out, with_optimizer=True)
    second, events = _run(c_workspace, out, replace(cfg, max_steps=1, lr=1e-12), start=Continue(out))
    after = load_checkpoint(out, with_optimizer=True)
    assert events[0].step == 0 and second.steps == 1, "a new schedule"
    assert np.allclose(after.optimizer["params"], before.optimizer["params"], rtol=0, atol=1e-8)  # one step at lr 1e-12
    assert after.optimizer["step"] == before.optimizer["step"] + 1, "Adam's step count goes on"
    assert after.tokenizer_json == before.tokenizer_json and after.model_config == before.model_config
    old, new = before.metadata, after.metadata
    assert old["generation"] == 1 and old["trained_before"] == {}
    assert new["generation"] == 2 and new["trained_before"] == dict.fromkeys(old["train_files"], 1)
    unseen = [path for path in new["train_files"] if path not in old["train_files"]]
    assert unseen and new["train_files"][:len(unseen)] == unseen, "files the first run did not train on come first"
    assert new["val_files"] == old["val_files"], "validation stays comparable"
    assert 0 < first.corpus_seen < second.corpus_seen <= 1
    third, _ = _run(c_workspace, out, replace(cfg, max_steps=1), start=Continue(out))
    latest = load_checkpoint(out).metadata
    assert latest["generation"] == 3 and second.corpus_seen <= third.corpus_seen
    last_trained = [latest["trained_before"].get(path, 0) for path in latest["train_files"]]
    assert 1 in last_trained and last_trained == sorted(last_trained), "unseen first, then the least recently trained"


def test_without_continue_from_a_run_starts_over(c_workspace, tmp_path):
    out, cfg = tmp_path / "m.cllm", replace(TRAIN, time_budget=0.09, max_steps=1)
    first, _ = _run(c_workspace, out, cfg)
    trained = load_checkpoint(out, with_optimizer=True)
    again, _ = _run(c_workspace, out, cfg)
    restarted = load_checkpoint(out, with_optimizer=True)
    assert restarted.metadata["generation"] == 1 and restarted.metadata["trained_before"] == {}
    assert restarted.optimizer["step"] == 1 and again.corpus_seen == first.corpus_seen
    assert restarted.metadata["train_files"] == trained.metadata["train_files"]


def test_continuable_names_what_stops_a_model_from_being_continued(c_workspace, tmp_path):
    from cllm.engine.train.loop import continuable

    out = tmp_path / "m.cllm"
    _run(c_workspace, out, replace(TRAIN, max_steps=1))
    assert continuable(out, c_workspace, {"d_model": MODEL.d_model}) is None
    assert "another d_model" in continuable(out, c_workspace, {"d_model": 64})
    assert "was trained on" in continuable(out, tmp_path, {})
    assert "does not exist" in continuable(tmp_path / "none.cllm", c_workspace, {})


def _finetune_config(**changes) -> TrainConfig:
    """TRAIN shaped for the tiny base (conftest TINY_BASE_MODEL: seq_len up to 64)."""
    return replace(TRAIN, **changes)


def test_fine_tuning_starts_from_the_base_weights_and_reuses_its_tokenizer(c_workspace, tmp_path, tiny_base_path):
    base = load_checkpoint(tiny_base_path)
    done, events = _run(c_workspace, tmp_path / "ft.cllm", _finetune_config(max_steps=1, lr=1e-12),
                        start=FromBase(tiny_base_path))
    tuned = load_checkpoint(done.checkpoint, with_optimizer=True)
    assert tuned.tokenizer_json == base.tokenizer_json
    assert tuned.model_config == replace(base.model_config, dropout=MODEL.dropout)  # the base's shape, not MODEL's
    assert events[0].vocab_size == base.model_config.vocab_size
    assert np.allclose(tuned.optimizer["params"], base.params, rtol=0, atol=1e-8)  # one step at lr 1e-12
    scratch, _ = _run(c_workspace, tmp_path / "scratch.cllm", _finetune_config(max_steps=1, lr=1e-12))
    assert not np.allclose(load_checkpoint(scratch.checkpoint).params[:100], base.params[:100], atol=1e-3)


def test_fine_tuning_records_its_base_and_replays_the_base_corpus(c_workspace, tmp_path, tiny_base_path):
    from cllm.engine.model.checkpoint import weights_sha256

    done, events = _run(c_workspace, tmp_path / "ft.cllm", _finetune_config(max_steps=2, replay_fraction=0.5),
                        start=FromBase(tiny_base_path))
    meta = load_checkpoint(done.checkpoint).metadata
    assert meta["base"] == {"path": str(tiny_base_path.resolve()),
                            "weights_sha256": weights_sha256(load_checkpoint(tiny_base_path))}
    include = (tiny_base_path.parent / "include").resolve().as_posix().lstrip("/")
    assert meta["replay_files"] and all(name.startswith(include + "/") for name in meta["replay_files"])
    assert meta["train_files"] and not set(meta["train_files"]) & set(meta["replay_files"])
    no_replay, _ = _run(c_workspace, tmp_path / "plain.cllm", _finetune_config(max_steps=2, replay_fraction=0.0),
                        start=FromBase(tiny_base_path))
    assert load_checkpoint(no_replay.checkpoint).metadata["replay_files"] == []
    assert events[0].tokens > _run(c_workspace, tmp_path / "p2.cllm", _finetune_config(max_steps=1,
                                   replay_fraction=0.0), start=FromBase(tiny_base_path))[1][0].tokens


def test_a_fine_tune_at_a_shorter_window_completes_with_its_bases_context(c_workspace, tmp_path, tiny_base_path):
    assert load_model(tiny_base_path).context == TINY_BASE_TRAINING["seq_len"] == 32
    done, events = _run(c_workspace, tmp_path / "ft.cllm", _finetune_config(max_steps=1, seq_len=16),
                        start=FromBase(tiny_base_path))
    tuned = load_model(done.checkpoint)
    assert (events[0].settings.seq_len, tuned.metadata.seq_len, tuned.context) == (16, 16, 32)
    continued, _ = _run(c_workspace, tmp_path / "ft.cllm", _finetune_config(max_steps=1, seq_len=8),
                        start=Continue(str(done.checkpoint)))
    assert load_model(continued.checkpoint).context == 32  # carried over by every run that goes on from it
    scratch, _ = _run(c_workspace, tmp_path / "scratch.cllm", replace(TRAIN, max_steps=1, seq_len=16))
    assert load_model(scratch.checkpoint).context == 16  # from random weights: only its own window was trained


def test_a_resumed_fine_tuning_equals_an_uninterrupted_one_bitwise(c_workspace, tmp_path, tiny_base_path):
    cfg = _finetune_config(max_steps=5)
    _run(c_workspace, tmp_path / "full.cllm", cfg, start=FromBase(tiny_base_path))
    _run(c_workspace, tmp_path / "part.cllm", replace(cfg, max_steps=2), start=FromBase(tiny_base_path))
    _run(c_workspace, tmp_path / "resumed.cllm", cfg, start=Resume(tmp_path / "part.cllm"))
    a = load_checkpoint(tmp_path / "full.cllm", with_optimizer=True)
    b = load_checkpoint(tmp_path / "resumed.cllm", with_optimizer=True)
    assert np.array_equal(a.optimizer["params"], b.optimizer["params"])
    assert a.metadata["base"] == b.metadata["base"] and a.metadata["replay_files"] == b.metadata["replay_files"]
    assert np.array_equal(a.params, b.params) and a.metadata["base_share"] == b.metadata["base_share"]  # same blend


def test_fine_tuning_blends_its_weights_back_towards_the_base_when_that_validates_better(c_workspace, tmp_path,
                                                                                          tiny_base_path, monkeypatch):
    """A rate of 1.0 wrecks the base in a few steps into confidently wrong predictions (validation loss 16-33 nats on
    every BLAS kernel tried), so weights moved back towards the base's validate better on any CPU: the stored weights
    are such a blend, by the share the metadata records. A run from scratch has nothing to blend. (At 0.05 the wreck
    was mild and whether a blend won depended on the machine's floating-point rounding.)"""
    base = load_checkpoint(tiny_base_path)
    done, _ = _run(c_workspace, tmp_path / "ft.cllm", _finetune_config(max_steps=3, lr=1.0, warmup_steps=0),
                   start=FromBase(tiny_base_path))
    tuned = load_checkpoint(done.checkpoint, with_optimizer=True)
    share = tuned.metadata["base_share"]
    assert 0 < share < 1
    expected = ((1.0 - share) * tuned.optimizer["params"] + share * base.params).astype(np.float32)
    np.testing.assert_allclose(tuned.params, expected, rtol=0, atol=1e-6)  # the best weights are the last step's
    monkeypatch.setattr(finish_module, "TUNED_SHARES", ())  # the same run, never blended
    plain, _ = _run(c_workspace, tmp_path / "plain.cllm", _finetune_config(max_steps=3, lr=1.0, warmup_steps=0),
                    start=FromBase(tiny_base_path))
    unblended = load_checkpoint(plain.checkpoint)
    assert unblended.metadata["base_share"] == 0 and np.array_equal(unblended.params, tuned.optimizer["params"])
    assert tuned.metadata["val_loss"] < unblended.metadata["val_loss"]
    scratch, _ = _run(c_workspace, tmp_path / "scratch.cllm", _finetune_config(max_steps=3))
    assert load_checkpoint(scratch.checkpoint).metadata["base_share"] is None
    again, _ = _run(c_workspace, tmp_path / "ft.cllm", _finetune_config(max_steps=3, lr=1.0, warmup_steps=0),
                    start=Continue(tmp_path / "ft.cllm"))  # a continued run blends with the base its model came from
    continued = load_checkpoint(again.checkpoint).metadata
    assert continued["generation"] == 2 and continued["base"] == tuned.metadata["base"]
    assert continued["base_share"] is not None  # tried: the base was found (the best weights carried over stay)


def test_a_budgeted_fine_tuning_takes_the_fine_tuning_policy(c_workspace, tmp_path, tiny_base_path):
    from cllm.engine.config import FinetunePolicy

    _, events = _run(c_workspace, tmp_path / "ft.cllm", _finetune_config(time_budget=30.0, max_steps=1),
                     start=FromBase(tiny_base_path), explicit={"max_steps", "time_budget"})
    start = events[0]
    assert start.settings.lr == FinetunePolicy.lr and start.settings.warmup_steps == FinetunePolicy.warmup_steps
    assert "vocab_size" not in start.auto and {"lr", "warmup_steps", "epochs", "replay_fraction"} <= set(start.auto)
    assert start.settings.replay_fraction == FinetunePolicy.max_replay  # eight small files: the most replay
    little = _finetune_config(max_steps=1, replay_fraction=0.0)
    _run(c_workspace, tmp_path / "little.cllm", little, start=FromBase(tiny_base_path))
    _run(c_workspace, tmp_path / "budgeted.cllm", replace(little, time_budget=30.0), start=FromBase(tiny_base_path),
         explicit={"max_steps", "time_budget"})
    replayed = [len(load_checkpoint(tmp_path / name).metadata["replay_files"]) for name in ("budgeted.cllm", "little.cllm")]
    assert replayed[0] > replayed[1] == 0  # 30 s would pass over eight small files hundreds of times: more base text


def test_only_better_keeps_the_weights_it_went_on_from_unless_training_validates_better(c_workspace, tmp_path):
    out, wrecked = tmp_path / "m.cllm", tmp_path / "candidate.cllm"
    first, _ = _run(c_workspace, out, replace(TRAIN, epochs=1))
    served = load_checkpoint(out)
    # a learning rate that wrecks the weights: nothing validates better than the model continued
    _run(c_workspace, wrecked, replace(TRAIN, epochs=1, lr=50.0, only_better=True), start=Continue(out))
    kept = load_checkpoint(wrecked)
    meta = kept.metadata
    assert math.isclose(meta["start_val_loss"], served.metadata["val_loss"], rel_tol=1e-5)  # same windows, same weights
    assert meta["val_loss"] == meta["start_val_loss"]
    assert np.array_equal(kept.params, served.params)
    assert "start_val_loss" not in served.metadata or served.metadata["start_val_loss"] is None
