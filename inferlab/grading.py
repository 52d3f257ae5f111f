"""Executing notebooks safely, and grading a learner's notebook.

``execute`` runs a notebook with papermill in a child process under a wall-clock limit
and, on timeout, kills that process and every process it started (the Jupyter kernel
runs in its own session, so killing a process group is not enough).

``grade`` never touches the submission: it copies it into a temporary directory, runs
the copy with every check writing its verdict to a file, and scores the checks that the
lab's solution defines. Checks a crash or a timeout prevented count as not passed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inferlab import authoring
from inferlab.checks import VERDICTS_ENV

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Execution:
    status: str            # "ok", "error" (a cell raised), "timeout", "crash" (kernel or papermill died)
    seconds: float
    message: str = ""      # one line: the error, or why it stopped


def execute(src: Path, dest: Path, *, cwd: Path, parameters: dict | None = None, timeout: float = 3600,
            cell_timeout: float | None = None, allow_errors: bool = False, env: dict | None = None) -> Execution:
    """Run notebook ``src`` into ``dest`` with papermill; never raises for notebook failures."""
    job = {"src": str(src), "dest": str(dest), "cwd": str(cwd), "parameters": parameters or {},
           "cell_timeout": cell_timeout, "allow_errors": allow_errors}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "inferlab.grading", json.dumps(job)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        proc.communicate()
        return Execution("timeout", time.perf_counter() - start, f"stopped after the {timeout:.0f} s time limit")
    seconds = time.perf_counter() - start
    lines = [line for line in out.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if proc.returncode == 0:
        return Execution("ok", seconds)
    if proc.returncode == 3:
        return Execution("error", seconds, last.removeprefix("ERROR: "))
    return Execution("crash", seconds, last or f"papermill exited with code {proc.returncode}")


def _kill_tree(pid: int) -> None:
    import psutil
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def _worker(job: dict) -> int:
    """Child process: run papermill; exit 0 ok, 3 when a cell raised (last line says which)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError
    try:
        papermill.execute_notebook(job["src"], job["dest"], parameters=job["parameters"], kernel_name="python3",
                                   cwd=job["cwd"], progress_bar=False, execution_timeout=job["cell_timeout"],
                                   allow_errors=job["allow_errors"])
    except PapermillExecutionError as exc:
        print(f"ERROR: cell {exc.exec_count}: {exc.ename}: {str(exc.evalue).splitlines()[0] if exc.evalue else ''}")
        return 3
    return 0


# ---------------------------------------------------------------- grading

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


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1])))
