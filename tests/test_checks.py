"""Every lab's graded checks, through one harness and each lab's catalogue.

For each package ``inferlab/checks/<topic>/`` (its ``LAB``, ``EXERCISES`` and
``mistakes.CATALOGUE``): the solution passes every check, the generated stub fails with
"not implemented", every catalogued mistake fails with its diagnosis and every catalogued
right answer passes, the notebook calls every check with the names declared, and a check's
PASS line is the same on every run and equal to the one the committed notebook shows.
The learner's functions come from the notebooks themselves (cells tagged ``exercise``).
"""
from __future__ import annotations

import ast
import importlib
import pkgutil

import nbformat
import pytest

import inferlab.checks
import nbcode

TOPICS = sorted(m.name for m in pkgutil.iter_modules(inferlab.checks.__path__) if m.ispkg)
PACKAGES = {topic: importlib.import_module(f"inferlab.checks.{topic}") for topic in TOPICS}
CATALOGUES = {topic: importlib.import_module(f"inferlab.checks.{topic}.mistakes") for topic in TOPICS}
FIXTURES = ("model", "tokenizer")        # given arguments that come from conftest, not from a catalogue

EXERCISE_CASES = [pytest.param(topic, ex, id=f"{PACKAGES[topic].LAB}-{ex.name}")
                  for topic in TOPICS for ex in PACKAGES[topic].EXERCISES]
ATTEMPT_CASES = [pytest.param(topic, a, id=f"{PACKAGES[topic].LAB}-{a.check.__name__}-{a.label}")
                 for topic in TOPICS for a in CATALOGUES[topic].CATALOGUE]

_namespaces: dict = {}


def namespace(kind: str, lab: str) -> dict:
    """Exercise functions of solutions/<lab> ("solution") or labs/<lab> ("stub"), loaded once."""
    if (kind, lab) not in _namespaces:
        _namespaces[kind, lab] = getattr(nbcode, kind)(lab)
    return _namespaces[kind, lab]


def exercise_of(topic: str, check) -> inferlab.checks.Exercise:
    (found,) = [ex for ex in PACKAGES[topic].EXERCISES if ex.check is check]
    return found


def given_values(topic: str, exercise, request, overrides=None) -> dict:
    recorded = getattr(CATALOGUES[topic], "GIVEN", {})
    values = {}
    for name in exercise.given:
        if overrides and name in overrides:
            values[name] = overrides[name]
        elif name in recorded:
            values[name] = recorded[name]
        elif name in FIXTURES:
            values[name] = request.getfixturevalue(name)
        else:
            raise KeyError(f"{topic}: nothing gives {name!r}; add it to mistakes.GIVEN")
    return values


def run(topic, exercise, answers, request, given=None):
    return exercise.run(answers, given_values(topic, exercise, request, given))


@pytest.mark.parametrize("topic, exercise", EXERCISE_CASES)
def test_the_solution_passes_the_same_line_every_time(topic, exercise, request, capsys):
    solution = namespace("solution", PACKAGES[topic].LAB)
    first = run(topic, exercise, solution, request)
    second = run(topic, exercise, solution, request)
    assert first.passed, first.line()
    assert first.line() == second.line(), "nbval compares check cells: a PASS line must not change between runs"
    committed = committed_lines(PACKAGES[topic].LAB)
    assert first.line() in committed, f"the committed notebook shows another line for {exercise.name}"


@pytest.mark.parametrize("topic, exercise", EXERCISE_CASES)
def test_the_stub_is_not_implemented(topic, exercise, request, capsys):
    verdict = run(topic, exercise, namespace("stub", PACKAGES[topic].LAB), request)
    assert not verdict.passed and "not implemented" in verdict.detail
    assert verdict.hint and "hint:" in capsys.readouterr().out


@pytest.mark.parametrize("topic, attempt", ATTEMPT_CASES)
def test_each_catalogued_answer_gets_its_verdict(topic, attempt, request, capsys):
    exercise = exercise_of(topic, attempt.check)
    answers = attempt.answers(exercise, namespace("solution", PACKAGES[topic].LAB))
    verdict = run(topic, exercise, answers, request, attempt.given)
    if attempt.diagnosis is None:
        assert verdict.passed, verdict.line()
    else:
        assert not verdict.passed, f"the mistake {attempt.label} passes"
        assert attempt.diagnosis in verdict.detail, verdict.detail


@pytest.mark.parametrize("topic", TOPICS)
def test_the_notebook_calls_every_check_with_the_declared_names(topic):
    package = PACKAGES[topic]
    defined = {name for name in dir(package) if getattr(getattr(package, name), "is_graded_check", False)}
    declared = {ex.name: tuple(_spelled(arg) for arg in ex.answers + ex.given) for ex in package.EXERCISES}
    assert set(declared) == defined, "EXERCISES declares every check of the package, once"
    assert check_calls(package.LAB) == declared


@pytest.mark.parametrize("topic", TOPICS)
def test_every_check_has_catalogued_mistakes(topic):
    mistaken = {a.check.__name__ for a in CATALOGUES[topic].CATALOGUE if a.diagnosis is not None}
    assert mistaken == {ex.name for ex in PACKAGES[topic].EXERCISES}
    labels = [(a.check.__name__, a.label) for a in CATALOGUES[topic].CATALOGUE]
    assert len(labels) == len(set(labels)), "each answer of a check has its own label"


@pytest.mark.parametrize("topic", TOPICS)
def test_stub_and_solution_define_the_same_exercises(topic):
    lab = PACKAGES[topic].LAB
    names = {name for ex in PACKAGES[topic].EXERCISES for name in ex.answers}
    assert names <= set(namespace("solution", lab)) and names <= set(namespace("stub", lab))


def test_a_mistake_must_name_its_diagnosis():
    with pytest.raises(ValueError):
        inferlab.checks.wrong(print, "", print)


# ----------------------------------------------------------------------------- reading the notebook

def check_calls(lab: str) -> dict[str, tuple[str, ...]]:
    """check name -> the arguments the solution notebook passes to it, as written there."""
    calls = {}
    nb = nbformat.read(nbcode.SOLUTIONS / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr.startswith("check_"):
                calls[node.func.attr] = tuple(ast.unparse(arg) for arg in node.args)
    return calls


def _spelled(source: str) -> str:
    """An argument as ast.unparse writes it, so quotes and spaces do not matter."""
    return ast.unparse(ast.parse(source, mode="eval"))


def committed_lines(lab: str) -> set[str]:
    """Every line the committed solution notebook printed."""
    nb = nbformat.read(nbcode.SOLUTIONS / f"{lab}.ipynb", as_version=4)
    lines = set()
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines.update(output.get("text", "").splitlines())
    return lines
