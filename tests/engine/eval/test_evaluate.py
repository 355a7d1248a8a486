"""`cllm eval`: cursor sampling, edit similarity, and the whole command on a tiny model."""

import importlib
import json
import shutil

import numpy as np
import pytest

from cllm.engine.model.checkpoint import load_checkpoint, save_checkpoint
from cllm.engine.data.corpus import Document
from cllm.engine.eval.evaluate import _fold_mixtures, _line_completions, edit_similarity, levenshtein, sample_positions
from cllm.engine.eval.heldout import document_scores, heldout_mixture
from cllm.engine.complete.mixture import workspace_models
from cllm.engine.complete.serving import load_model
from cllm.server.cli import main
from conftest import TINY_C_SOURCES, write_tiny_sources

C_FILE = """#include <stdio.h>

static int add(int a, int b)
{
    int sum = a + b;
    return sum;
}

int main(void)
{
    int total = 0;
    for (int i = 0; i < 10; i++) {
        total = add(total, i);
    }
    printf("%d\\n", total);
    return 0;
}
"""


def _docs() -> list[Document]:
    other = C_FILE.replace("add", "plus").replace("total", "acc")
    return [Document("a.c", C_FILE, len(C_FILE)), Document("b/c.c", other, len(other))]


@pytest.mark.parametrize("a, b, distance", [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3),
                                            ("flaw", "lawn", 2), ("return 0;", "return 0;", 0), ("ab", "ba", 2)])
def test_levenshtein_known_cases(a, b, distance):
    assert levenshtein(a, b) == distance == levenshtein(b, a)


def test_edit_similarity_range():
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abc", "xyz") == 0.0
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def test_positions_are_deterministic_and_of_both_kinds():
    docs = _docs()
    first, again, other = sample_positions(docs, 12, seed=3), sample_positions(docs, 12, seed=3), sample_positions(docs, 12, seed=4)
    assert first == again != other
    assert [p.kind for p in first].count("mid") == 6 == [p.kind for p in first].count("start")
    for p in first:
        text = docs[p.doc].text
        line_start = text.rfind("\n", 0, p.offset) + 1
        before, rest = text[line_start:p.offset], text[p.offset:p.line_end]
        assert text[p.line_end:p.line_end + 1] in ("\n", "") and "\n" not in rest and rest.strip()
        if p.kind == "mid":
            assert before.strip()
        else:
            assert not before.strip() and text[:line_start].rstrip(" \t").endswith("\n")
            previous_line = text[:line_start - 1].rsplit("\n", 1)[-1]
            assert previous_line.strip()


def test_positions_when_asking_for_more_than_exist():
    docs = [Document("x.c", "int a;\nint b;\n", 14)]
    positions = sample_positions(docs, 50, seed=0)
    assert 0 < len(positions) < 50
    assert len(set(positions)) == len(positions)


def test_eval_command_on_a_folder(tiny_model_path, tmp_path, capsys):
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "main.c").write_text(C_FILE)
    header = "#ifndef UTIL_H\n#define UTIL_H\nint add(int a, int b);\n#endif\n"
    (folder / "util.h").write_text(header)
    assert main(["eval", str(tiny_model_path), "--on", str(folder), "--json", "--positions", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 2 and report["bytes"] == len(C_FILE) + len(header) and report["positions"] == 6
    assert 0.0 < report["bits_per_byte"] < 40.0
    for key in ("exact_match", "edit_similarity"):
        assert 0.0 <= report[key] <= 1.0
    assert report["syntax_ok"] is None or 0.0 <= report["syntax_ok"] <= 1.0
    assert set(report["baselines"]) == {"xz", "zpaq", "ppmd", "kn5"}
    assert report["baselines"]["xz"]["bits_per_byte"] is None and report["mixture"] is None  # no training files recorded


def test_eval_command_errors_are_clear(tiny_model_path, tmp_path, capsys):
    assert main(["eval", str(tiny_model_path), "--on", str(tmp_path)]) == 1
    assert "no C files" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.cllm")]) == 1
    assert capsys.readouterr().err.startswith("cllm eval: ")


@pytest.fixture
def recorded_model(tiny_model_path, tmp_path):
    """The tiny model with a training record: a workspace holding its sources, one of them held out."""
    workspace = tmp_path / "ws"
    write_tiny_sources(workspace)
    ckpt = load_checkpoint(tiny_model_path)
    paths = sorted(TINY_C_SOURCES)
    ckpt.metadata.update(workspace=str(workspace), train_files=paths[1:], val_files=paths[:1])
    save_checkpoint(tmp_path / "recorded.cllm", ckpt)
    return tmp_path / "recorded.cllm", workspace, paths[0]


@pytest.mark.parametrize("prefix_only", [False, True])
def test_line_completions_see_the_suffix_unless_prefix_only(prefix_only):
    docs, seen = _docs(), []

    def predict(d: int, prefix: str, suffix: str) -> str:
        seen.append((d, prefix, suffix))
        return ""

    positions = sample_positions(docs, 8, seed=1)
    _line_completions({"recorder": predict}, docs, positions, None, prefix_only=prefix_only)
    assert [(d, prefix) for d, prefix, _ in seen] == [(p.doc, docs[p.doc].text[:p.offset]) for p in positions]
    suffixes = [suffix for _, _, suffix in seen]
    expected = ["" if prefix_only else docs[p.doc].text[p.line_end:] for p in positions]
    assert suffixes == expected and (prefix_only or any(suffixes))


def test_cross_fitted_mixtures_never_score_a_file_with_weights_fitted_on_it(tiny_model_path, monkeypatch):
    model = load_model(tiny_model_path)
    tok = model.tokenizer
    sources = [Document(rel, text, len(text)) for rel, text in sorted(TINY_C_SOURCES.items())]
    documents = [*_docs(), Document("d.c", C_FILE[:200], 200), sources[0]]  # four files of different lengths
    kn, index = workspace_models(tok, sources[1:])
    scored = document_scores(model.params, model.config, tok, documents, model.context, kn)
    nats = scored[0]
    fitted_on = []
    evaluate_module = importlib.import_module("cllm.engine.eval.evaluate")  # the package exports a function of that name
    real_fit = evaluate_module.fit_mixture

    def recording_fit(probs, buckets):
        mixture = real_fit(probs, buckets)
        fitted_on.append((mixture, len(probs)))
        return mixture

    monkeypatch.setattr(evaluate_module, "fit_mixture", recording_fit)
    fitted, bits, _ = _fold_mixtures(scored, kn, index, tok, documents)
    tokens = [len(n) for n in nats]
    assert len(set(tokens)) == len(tokens)
    for d in range(len(documents)):
        scored_with = next(n for mixture, n in fitted_on if mixture is fitted[d % 2])
        assert scored_with == sum(t for e, t in enumerate(tokens) if e % 2 != d % 2)  # only the other fold's files
    assert 0 < bits < float(sum(n.sum() for n in nats)) / np.log(2) * 1.5


def test_eval_command_on_held_out_files_with_baselines(recorded_model, capsys):
    model, _, held_out = recorded_model
    assert main(["eval", str(model), "--json", "--positions", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 1 and report["bytes"] == len(TINY_C_SOURCES[held_out].encode())
    xz, kn = report["baselines"]["xz"], report["baselines"]["kn5"]
    assert 0.0 < xz["bits_per_byte"] < 8.0 and 0.0 < kn["bits_per_byte"] < 20.0
    for name, program in (("zpaq", "zpaq"), ("ppmd", "7z")):  # measured where installed, else said absent
        entry = report["baselines"][name]
        if shutil.which(program):
            assert 0.0 < entry["bits_per_byte"] < 8.0
        else:
            assert entry == {"bits_per_byte": None, "note": f"{program} not installed"}
    assert 0.0 <= kn["exact_match"] <= 1.0 and 0.0 <= kn["edit_similarity"] <= 1.0
    mixture = report["mixture"]
    assert 0.0 < mixture["bits_per_byte"] < 20.0 and 0.0 <= mixture["exact_match"] <= 1.0
    assert sum(mixture["mean_weights"].values()) == pytest.approx(1.0, abs=0.01)
    assert main(["eval", str(model), "--json", "--positions", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["positions"] == 0 and report["exact_match"] is None and report["baselines"]["kn5"]["exact_match"] is None
    assert main(["eval", str(model), "--positions", "4"]) == 0
    table = capsys.readouterr().out
    assert "bits per byte" in table and "5-gram" in table and "zpaq" in table and "ppmd" in table
    assert main(["eval", str(model), "--json", "--positions", "4", "--prefix-only"]) == 0
    assert json.loads(capsys.readouterr().out)["prefix_only"] is True


def test_eval_command_when_held_out_files_are_gone(recorded_model, capsys):
    model, workspace, held_out = recorded_model
    (workspace / held_out).unlink()
    assert main(["eval", str(model)]) == 1
    assert "--on PATH" in capsys.readouterr().err


def test_headline_is_the_completer_the_model_ships(recorded_model, capsys):
    """Without mixture weights the headline is the transformer's; with them (as training stores), the mixture's."""
    path, workspace, _ = recorded_model
    assert main(["eval", str(path), "--json", "--positions", "4"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["completer"] == "transformer"
    for key in ("bits_per_byte", "exact_match", "edit_similarity"):
        assert plain[key] == plain["transformer"][key]
    ckpt = load_checkpoint(path)
    model = load_model(path)
    docs = [Document(rel, (workspace / rel).read_text(), len((workspace / rel).read_bytes()))
            for rel in sorted(TINY_C_SOURCES)]
    ckpt.metadata["mixture"] = heldout_mixture(model.params, model.config, model.tokenizer, docs[:1], docs[1:],
                                               model.context)
    save_checkpoint(path, ckpt)
    assert main(["eval", str(path), "--json", "--positions", "4"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert shipped["completer"] == "transformer+cache"
    for key in ("bits_per_byte", "exact_match", "edit_similarity"):
        assert shipped[key] == shipped["mixture"][key]
    assert shipped["transformer"] == plain["transformer"]


@pytest.fixture
def fine_tuned(c_workspace, tmp_path, tiny_base_path):
    """A model fine-tuned from the tiny base for one step on a 3-second budget."""
    from cllm.engine.config import ModelConfig, TrainConfig
    from cllm.engine.train.loop import train
    from cllm.engine.train.start import FromBase

    out = tmp_path / "ft.cllm"
    train(c_workspace, ModelConfig(), TrainConfig(max_steps=1, time_budget=3.0, seq_len=32, batch_size=4, threads=1),
          out, start=FromBase(tiny_base_path), explicit={"max_steps", "time_budget", "seq_len", "batch_size", "threads"})
    return out


def test_eval_compares_with_the_base_and_leaves_out_files_the_base_learned(fine_tuned, tmp_path, capsys):
    from conftest import TINY_INCLUDE_SOURCES

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "main.c").write_text(C_FILE)
    (folder / "util.h").write_text(TINY_INCLUDE_SOURCES["util.h"])  # the same bytes as a file of the base corpus
    assert main(["eval", str(fine_tuned), "--on", str(folder), "--json", "--positions", "2"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "1 of the files are in the base model's corpus" in captured.err
    assert report["left_out"] == ["util.h"] and report["files"] == 1 and report["bytes"] == len(C_FILE)
    assert report["base"]["files"] == 1 and report["base"]["bits_per_byte"] != report["transformer"]["bits_per_byte"]
    assert main(["eval", str(fine_tuned), "--on", str(folder), "--positions", "2"]) == 0
    table = capsys.readouterr().out
    assert "this model" in table and "\nbase " in table
    (folder / "main.c").unlink()
    assert main(["eval", str(fine_tuned), "--on", str(folder)]) == 1
    assert "all 1 files are in the base model's corpus" in capsys.readouterr().err


def test_eval_compare_scratch_trains_a_scratch_model_of_the_same_budget(fine_tuned, tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "main.c").write_text(C_FILE)
    assert main(["eval", str(fine_tuned), "--on", str(folder), "--json", "--positions", "2", "--compare-scratch"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"base", "scratch"} <= set(report) and report["scratch"]["files"] == 1
    assert report["scratch"]["transformer"]["bits_per_byte"] != report["transformer"]["bits_per_byte"]


def test_compare_scratch_needs_a_budgeted_workspace_model(recorded_model, capsys):
    model, _, _ = recorded_model
    assert main(["eval", str(model), "--positions", "2", "--compare-scratch"]) == 1
    assert "--compare-scratch needs" in capsys.readouterr().err


def test_empty_files_to_evaluate_are_refused_before_any_model_is_built(tiny_model_path, monkeypatch):
    evaluate_module = importlib.import_module("cllm.engine.eval.evaluate")

    def built(*args):
        raise AssertionError("workspace models built for empty files")

    monkeypatch.setattr(evaluate_module, "workspace_models", built)
    train = [Document(rel, text, len(text)) for rel, text in TINY_C_SOURCES.items()]
    with pytest.raises(evaluate_module.EvalError, match="all empty"):
        evaluate_module.evaluate(load_model(tiny_model_path), [Document("a.c", "", 0)], train)


def test_eval_reports_the_shown_rate_and_the_exact_match_of_shown_suggestions(recorded_model, capsys):
    path, _, _ = recorded_model
    assert main(["eval", str(path), "--json", "--positions", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    per = report["eagerness"]
    assert set(per) == {"low", "normal", "high"}
    assert report["shown_rate"] == per["normal"]["shown_rate"] == report["transformer"]["shown_rate"]
    assert 0.0 <= per["low"]["shown_rate"] <= per["normal"]["shown_rate"] <= per["high"]["shown_rate"] <= 1.0
    shown = report["shown_exact_match"]
    assert shown is None or 0.0 <= shown <= 1.0
    ckpt = load_checkpoint(path)
    ckpt.metadata["thresholds"] = {"low": 2.0, "normal": 2.0, "high": 0.0}  # low/normal show nothing, high all
    save_checkpoint(path, ckpt)
    assert main(["eval", str(path), "--json", "--positions", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shown_rate"] == 0.0 and report["shown_exact_match"] is None
    assert report["eagerness"]["high"]["shown_rate"] == 1.0
    assert report["eagerness"]["high"]["shown_exact_match"] == report["exact_match"]
    assert main(["eval", str(path), "--positions", "6"]) == 0
    assert "shown at normal eagerness" in capsys.readouterr().out
