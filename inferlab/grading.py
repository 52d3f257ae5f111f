"""Grading a learner's notebook.

``grade`` never touches the submission: it copies it into a temporary directory, runs
the copy with every check writing its verdict to a file, and scores the checks that the
lab's solution defines. Checks a crash or a timeout prevented count as not passed.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inferlab import authoring
from inferlab.checks import VERDICTS_ENV
from inferlab.execution import execute

REPO = Path(__file__).resolve().parent.parent

@dataclass
class GradeReport:
    notebook: str
    lab: str | None
    status: str
    message: str
    seconds: float
    checks: list[dict] = field(default_factory=list)   # name, passed, detail
    score: int = 0
    total: int = 0

    def table(self) -> str:
        rows = [f"Grade report for {self.notebook} (lab {self.lab or 'unknown'})",
                f"run: {self.status} in {self.seconds:.0f} s" + (f" ({self.message})" if self.message else "")]
        width = max([len(c["name"]) for c in self.checks] + [5])
        rows.append(f"{'check'.ljust(width)}  result  detail")
        for c in self.checks:
            rows.append(f"{c['name'].ljust(width)}  {'PASS' if c['passed'] else 'FAIL'}    {c['detail']}")
        rows.append(f"score: {self.score}/{self.total}")
        return "\n".join(rows)


def expected_checks(lab_name: str, solutions: Path) -> list[str]:
    src = solutions / lab_name
    return authoring.graded_checks(_read(src)) if src.is_file() else []


def _read(path: Path):
    import nbformat
    return nbformat.read(path, as_version=4)


def grade(notebook: Path, *, timeout: float = 1800, cell_timeout: float = 900,
          solutions: Path = REPO / "solutions", parameters: dict | None = None) -> GradeReport:
    """Run a copy of ``notebook`` and score its graded checks. Never raises for a bad notebook."""
    notebook = Path(notebook)
    name = notebook.name
    if not notebook.is_file():
        return GradeReport(str(notebook), None, "unreadable", "no such file", 0.0)
    try:
        nb = _read(notebook)
    except Exception as exc:  # any parse failure means: this is not a notebook we can grade
        return GradeReport(name, None, "unreadable", f"not a Jupyter notebook ({type(exc).__name__})", 0.0)
    lab = name if (solutions / name).is_file() else None
    expected = expected_checks(lab, solutions) if lab else authoring.graded_checks(nb)
    with tempfile.TemporaryDirectory(prefix="inferlab-grade-") as tmp:
        work = Path(tmp)
        copy = work / name
        shutil.copyfile(notebook, copy)
        verdict_file = work / "verdicts.jsonl"
        run = execute(copy, work / f"executed-{name}", cwd=work, parameters=parameters, timeout=timeout,
                      cell_timeout=cell_timeout, allow_errors=True, env={VERDICTS_ENV: str(verdict_file)})
        verdicts = {}
        if verdict_file.exists():
            for line in verdict_file.read_text(encoding="utf-8").splitlines():
                v = json.loads(line)
                verdicts[v["name"]] = v  # the last run of a check counts
    checks = []
    for check in expected or list(verdicts):
        v = verdicts.get(check)
        if v is None:
            checks.append({"name": check, "passed": False, "detail": "did not run (an earlier cell failed or the check was removed)"})
        else:
            checks.append({"name": check, "passed": v["passed"], "detail": v["detail"]})
    status = {"ok": "completed", "error": "completed with errors"}.get(run.status, run.status)
    return GradeReport(name, Path(lab).stem if lab else None, status, run.message, round(run.seconds, 1), checks,
                       sum(c["passed"] for c in checks), len(checks))


def write_json(report: GradeReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
