"""Grading one submission: find its lab, assemble what runs, run it guarded, count guarded verdicts.

The submission itself is never run and never changed. What runs is the lab's source with the
learner's exercise cells (``assemble``), in a temporary directory, under a time limit, with every
process it starts stopped at the end (``inferlab.execution``). A verdict counts only when its
signature is valid, it came from one of the source's check cells, and the guard saw nothing
tampered with; anything else is flagged and earns nothing.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import importlib
import json
import pkgutil
import re
import secrets
import tempfile
from pathlib import Path

from inferlab import authoring
from inferlab.execution import execute
from inferlab.grading.assemble import assemble, matches
from inferlab.grading.kernel import AUDIT, KEY_FILE_ENV, VERDICTS_ENV, sign
from inferlab.grading.report import GradeReport

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "labs"


def _read(path: Path):
    import nbformat
    return nbformat.read(path, as_version=4)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def named_lab(path: Path, labs: list[Path]) -> Path | None:
    """The lab a file's name (or its folder's) says it is: its stem, or its two-digit number."""
    for text in (path.name, path.parent.name):
        for lab in labs:
            if lab.stem in text:
                return lab
        for number in re.findall(r"(?<!\d)(\d{2})(?!\d)", text):
            hits = [lab for lab in labs if lab.stem.startswith(number + "-")]
            if hits:
                return hits[0]
    return None


def identify(path: Path, nb, labs_dir: Path) -> tuple[Path | None, str]:
    """(the lab's source, "") or (None, why this submission is not a notebook of that lab)."""
    labs = authoring.lab_notebooks(labs_dir)
    answered = {lab: matches(_read(lab), nb) for lab in labs}
    named = named_lab(path, labs)
    best = max(answered, key=answered.get, default=None)
    if named is not None and answered.get(named):
        return named, ""
    if best is not None and answered[best]:
        if named is None:
            return best, ""
        return None, f"this is lab {best.stem}'s notebook, handed in as {named.stem}"
    if named is not None:
        return None, f"none of lab {named.stem}'s exercises are in it (renamed functions or another file?)"
    return None, "not a notebook of this course's labs (none of their exercises are in it)"


def grade(notebook: Path, *, timeout: float = 1800, cell_timeout: float = 900, labs: Path = LABS,
          parameters: dict | None = None) -> GradeReport:
    """Grade one submission. Never raises for a bad notebook: the report says what went wrong."""
    notebook = Path(notebook)
    if not notebook.is_file():
        return GradeReport(str(notebook), None, "unreadable", "no such file", 0.0)
    sha = _digest(notebook)
    try:
        nb = _read(notebook)
    except Exception as exc:  # any parse failure means: this is not a notebook we can grade
        return GradeReport(str(notebook), None, "unreadable", f"not a Jupyter notebook ({type(exc).__name__})",
                           0.0, sha256=sha)
    source_path, why = identify(notebook, nb, labs)
    if source_path is None:
        return GradeReport(str(notebook), None, "wrong lab", why, 0.0, sha256=sha)
    source = _read(source_path)
    plan = assemble(source, nb)
    expected = authoring.graded_checks(source)
    key = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="inferlab-grade-") as tmp:
        work = Path(tmp)
        run_path = work / source_path.name
        import nbformat
        nbformat.write(plan.notebook, run_path)
        key_file, verdict_file = work / "key", work / "verdicts.jsonl"
        key_file.write_text(json.dumps({"key": key.hex(), **guard_config(expected)}), encoding="utf-8")
        verdict_file.touch()
        run = execute(run_path, work / f"executed-{source_path.name}", cwd=work, parameters=parameters,
                      timeout=timeout, cell_timeout=cell_timeout, allow_errors=True,
                      env={KEY_FILE_ENV: str(key_file), VERDICTS_ENV: str(verdict_file)})
        lines = verdict_file.read_text(encoding="utf-8").splitlines()
    verdicts, flags = _guarded_verdicts(lines, key, plan.check_cells)
    if AUDIT not in verdicts and run.status in ("ok", "error"):
        flags.append("the grader's last cell did not report: the guard was removed or replaced")
    checks = []
    for name in expected:
        v = verdicts.get(name)
        if v is None:
            checks.append({"name": name, "passed": False, "hint": "",
                           "detail": "did not run (an earlier cell failed, or the run stopped before it)"})
        else:
            checks.append({"name": name, "passed": v["passed"], "detail": v["detail"], "hint": v["hint"]})
    status = {"ok": "completed", "error": "completed with errors"}.get(run.status, run.status)
    return GradeReport(str(notebook), source_path.stem, status, run.message, round(run.seconds, 1), checks,
                       sum(c["passed"] for c in checks), len(checks), flags=flags, restored=plan.restored,
                       missing=plan.missing, added_cells=plan.added, sha256=sha, source_sha256=_digest(source_path))


@functools.cache
def _exercises() -> dict[str, tuple[str, tuple[str, ...]]]:
    """check name -> (the checks module that defines it, the notebook names of its answers)."""
    import inferlab.checks as checks
    found = {}
    for info in pkgutil.iter_modules(checks.__path__):
        if info.ispkg:
            module = f"inferlab.checks.{info.name}"
            for exercise in getattr(importlib.import_module(module), "EXERCISES", []):
                found[exercise.name] = (module, tuple(exercise.answers))
    return found


def guard_config(checks: list[str]) -> dict:
    """What the kernel's guard needs besides the key: the modules of the lab's checks, to import before
    the learner's code runs, and each check's answer names. Worked out here, once per grader, so that
    a graded kernel does not import every lab's checks."""
    known = _exercises()
    mine = {name: known[name] for name in checks if name in known}
    return {"modules": sorted({module for module, _ in mine.values()}),
            "answers": {name: list(answers) for name, (_, answers) in mine.items()}}


def _guarded_verdicts(lines: list[str], key: bytes, check_cells: set[str]) -> tuple[dict, list[str]]:
    """The verdict of each check from the lab's own check cells (the last run counts), and flags."""
    verdicts, flags = {}, []
    for line in lines:
        try:
            record = json.loads(line)
            signature = record.pop("sig")
        except (ValueError, KeyError, AttributeError):
            flags.append("a line in the verdict channel that no check wrote")
            continue
        if not hmac.compare_digest(str(signature), sign(key, record)):
            flags.append(f"a forged verdict for {record.get('name', '?')}")
            continue
        if record["cell"] not in check_cells:
            continue                   # a check the learner called in their own cell: fine, but not the grade
        if record["tampered"]:
            flags += record["tampered"]
            record |= {"passed": False, "detail": "not counted: " + "; ".join(record["tampered"])}
        verdicts[record["name"]] = record
    return verdicts, list(dict.fromkeys(flags))
