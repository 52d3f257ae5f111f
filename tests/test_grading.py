"""inferlab grade: scores checks, survives crashes, hangs and non-notebooks, never edits the submission."""
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from inferlab import grading

REPO = Path(__file__).resolve().parent.parent

CHECKS = '''
from inferlab.checks import graded, expect
@graded(hint="return 42")
def check_answer(f):
    expect(f() == 42, f"got {f()!r}, expected 42")
@graded(hint="return 'hi'")
def check_greeting(f):
    expect(f() == "hi", f"got {f()!r}")
'''


def _notebook(tmp_path, *cells, name="99-demo.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(CHECKS)] + [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scores_passing_and_failing_checks_and_leaves_the_original_alone(tmp_path):
    path = _notebook(tmp_path, "def a(): return 42\ncheck_answer(a)", "def g(): return 'bye'\ncheck_greeting(g)")
    before = _digest(path)
    report = grading.grade(path, solutions=tmp_path / "none", timeout=300)
    assert report.status == "completed"
    assert [(c["name"], c["passed"]) for c in report.checks] == [("check_answer", True), ("check_greeting", False)]
    assert (report.score, report.total) == (1, 2)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["99-demo.ipynb"], "grading wrote beside the submission"


def test_a_crashing_cell_does_not_hide_later_checks(tmp_path):
    path = _notebook(tmp_path, "def a(): return 42\n1/0", "check_answer(a)", "raise NotImplementedError('stub')",
                     "def g(): return 'hi'\ncheck_greeting(g)")
    report = grading.grade(path, solutions=tmp_path / "none", timeout=300)
    assert report.status == "completed with errors"
    assert report.score == 2


def test_a_hanging_notebook_is_stopped_and_reported(tmp_path):
    import psutil
    path = _notebook(tmp_path, "import time\ntime.sleep(600)", "check_answer(lambda: 42)")
    before = {p.pid for p in psutil.process_iter()}
    files_before = set(Path(tempfile.gettempdir()).glob("*.json"))
    report = grading.grade(path, solutions=tmp_path / "none", timeout=20)
    assert report.status == "timeout"
    assert report.score == 0
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
                 and "ipykernel" in " ".join(p.info["cmdline"] or [])]
    assert not leftovers, f"kernel left running: {leftovers}"
    left_files = set(Path(tempfile.gettempdir()).glob("*.json")) - files_before
    assert not left_files, f"the killed kernel's connection file stayed behind: {left_files}"


def test_the_connection_file_of_a_kernel_is_read_from_its_command_line():
    from inferlab import execution
    cmd = ["python", "-m", "ipykernel_launcher", "-f", "/tmp/tmpabc123.json"]
    assert execution._connection_files(cmd) == ["/tmp/tmpabc123.json"]
    assert execution._connection_files(["python", "-m", "papermill", "-f"]) == []


def test_checks_missing_from_the_submission_count_as_failed(tmp_path):
    sol_dir = tmp_path / "solutions"
    sol_dir.mkdir()
    _notebook(sol_dir, "check_answer(lambda: 42)", "check_greeting(lambda: 'hi')", name="98-lab.ipynb")
    sub = tmp_path / "sub"
    sub.mkdir()
    path = _notebook(sub, "check_answer(lambda: 42)", name="98-lab.ipynb")  # check_greeting deleted
    report = grading.grade(path, solutions=sol_dir, timeout=300)
    assert [(c["name"], c["passed"]) for c in report.checks] == [("check_answer", True), ("check_greeting", False)]
    assert "did not run" in report.checks[1]["detail"]


@pytest.mark.parametrize("content", [b"not json at all", b'{"cells": 3}'])
def test_a_file_that_is_not_a_notebook_gets_a_clear_report(tmp_path, content):
    path = tmp_path / "homework.ipynb"
    path.write_bytes(content)
    report = grading.grade(path)
    assert report.status == "unreadable" and "not a Jupyter notebook" in report.message


def test_cli_prints_a_table_and_writes_json(tmp_path):
    path = _notebook(tmp_path, "check_answer(lambda: 42)")
    out = tmp_path / "out" / "report.json"
    proc = subprocess.run([sys.executable, "-m", "inferlab", "grade", str(path), "--json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "check_answer" in proc.stdout and "score: 1/1" in proc.stdout
    assert json.loads(out.read_text())["score"] == 1


def test_cli_on_a_missing_file_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "inferlab", "grade", str(tmp_path / "nope.ipynb"),
                           "--json", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no such file" in proc.stdout and "Traceback" not in proc.stderr


# Acceptance: the generated lab scores nothing, the solution scores everything.
LAB_01 = "01-anatomy.ipynb"


@pytest.mark.skipif(not (REPO / "solutions" / LAB_01).exists(), reason="lab 01 not built yet")
@pytest.mark.parametrize("folder, all_pass", [("labs", False), ("solutions", True)])
def test_grade_lab_01(folder, all_pass):
    report = grading.grade(REPO / folder / LAB_01, timeout=1200)
    assert report.total >= 3
    assert [c["passed"] for c in report.checks] == [all_pass] * report.total, report.table()
