"""Grading learners' notebooks: one, or a whole class.

- ``submission``: which lab a notebook is, what runs (``assemble``: the lab's source with the
  learner's exercise cells), running it guarded, and the score.
- ``kernel``: the guard inside the kernel: signed verdicts, tampering noticed.
- ``classroom``: many submissions, the gradebook, feedback, skipping what is unchanged.
- ``report``: the report of one submission, as a table, JSON and the learner's feedback.
"""
from inferlab.grading.classroom import grade_class, learner_id, submissions, write_gradebook
from inferlab.grading.report import GradeReport, read_json, write_json
from inferlab.grading.submission import LABS, grade, identify

__all__ = ["GradeReport", "LABS", "grade", "grade_class", "identify", "learner_id", "read_json", "submissions",
           "write_gradebook", "write_json"]
