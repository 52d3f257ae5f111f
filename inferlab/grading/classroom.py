"""Grading a class: many submissions in one call, a gradebook, a feedback file per learner.

    inferlab grade submissions/ --out grades/

Each submission's report is written the moment it is graded (``grades/reports/``), keyed by its
content hash and its lab's: a second call skips what has not changed (``--regrade`` to redo), and
a run that was interrupted resumes where it stopped. One submission failing never stops the class.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import re
from dataclasses import asdict
from pathlib import Path

from inferlab.bench.records import write_atomically
from inferlab.grading.report import GradeReport, read_json, write_json
from inferlab.grading.submission import LABS, grade

SKIP_DIRS = {".ipynb_checkpoints", "__pycache__", ".git"}


def submissions(paths: list[str]) -> list[tuple[str, Path]]:
    """(learner, path) of every submission: files as given, folders searched for notebooks, globs expanded.

    The learner is the folder a notebook sits in under a given folder (``class/alice/01-anatomy.ipynb``),
    else what is left of the file name once the lab's name or number is taken out (``alice_01.ipynb``).
    """
    found = []
    for given in paths:
        matched = [Path(p) for p in sorted(glob.glob(given))] or [Path(given)]
        for path in matched:
            if path.is_dir():
                for nb in sorted(path.rglob("*.ipynb")):
                    if not SKIP_DIRS & set(nb.relative_to(path).parts):
                        found.append((learner_id(nb, path), nb))
            else:
                found.append((learner_id(path, None), path))
    return found


def learner_id(path: Path, root: Path | None) -> str:
    if root is not None and path.parent != root:
        return path.relative_to(root).parts[0]
    rest = re.sub(r"\d{2}-[a-z0-9-]+|(?<!\d)\d{2}(?!\d)", "", path.stem, flags=re.I).strip(" _-.")
    return rest or (path.parent.name if root is None else root.name) or path.stem


def _key(learner: str, path: Path) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{learner}__{path.name}")
    return f"{slug}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"


def _unchanged(previous: Path, path: Path, labs: Path) -> GradeReport | None:
    if not previous.is_file() or not path.is_file():
        return None
    try:
        report = read_json(previous)
    except (ValueError, TypeError):       # damaged, or written by another version: grade again
        return None
    source = labs / f"{report.lab}.ipynb" if report.lab else None
    same_source = (source is None or not source.is_file()
                   or hashlib.sha256(source.read_bytes()).hexdigest() == report.source_sha256)
    same = hashlib.sha256(path.read_bytes()).hexdigest() == report.sha256
    return report if same and same_source else None


def grade_class(paths: list[str], out: Path, *, timeout: float = 1800, cell_timeout: float = 900,
                labs: Path = LABS, regrade: bool = False, parameters: dict | None = None,
                progress: bool = True) -> list[tuple[GradeReport, bool]]:
    """Grade every submission into ``out``; [(report, graded now)] in order, a skipped one False."""
    from tqdm.auto import tqdm

    subs = submissions(paths)
    results = []
    bar = tqdm(subs, desc="grading", unit="notebook", disable=not progress)
    for learner, path in bar:
        bar.set_postfix_str(f"{learner}/{path.name}")
        stored = out / "reports" / f"{_key(learner, path)}.json"
        report = None if regrade else _unchanged(stored, path, labs)
        fresh = report is None
        if fresh:
            try:
                report = grade(path, timeout=timeout, cell_timeout=cell_timeout, labs=labs, parameters=parameters)
            except Exception as exc:        # a grader bug on one notebook must not lose the class
                report = GradeReport(str(path), None, "grader error", f"{type(exc).__name__}: {exc}", 0.0)
            report.learner = learner
            write_json(report, stored)
            write_atomically(out / "feedback" / learner / f"{report.lab or path.stem}.md", report.feedback())
        results.append((report, fresh))
    write_gradebook([r for r, _ in results], out)
    return results


def write_gradebook(reports: list[GradeReport], out: Path) -> None:
    """``gradebook.csv`` (one row per submission, one column per check) and ``gradebook.json``."""
    check_names = list(dict.fromkeys(c["name"] for r in reports for c in r.checks))
    fields = ["learner", "lab", "notebook", "status", "score", "total", "seconds", "flags"] + check_names
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for r in reports:
        row = {"learner": r.learner, "lab": r.lab or "", "notebook": r.notebook, "status": r.status,
               "score": r.score, "total": r.total, "seconds": r.seconds, "flags": "; ".join(r.flags)}
        row |= {c["name"]: int(c["passed"]) for c in r.checks}
        writer.writerow(row)
    write_atomically(out / "gradebook.csv", buffer.getvalue())
    write_atomically(out / "gradebook.json", json.dumps([asdict(r) for r in reports], indent=2) + "\n")
