"""The time budget's clock: time the trainer is held stopped (SIGSTOP) does not count (engine/train/budget.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

WATCH = """
import sys, time
from cllm.engine.train.budget import HeldTime
with HeldTime() as held:
    print("ready", flush=True)
    sys.stdin.readline()
print(f"{held.seconds:.3f}", flush=True)
"""


def test_the_held_time_counts_a_stop_of_the_whole_process():
    child = subprocess.Popen([sys.executable, "-c", WATCH], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGSTOP)
        time.sleep(1.5)  # held stopped this long
        child.send_signal(signal.SIGCONT)
        time.sleep(0.3)  # the watch ticks again
        child.stdin.write("\n")
        child.stdin.flush()
        held = float(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    assert 1.0 <= held <= 60.0, held
