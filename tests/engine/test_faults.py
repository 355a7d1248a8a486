"""Fail points: inert without CLLM_FAULT; with it, the chosen arrival kills or stops the process."""

import os
import signal
import subprocess
import sys

import pytest

from cllm.engine.faults import FAULT_ENV, FaultSpecError, fault_point, parse_fault

# Prints each arrival's number before reaching the fail point "step" five times.
_FIVE_STEPS = ("from cllm.engine.faults import fault_point\n"
               "for i in range(1, 6):\n    print(i, flush=True)\n    fault_point('step')")


def run_five_steps(spec: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _FIVE_STEPS], env={**os.environ, FAULT_ENV: spec},
                            stdout=subprocess.PIPE, text=True, **kwargs)


def test_fail_points_are_inert_without_the_variable_or_for_other_points(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    fault_point("step")
    monkeypatch.setenv(FAULT_ENV, "scanned:1")
    for _ in range(3):
        fault_point("step")


def test_the_chosen_arrival_kills_the_process():
    proc = run_five_steps("step:3")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and out.split() == ["1", "2", "3"]


def test_stop_freezes_the_process_until_it_is_continued():
    proc = run_five_steps("step:2:stop")
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.split() == ["1", "2", "3", "4", "5"]


def test_specs_are_parsed_and_bad_ones_named():
    assert parse_fault("checkpoint-write:2") == ("checkpoint-write", 2, "kill")
    assert parse_fault("scan-listed:1:stop") == ("scan-listed", 1, "stop")
    for bad in ("nowhere:1", "step", "step:0", "step:x", "step:1:explode", "step:1:stop:again"):
        with pytest.raises(FaultSpecError, match=f"CLLM_FAULT='{bad}' is not NAME:N"):
            parse_fault(bad)
