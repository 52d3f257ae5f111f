"""Grading learners' notebooks: one, or a whole class.

- ``submission``: which lab a notebook is, what runs (``assemble``: the lab's source with the
  learner's exercise cells), running it guarded, and the score.
- ``kernel``: the guard inside the kernel: signed verdicts, tampering noticed.
- ``classroom``: many submissions, the gradebook, feedback, skipping what is unchanged.
- ``report``: the report of one submission, as a table, JSON and the learner's feedback.

The names below load on first use: the guard imports ``inferlab.grading.kernel`` inside every
graded kernel, and that must not pull in nbformat and the rest of the grader (seconds per run).
"""
import importlib

_WHERE = {"grade_class": "classroom", "learner_id": "classroom", "submissions": "classroom",
          "write_gradebook": "classroom", "GradeReport": "report", "read_json": "report", "write_json": "report",
          "LABS": "submission", "grade": "submission", "identify": "submission"}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'inferlab.grading' has no attribute {name!r}")
    return getattr(importlib.import_module(f"inferlab.grading.{_WHERE[name]}"), name)
