"""Graded checks: the lab cells call these on the learner's work.

A check runs the learner's function (or inspects their value) against a reference on
inputs the learner has not seen, prints one line -- a pass, or a fail with a hint --
and records the verdict. It never raises, so one unfinished exercise does not hide the
grades of the others. Under ``inferlab grade`` the grader's guard
(``inferlab.grading.kernel``) registers a sink that receives every verdict with the
arguments the check was called on.

A check is written as a function that raises ``CheckFailed`` (or returns a short,
deterministic success detail) and is wrapped with ``@graded(hint=...)``. Its name is
the function's name, which always starts with ``check_``.

Every lab's checks are a package ``inferlab/checks/<topic>/`` of one shape:
- ``__init__.py`` defines the checks (or imports them from a part of the package), names
  its ``LAB`` and declares its ``EXERCISES``: which names the notebook passes to each check.
- ``mistakes.py`` holds its ``CATALOGUE``: plausible wrong answers, each a small function
  with the words its verdict must contain, and different-but-right answers that must pass.
  ``tests/test_checks.py`` runs every lab's catalogue; a new lab adds a catalogue, not a test.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

_results: list["Verdict"] = []
_sinks: list[Callable] = []       # each called as sink(verdict, args, kwargs) after every check


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
            _record(verdict, args, kwargs)
            print(verdict.line())
            return verdict

        run.is_graded_check = True
        return run
    return wrap


def _record(verdict: Verdict, args: tuple = (), kwargs: dict | None = None) -> None:
    _results.append(verdict)
    for sink in _sinks:
        sink(verdict, args, kwargs or {})


def add_sink(sink: Callable) -> None:
    """Send every later verdict to ``sink(verdict, args, kwargs)`` too (the grader's guard uses it)."""
    _sinks.append(sink)


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
def call_case(fn: Callable, args: tuple, where: str):
    """The learner's answer for one case; a crash fails the check naming the case it crashed on."""
    try:
        return fn(*args)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as exc:
        raise CheckFailed(f"{where}: your code raised {type(exc).__name__}: {exc}") from None


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


def expect_dict(got, keys, what: str = "") -> dict:
    """The learner's return value as a dict holding ``keys``, or CheckFailed saying what is missing."""
    prefix = f"{what}: " if what else ""
    if not isinstance(got, dict):
        raise CheckFailed(f"{prefix}return a dict, got {type(got).__name__}")
    missing = [key for key in keys if key not in got]
    if missing:
        raise CheckFailed(f"{prefix}the dict lacks {missing}")
    return got


def is_close(value, expected, rel_tol: float = 1e-9, abs_tol: float = 0.0) -> bool:
    """Scalar closeness that is False, not an error, for None or a value that is not a number."""
    if value is None or expected is None:
        return value is None and expected is None
    try:
        return math.isclose(float(value), float(expected), rel_tol=rel_tol, abs_tol=abs_tol)
    except (TypeError, ValueError):
        return False


def seeded_randn(*shape, seed: int, scale: float = 1.0):
    """Normal values the notebook never shows, the same on every run and host."""
    import torch
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().float().numpy()
    return x


# The binding between a notebook and its checks, and the catalogue of answers a learner might write.
@dataclass(frozen=True)
class Exercise:
    """One graded check as its notebook calls it: ``check(*answers, *given)``.

    ``answers`` are the learner's names (defined in cells tagged ``exercise``); ``given`` is
    what the notebook passes besides, spelled as the notebook spells it (``tokenizer``,
    ``reports["baseline"]``).
    """
    check: Callable
    answers: tuple[str, ...]
    given: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.check.__name__

    def run(self, answers: Mapping, given: Mapping) -> Verdict:
        return self.check(*(answers[a] for a in self.answers), *(given[g] for g in self.given))


@dataclass(frozen=True)
class Attempt:
    """An answer a learner could write for one check: wrong, with the words its failing verdict
    must contain (``diagnosis``), or right (``diagnosis`` None) and then it must pass.

    ``functions`` stand for the exercise's answers in order, ``named`` for answers by name;
    answers not given are the solution's. ``given`` replaces what the notebook passes besides.
    """
    check: Callable
    functions: tuple = ()
    named: Mapping = field(default_factory=dict)
    given: Mapping = field(default_factory=dict)
    diagnosis: str | None = None
    label: str = ""

    def answers(self, exercise: Exercise, solution: Mapping) -> dict:
        chosen = {name: solution[name] for name in exercise.answers}
        chosen.update(zip(exercise.answers, self.functions))
        chosen.update(self.named)
        return chosen


def _label(functions, named, label: str) -> str:
    if label:
        return label
    first = (list(functions) + list(named.values()))[0]
    return getattr(first, "__name__", type(first).__name__)


def wrong(check: Callable, diagnosis: str, *functions, given: Mapping | None = None, label: str = "",
          **named) -> Attempt:
    """A plausible mistake and the words the check's verdict on it must contain."""
    if not diagnosis:
        raise ValueError("a catalogued mistake names the words of its diagnosis")
    return Attempt(check, functions, named, given or {}, diagnosis, _label(functions, named, label))


def right(check: Callable, *functions, given: Mapping | None = None, label: str = "", **named) -> Attempt:
    """A correct answer written differently from the solution: the check must accept it."""
    return Attempt(check, functions, named, given or {}, None, _label(functions, named, label))
