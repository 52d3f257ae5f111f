"""How an engine start fails: the errors, and the root cause read from the engine's log."""
from __future__ import annotations

import re

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXCEPTION_LINE = re.compile(r"\b([A-Za-z_.]*(?:Error|Exception)): (.+)$")
GENERIC_ERRORS = ("Engine core initialization failed", "See root cause above")


class EngineStartError(RuntimeError):
    """The engine did not become healthy; the message ends with the tail of its log.

    ``reason`` is the first line of the message (with the engine's own root-cause error when its
    log names one) and ``log_tail`` the last lines of the log.
    """

    def __init__(self, reason: str, log_tail: str = ""):
        super().__init__(f"{reason}\nLast lines of the engine log:\n{log_tail}" if log_tail else reason)
        self.reason, self.log_tail = reason, log_tail


class PortInUseError(EngineStartError):
    """The port asked for is already taken on 127.0.0.1."""


def root_cause(log_text: str) -> str | None:
    """The engine's own error in a log: the last 'SomethingError: message' line that is not a
    generic wrapper such as 'Engine core initialization failed'."""
    found = None
    for line in log_text.splitlines():
        match = EXCEPTION_LINE.search(line)
        if match and not any(g in line for g in GENERIC_ERRORS):
            found = f"{match[1].rsplit('.', 1)[-1]}: {match[2].strip()}"
    return found
