"""Where an engine's start-up time goes, from the engine's own log and the client's clock.

vLLM (0.32) reports three phases itself: ``Loading weights took X seconds``, ``torch.compile took X s
in total`` (only when it compiles) and ``init engine (profile, create kv cache, warmup model) took X
s``. The client knows when it started the process and when /health first answered; what the log does
not account for (interpreter, imports, configuration, the API server, the health poll) is the rest.
"""
from __future__ import annotations

import re

PHASE_PATTERNS = {
    "weights": r"Loading weights took ([\d.]+) seconds",
    "torch.compile": r"torch\.compile took ([\d.]+) s in total",
    "profile, KV cache, warm-up": r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s",
}
REST = "process, imports, config, API server"


def logged_phases(log_text: str) -> dict[str, float]:
    """The phases the engine's log reports, in seconds (a phase it did not run is absent)."""
    found = {}
    for phase, pattern in PHASE_PATTERNS.items():
        if (match := re.search(pattern, log_text)) is not None:
            found[phase] = float(match.group(1))
    return found


def startup_phases(log_text: str, healthy_seconds: float) -> dict[str, float]:
    """Every phase of one start, summing to ``healthy_seconds`` (process start to first healthy answer).

    torch.compile runs inside the engine's init, so it is taken out of that phase, not added to it.
    """
    phases = logged_phases(log_text)
    if "profile, KV cache, warm-up" not in phases:
        raise ValueError("the log has no 'init engine ... took' line: is it a vLLM log of a start that finished?")
    if "torch.compile" in phases:
        phases["profile, KV cache, warm-up"] -= phases["torch.compile"]
    return {REST: max(0.0, healthy_seconds - sum(phases.values())), **phases}
