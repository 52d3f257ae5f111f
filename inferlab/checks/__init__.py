"""Graded checks: the lab cells call these on the learner's work.

A check runs the learner's function (or inspects their value) against a reference on
inputs the learner has not seen, prints one line -- a pass, or a fail with a hint --
and records the verdict. It never raises, so one unfinished exercise does not hide the
grades of the others. When ``INFERLAB_VERDICTS`` names a file (``inferlab grade`` sets
it) every verdict is also appended there as one JSON line.

A check is written as a function that raises ``CheckFailed`` (or returns a short,
deterministic success detail) and is wrapped with ``@graded(hint=...)``. Its name is
the function's name, which always starts with ``check_``.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass

VERDICTS_ENV = "INFERLAB_VERDICTS"
_results: list["Verdict"] = []


class CheckFailed(AssertionError):
    """Raised inside a check body: the learner's answer is wrong; the message says how."""


@dataclass
class Verdict:
    name: str
    passed: bool
    detail: str
    hint: str = ""

    def _ipython_display_(self) -> None:
        """The verdict line is already printed; as a cell's last value it shows nothing more."""

    def line(self) -> str:
        if self.passed:
            return f"PASS {self.name}" + (f": {self.detail}" if self.detail else "")
        hint = f" | hint: {self.hint}" if self.hint else ""
        return f"FAIL {self.name}: {self.detail}{hint}"


def graded(hint: str):
    """Turn a check body into a graded check that prints and records one verdict."""
    def wrap(body):
        name = body.__name__
        if not name.startswith("check_"):
            raise ValueError(f"graded check names start with 'check_': {name}")

        @functools.wraps(body)
        def run(*args, **kwargs) -> Verdict:
            try:
                detail = body(*args, **kwargs)
                verdict = Verdict(name, True, detail or "")
            except CheckFailed as exc:
                verdict = Verdict(name, False, str(exc), hint)
            except NotImplementedError:
                verdict = Verdict(name, False, "not implemented yet (the exercise still raises NotImplementedError)", hint)
            except Exception as exc:  # the learner's code crashed: that is a fail, not a crash of the check
                verdict = Verdict(name, False, f"your code raised {type(exc).__name__}: {exc}", hint)
            _record(verdict)
            print(verdict.line())
            return verdict

        run.is_graded_check = True
        return run
    return wrap


def _record(verdict: Verdict) -> None:
    _results.append(verdict)
    path = os.environ.get(VERDICTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(verdict)) + "\n")


def results() -> list[Verdict]:
    """Verdicts recorded in this process so far (latest run of each check last)."""
    return list(_results)


def reset() -> None:
    _results.clear()


def summary() -> str:
    """A short table of the latest verdict of each check run in this kernel."""
    latest = {v.name: v for v in _results}
    passed = sum(v.passed for v in latest.values())
    rows = [f"{'PASS' if v.passed else 'FAIL'}  {name}" for name, v in latest.items()]
    return "\n".join(rows + [f"{passed}/{len(latest)} checks passed"])


# Helpers shared by the per-lab check modules.
def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_close(actual, expected, what: str, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Compare numbers or tensors/arrays; the message shows where they differ."""
    import numpy as np
    a = np.asarray(_to_numpy(actual), dtype=float)
    e = np.asarray(_to_numpy(expected), dtype=float)
    if a.shape != e.shape:
        raise CheckFailed(f"{what}: shape {tuple(a.shape)}, expected {tuple(e.shape)}")
    if not np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
        worst = float(np.max(np.abs(a - e))) if a.size else 0.0
        raise CheckFailed(f"{what}: differs from the reference (max abs difference {worst:.3g})")


def as_tensor(x, what: str):
    """The learner's return value as a torch tensor, or CheckFailed saying what came back instead."""
    import torch
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except Exception:
        raise CheckFailed(f"{what}: expected a tensor, got {type(x).__name__}") from None


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().float().numpy()
    return x
