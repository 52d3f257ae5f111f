"""inferlab grade: only the learner's code earns a score; a class at once, with a gradebook and feedback.

A small lab built here from two real checks of lab 06 (``check_tpot``, ``check_percentile``) stands
for a lab's source; every cheat is tried on its stub, every honest answer on its solution.
"""
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from inferlab import grading

REPO = Path(__file__).resolve().parent.parent
LAB = "98-demo.ipynb"

SETUP = "from inferlab.checks import benchmarking as chk"
TPOT_STUB = 'def tpot(e2el, ttft, output_tokens):\n    """Seconds per output token after the first."""\n    raise NotImplementedError()'
PERCENTILE_STUB = 'def percentile(values, q):\n    """The q-th percentile, numpy\'s default."""\n    raise NotImplementedError()'
TPOT_RIGHT = ("def tpot(e2el, ttft, output_tokens):\n    if output_tokens <= 1:\n        return None\n"
              "    return (e2el - ttft) / (output_tokens - 1)")
PERCENTILE_DIFFERENT = "import numpy as np\n\ndef percentile(values, q):\n    return float(np.percentile(list(values), q))"
CHECK_TPOT, CHECK_PERCENTILE = "chk.check_tpot(tpot);", "chk.check_percentile(percentile);"


def _cell(source, exercise=False, cell_id=None):
    if source is None:
        return None
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["exercise"] if exercise else []
    if cell_id:
        cell["id"] = cell_id
    return cell


def _lab(tpot=TPOT_STUB, percentile=PERCENTILE_STUB, check_tpot=CHECK_TPOT, check_percentile=CHECK_PERCENTILE,
         extra=()):
    """The demo lab's cells, ids as the source has them; None leaves a cell out, extra goes after tpot."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = _cell("SEED = 0", cell_id="params")
    params.metadata["tags"] = ["parameters"]
    cells = [nbformat.v4.new_markdown_cell("# Lab 98 - demo"), params, _cell(SETUP, cell_id="setup"),
             _cell(tpot, True, "ex-tpot"), *[_cell(src) for src in extra], _cell(check_tpot, cell_id="chk-tpot"),
             _cell(percentile, True, "ex-pct"), _cell(check_percentile, cell_id="chk-pct")]
    nb.cells = [c for c in cells if c is not None]
    return nb


def _write(nb, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def labs():
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write(_lab(), folder / LAB)
        other = _lab(tpot="def ttft_of(x):\n    raise NotImplementedError()", check_tpot="print('no check')",
                     percentile="def median_of(x):\n    raise NotImplementedError()", check_percentile="print(1)")
        _write(other, folder / "97-other.ipynb")
        yield folder


def _grade(path, labs, timeout=240):
    return grading.grade(path, labs=labs, timeout=timeout)


def _scores(report):
    return [(c["name"], c["passed"]) for c in report.checks]


def test_the_stub_earns_nothing_and_a_right_answer_written_differently_earns_everything(tmp_path, labs):
    stub = _write(_lab(), tmp_path / "stub" / LAB)
    right = _write(_lab(tpot=TPOT_RIGHT, percentile=PERCENTILE_DIFFERENT), tmp_path / "right" / LAB)
    before = hashlib.sha256(right.read_bytes()).hexdigest()
    assert _scores(_grade(stub, labs)) == [("check_tpot", False), ("check_percentile", False)]
    report = _grade(right, labs)
    assert _scores(report) == [("check_tpot", True), ("check_percentile", True)], report.table()
    assert report.flags == [] and report.restored == [] and report.status == "completed"
    assert hashlib.sha256(right.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in right.parent.iterdir()) == [LAB], "grading wrote beside the submission"


FORGE_FILE = textwrap.dedent('''
    import json, os
    line = json.dumps({"name": "check_tpot", "passed": True, "detail": "", "hint": "", "cell": "", "tampered": []})
    targets = [os.environ.get(k) for k in os.environ if "VERDICT" in k]
    targets += [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}") and os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl")]
    for target in filter(None, targets):
        with open(target, "a") as fh:
            fh.write(line + "\\n")
            fh.write(json.dumps({"name": "check_tpot", "passed": True, "sig": "0" * 64}) + "\\n")
    print("forged into", targets)''')
REPLACE_CHECK = 'chk.check_tpot = lambda f: print("PASS check_tpot: exact")'
SHADOW_MODULE = textwrap.dedent('''
    import types
    from inferlab import metrics
    real = chk.check_tpot
    chk = types.SimpleNamespace(check_tpot=lambda f: real(metrics.time_per_output_token), check_percentile=chk.check_percentile)''')


@pytest.mark.parametrize("cheat, flag", [
    (dict(extra=[FORGE_FILE]), "forged"),
    (dict(extra=[REPLACE_CHECK]), "was replaced"),
    (dict(tpot=TPOT_STUB + "\n\n" + REPLACE_CHECK), "was replaced"),
    (dict(extra=[SHADOW_MODULE]), "something other than the notebook's `tpot`"),
    (dict(check_tpot='print("PASS check_tpot: exact on 10 unseen requests")'), None),
    (dict(check_tpot=None), None),
    (dict(tpot=TPOT_STUB + "\n\nfrom inferlab import metrics\nchk.check_tpot(metrics.time_per_output_token)"), None),
], ids=["forged-verdict-file", "replaced-check-in-added-cell", "replaced-check-in-exercise-cell",
        "shadowed-check-module", "edited-check-cell", "deleted-check-cell", "check-called-on-the-reference"])
def test_a_cheat_on_the_stub_earns_nothing(tmp_path, labs, cheat, flag):
    report = _grade(_write(_lab(**cheat), tmp_path / LAB), labs)
    assert report.score == 0, report.table()
    if flag:
        assert any(flag in f for f in report.flags), report.flags
    if "check_tpot" in cheat:
        assert report.restored and "chk.check_tpot(tpot)" in report.restored[0], report.restored


PID_FILE = "{folder}/{name}.pid"
CHILD = ("import subprocess\nproc = subprocess.Popen(['sleep', '300'])\n"
         "open('{pidfile}', 'w').write(str(proc.pid))")
DETACHED = ("import subprocess\nsubprocess.run(['setsid', 'sh', '-c', 'sleep 300 & echo $! > {pidfile}'], check=True)\n"
            + TPOT_STUB)


def _alive(pidfile: Path) -> bool:
    for _ in range(50):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.1)
    pid = int(pidfile.read_text())
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_no_process_a_cell_started_outlives_the_grading(tmp_path, labs):
    child, detached = tmp_path / "child.pid", tmp_path / "detached.pid"
    nb = _lab(tpot=DETACHED.format(pidfile=detached), extra=[CHILD.format(pidfile=child)])
    report = _grade(_write(nb, tmp_path / "sub" / LAB), labs)
    assert report.status == "completed" and report.added_cells == 1
    assert not _alive(child), "a process an added cell started is still running"
    assert not _alive(detached), "a process that left its session is still running"


def test_a_hanging_notebook_is_stopped_with_everything_it_started(tmp_path, labs):
    pidfile = tmp_path / "hang.pid"
    nb = _lab(tpot=CHILD.format(pidfile=pidfile) + "\nimport time\ntime.sleep(600)\n" + TPOT_RIGHT)
    files_before = set(Path(tempfile.gettempdir()).glob("*.json"))
    report = _grade(_write(nb, tmp_path / LAB), labs, timeout=12)
    assert report.status == "timeout" and report.score == 0
    assert not _alive(pidfile)
    assert not set(Path(tempfile.gettempdir()).glob("*.json")) - files_before, "a kernel connection file stayed"


def test_the_connection_file_of_a_kernel_is_read_from_its_command_line():
    from inferlab import execution
    cmd = ["python", "-m", "ipykernel_launcher", "-f", "/tmp/tmpabc123.json"]
    assert execution._connection_files(cmd) == ["/tmp/tmpabc123.json"]
    assert execution._connection_files(["python", "-m", "papermill", "-f"]) == []


def test_an_exercise_found_by_name_when_ids_are_lost_and_a_missing_one_runs_as_stub(tmp_path, labs):
    nb = _lab(tpot=TPOT_RIGHT, percentile=None)
    for cell in nb.cells:
        cell["id"] = hashlib.sha1(cell.source.encode()).hexdigest()[:8]      # another editor's ids
    report = _grade(_write(nb, tmp_path / LAB), labs)
    assert _scores(report) == [("check_tpot", True), ("check_percentile", False)], report.table()
    assert report.missing == ["percentile"] and report.restored == []


@pytest.mark.parametrize("name, make, says", [
    (LAB, lambda p: p.write_bytes(b"not json at all"), "not a Jupyter notebook"),
    ("homework.py", lambda p: p.write_text("print('hi')"), "not a Jupyter notebook"),
    (LAB, lambda p: _write(nbformat.read(p.parent.parent / "labs" / "97-other.ipynb", 4), p),
     "this is lab 97-other's notebook, handed in as 98-demo"),
    ("essay.ipynb", lambda p: _write(nbformat.v4.new_notebook(), p), "not a notebook of this course's labs"),
])
def test_a_submission_that_cannot_be_graded_gets_one_line(tmp_path, labs, name, make, says):
    (tmp_path / "labs").symlink_to(labs)
    path = tmp_path / "sub" / name
    path.parent.mkdir()
    make(path)
    report = _grade(path, labs)
    assert says in report.message and "\n" not in report.message and report.score == 0
    assert report.status in ("unreadable", "wrong lab")


def test_a_class_in_one_call_then_nothing_to_regrade(tmp_path, labs):
    class_dir, out = tmp_path / "class", tmp_path / "grades"
    _write(_lab(tpot=TPOT_RIGHT, percentile=PERCENTILE_DIFFERENT), class_dir / "alice" / LAB)
    _write(_lab(), class_dir / "bob" / LAB)
    _write(_lab(tpot=TPOT_RIGHT + "\nimport os\nos._exit(1)"), class_dir / "carol" / LAB)
    _write(_lab(tpot=TPOT_RIGHT + "\nimport time\ntime.sleep(600)"), class_dir / "dave" / LAB)
    (class_dir / "erin").mkdir()
    (class_dir / "erin" / LAB).write_text("{ this is not a notebook")
    _write(nbformat.read(labs / "97-other.ipynb", 4), class_dir / "frank" / LAB)
    first = grading.grade_class([str(class_dir)], out, labs=labs, timeout=30, progress=False)
    got = {r.learner: (r.status, r.score, r.total) for r, fresh in first}
    assert got == {"alice": ("completed", 2, 2), "bob": ("completed", 0, 2),
                   "carol": ("crash", 0, 2), "dave": ("timeout", 0, 2), "erin": ("unreadable", 0, 0),
                   "frank": ("wrong lab", 0, 0)}, got
    with open(out / "gradebook.csv") as fh:
        rows = {row["learner"]: row for row in csv.DictReader(fh)}
    assert rows["alice"]["check_tpot"] == "1" and rows["bob"]["check_tpot"] == "0" and rows["frank"]["lab"] == ""
    assert len(json.loads((out / "gradebook.json").read_text())) == 6
    feedback = (out / "feedback" / "bob" / "98-demo.md").read_text()
    assert "`check_tpot` | **fail** | not implemented yet" in feedback and "*Hint:" in feedback
    assert "2/2" in (out / "feedback" / "alice" / "98-demo.md").read_text()
    second = grading.grade_class([str(class_dir)], out, labs=labs, timeout=30, progress=False)
    assert [fresh for _, fresh in second] == [False] * 6
    assert {r.learner: (r.status, r.score) for r, _ in second} == {k: v[:2] for k, v in got.items()}
    _write(_lab(tpot=TPOT_RIGHT), class_dir / "bob" / LAB)                      # bob hands in again
    third = grading.grade_class([str(class_dir)], out, labs=labs, timeout=30, progress=False)
    assert [r.learner for r, fresh in third if fresh] == ["bob"]
    assert not list(out.rglob("*.tmp")), "a half-written file was left behind"


@pytest.mark.parametrize("path, learner", [("class/alice/01-anatomy.ipynb", "alice"),
                                           ("alice_01-anatomy.ipynb", "alice"), ("bob-02.ipynb", "bob"),
                                           ("inbox/01-anatomy.ipynb", "inbox")])
def test_the_learner_is_named_by_folder_or_file(tmp_path, path, learner):
    file = tmp_path / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("{}")
    root = tmp_path / "class" if path.startswith("class/") else None
    assert grading.learner_id(file, root) == learner


def test_cli_grades_a_class_and_prints_a_line_each(tmp_path, labs, capsys):
    _write(_lab(tpot=TPOT_RIGHT), tmp_path / "c" / "ann" / LAB)
    (tmp_path / "c" / "ben").mkdir()
    (tmp_path / "c" / "ben" / "notes.txt").write_text("not graded: not a notebook name")
    _write(_lab(), tmp_path / "c" / "ben" / LAB)
    from inferlab import cli
    code = cli.main(["grade", str(tmp_path / "c"), "--out", str(tmp_path / "g"), "--timeout", "120",
                     "--labs", str(labs)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ann: 98-demo 1/2 (completed)" in out and "ben: 98-demo 0/2 (completed)" in out
    assert (tmp_path / "g" / "feedback" / "ann" / "98-demo.md").exists()


def test_cli_on_a_missing_file_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "inferlab", "grade", str(tmp_path / "nope.ipynb"),
                           "--out", str(tmp_path / "g")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no such file" in proc.stdout and "Traceback" not in proc.stderr


# Acceptance: the generated lab scores nothing, the solution scores everything.
LAB_01 = "01-anatomy.ipynb"


@pytest.mark.skipif(not (REPO / "solutions" / LAB_01).exists(), reason="lab 01 not built yet")
@pytest.mark.parametrize("folder, all_pass", [("labs", False), ("solutions", True)])
def test_grade_lab_01(folder, all_pass):
    # shorter timing sections than the lab's defaults: the checks do not depend on them, the test time does
    small = {"MAX_NEW_TOKENS": 12, "SEQ_LENGTHS": [32, 64], "REPEATS": 2}
    report = grading.grade(REPO / folder / LAB_01, timeout=1200, parameters=small)
    assert report.total >= 3 and report.lab == "01-anatomy"
    assert [c["passed"] for c in report.checks] == [all_pass] * report.total, report.table()
    assert report.flags == []


@pytest.mark.parametrize("stored", ["{ half a repo", '{"written_by": "another version"}'])
def test_a_damaged_or_foreign_report_is_graded_again(tmp_path, stored):
    from inferlab.grading import classroom
    notebook, report = tmp_path / LAB, tmp_path / "report.json"
    notebook.write_text("{}")
    report.write_text(stored)
    assert classroom._unchanged(report, notebook, tmp_path) is None


def test_cli_on_one_notebook_prints_its_table_and_writes_json(tmp_path, labs, capsys):
    from inferlab import cli
    path = _write(_lab(tpot=TPOT_RIGHT), tmp_path / "sub" / LAB)
    report = tmp_path / "one.json"
    code = cli.main(["grade", str(path), "--out", str(tmp_path / "g"), "--labs", str(labs), "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0 and "check_tpot" in out and "score: 1/2" in out, out
    assert json.loads(report.read_text())["score"] == 1
