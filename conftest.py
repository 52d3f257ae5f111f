"""Session guard for every pytest run of the repository (tests/ and the nbval run over solutions/).

Inference engines run as separate processes; a test or a notebook that forgets to stop one
leaves it eating memory and CPU after the run. This guard counts engine processes (the vLLM
OpenAI server module, vLLM's renamed EngineCore/Worker processes, SGLang) when the session
starts and when it ends, prints both counts in the terminal summary, and fails the session
when more are running at the end than at the start. Orphans of a test that died are counted
too: they match by command line whoever their parent is now.
"""
from __future__ import annotations

import os
import time

import pytest

# Kernels that nbval starts inherit this: a notebook cell that would show interactive controls shows
# the static table instead, since no one can move them (inferlab.capacity.explore).
os.environ.setdefault("INFERLAB_HEADLESS", "1")

SETTLE_SECONDS = 15   # engines being stopped may need a moment to exit


def _engine_pids() -> set[int]:
    from inferlab.engines import engine_processes
    return {p.pid for p in engine_processes()}


def pytest_sessionstart(session):
    session.config._engines_before = _engine_pids()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_engines_before", set())
    after = _engine_pids()
    deadline = time.monotonic() + SETTLE_SECONDS
    while len(after) > len(before) and time.monotonic() < deadline:
        time.sleep(0.5)
        after = _engine_pids()
    session.config._engines_after = after
    if len(after) > len(before) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    before = getattr(config, "_engines_before", None)
    after = getattr(config, "_engines_after", None)
    if before is None or after is None:
        return
    line = f"engine processes: before {len(before)}, after {len(after)}"
    if len(after) > len(before):
        from inferlab.engines import engine_processes
        left = [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in engine_processes() if p.pid not in before]
        terminalreporter.write_sep("=", line + " -- engines left running, session failed", red=True)
        for entry in left:
            terminalreporter.write_line(f"  left running: {entry}")
    else:
        terminalreporter.write_sep("-", line)
