"""Training numbers in the words every progress surface uses (the LSP progress, the CLI bar); the VS Code
extension (vscode-extension/src/format.ts) and the dashboard (server/http/dashboard/app.js) say them the same way."""

from __future__ import annotations

import math


def time_left(seconds: float) -> str:
    """An estimate of the time left in words: "<1 min left", "~7 min left", "~2 h 5 min left"."""
    if seconds < 60:
        return "<1 min left"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"~{minutes} min left"
    return f"~{minutes // 60} h {minutes % 60} min left"


def exact_match(share: float) -> str:
    """The held-out line exact match as people read it: 0.38 -> "38 % lines exact"."""
    return f"{round(100 * share)} % lines exact"
