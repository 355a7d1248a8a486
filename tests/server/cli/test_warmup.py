"""`cllm warmup`: every numba kernel of the engine compiled (or loaded from numba's cache), its JSON events, its
marker, and the background start of `cllm lsp` / `cllm serve`."""

import json
import subprocess

import pytest

from cllm.engine.warmup import kernels, stages
from cllm.server.cli import main, warmup


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> list[dict]:
    """The JSON Lines of one `cllm warmup --json` run in this process (its marker in a cache folder of its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("warmup-cache")))
        capture = tmp_path_factory.mktemp("warmup-out") / "stdout"
        with capture.open("w") as out:
            patch.setattr("sys.stdout", out)
            assert main(["warmup", "--json"]) == 0
        assert warmup.marker_path().is_file()
    return [json.loads(line) for line in capture.read_text().splitlines()]


def test_every_kernel_is_compiled_or_in_numbas_cache_afterwards(events):
    found = kernels()
    assert {"model.kernels.adamw_step", "model.kernels.decode_token", "complete.mixture._followers",
            "complete.ngram._hash_rows", "train.spheres._add_rows"} <= {k.name for k in found}
    own = [k for k in found if not k.inlined]
    assert [k.name for k in own if k.status() not in ("compiled", "cache")] == []
    # a kernel only other kernels call may load with its caller, without a signature of its own
    assert [k.name for k in own if not k.signatures() and k.status() == "compiled"] == []


def test_json_reports_each_kernel_compiled_or_cached(events):
    reported = {e["name"]: e for e in events if e["event"] == "kernel"}
    assert set(reported) == {k.name for k in kernels()}
    own = [e for e in reported.values() if e["source"] != "inlined"]
    assert own and all(e["source"] in ("compiled", "cache") for e in own)
    assert all(e["signatures"] >= 1 for e in own if e["source"] == "compiled")
    done = events[-1]
    assert done["event"] == "done" and done["missing"] == [] and done["kernels"] == len(own)
    assert done["compiled"] + done["cached"] == len(own)


def test_json_shows_the_stages_and_the_count_rising_to_every_kernel(events):
    assert [e["title"] for e in events if e["event"] == "stage"] == [s.title for s in stages()]
    counts = [e["ready"] for e in events if e["event"] == "progress"]
    assert counts == sorted(counts) and counts[-1] == events[-1]["kernels"]


def test_quiet_when_not_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["warmup"]) == 0
    assert capsys.readouterr() == ("", "")
    assert json.loads(warmup.marker_path().read_text())["missing"] == []


def test_the_servers_first_start_runs_it_once_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runs = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kwargs: runs.append(command) or command)
    monkeypatch.setenv("CLLM_BACKGROUND_WARMUP", "0")
    assert warmup.start_in_background() is None
    monkeypatch.setenv("CLLM_BACKGROUND_WARMUP", "1")
    assert warmup.start_in_background()[-3:] == ["cllm.server.cli", "warmup", "--background"]
    assert warmup.start_in_background() is None  # one is already under way
    marker = warmup.marker_path()
    marker.with_name(marker.name + ".started").unlink()
    marker.write_text("{}\n")
    assert warmup.start_in_background() is None  # this version is warmed up
    assert len(runs) == 1
