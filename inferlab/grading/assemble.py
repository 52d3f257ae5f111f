"""What the grader runs: the lab's source with the learner's exercise cells in it.

Everything but the exercises comes from the source (``labs/<lab>.ipynb``): parameters, setup,
checks and measurements, so an edited, reordered or deleted check cell changes nothing. Each
exercise cell of the source (tagged ``exercise``) is replaced by the submission's cell that answers
it: the cell with the same id, else a cell that defines the same names. Cells the learner added
(a helper, a scratch experiment) run too, after the source cell they followed, as nbgrader keeps
them: honest work may depend on them, and a cheat in them earns nothing because verdicts are
guarded (``inferlab.grading.kernel``), not read from what cells print.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

import nbformat

from inferlab.grading.kernel import AUDIT_CELL, INSTALL_CELL, cell_digest

EXERCISE_TAG = "exercise"


@dataclass
class Assembly:
    notebook: nbformat.NotebookNode | None
    check_cells: set[str] = field(default_factory=set)     # digests of the source's check cells
    found: list[str] = field(default_factory=list)          # exercises taken from the submission
    missing: list[str] = field(default_factory=list)        # exercises left as the stub
    restored: list[str] = field(default_factory=list)       # source cells the submission changed or lost
    added: int = 0                                           # learner's own cells that ran


def defined_names(source: str) -> set[str]:
    """Top-level functions, classes and assigned names of a cell ('' for code that does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def is_exercise(cell) -> bool:
    return cell.cell_type == "code" and EXERCISE_TAG in cell.metadata.get("tags", [])


def exercise_names(nb) -> list[set[str]]:
    return [defined_names(c.source) for c in nb.cells if is_exercise(c)]


def matches(source_nb, submission) -> int:
    """How many of the source's exercises the submission answers (0: not this lab's notebook)."""
    return sum(_answer(cell, submission.cells) is not None for cell in source_nb.cells if is_exercise(cell))


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
        return True
    except SyntaxError:
        return False


def _answer(exercise, cells):
    names = defined_names(exercise.source)
    # Same id and the same names; or the learner's cell does not parse yet: its SyntaxError is their answer.
    by_id = [c for c in cells if c.get("id") == exercise.get("id") and c.cell_type == "code"
             and (names <= defined_names(c.source) or not _parses(c.source))]
    tagged = [c for c in cells if is_exercise(c) and names and names <= defined_names(c.source)]
    anywhere = [c for c in cells if c.cell_type == "code" and names and names <= defined_names(c.source)]
    for candidates in (by_id, tagged, anywhere):
        if candidates:
            return candidates[-1]     # a cell run twice or pasted again: the last one is the answer
    return None


def _label(cell) -> str:
    first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")), "")
    return first.strip()[:60]


def assemble(source_nb, submission) -> Assembly:
    """The notebook to run, and what was taken, kept as the stub, restored or added."""
    result = Assembly(None)
    answer_of: dict[str | None, object] = {}   # source exercise id -> the submission's cell answering it
    anchor_of: dict[int, str | None] = {}      # id() of such a cell -> where it sits in the source
    for cell in source_nb.cells:
        if is_exercise(cell):
            answer = _answer(cell, submission.cells)
            names = ", ".join(sorted(defined_names(cell.source))) or _label(cell)
            (result.found if answer is not None else result.missing).append(names)
            if answer is not None:
                answer_of[cell.get("id")] = answer
                anchor_of[id(answer)] = cell.get("id")
    source_ids = {c.get("id") for c in source_nb.cells}
    source_code = {c.source for c in source_nb.cells if c.cell_type == "code"}
    added_after: dict[str | None, list] = {}
    anchor = None                   # the source cell the submission's cells follow
    for cell in submission.cells:
        if id(cell) in anchor_of:
            anchor = anchor_of[id(cell)]
        elif cell.get("id") in source_ids:
            anchor = cell.get("id")
        elif cell.cell_type == "code" and cell.source.strip() and cell.source not in source_code:
            added_after.setdefault(anchor, []).append(nbformat.v4.new_code_cell(cell.source))
            result.added += 1
    submitted = {c.get("id"): c for c in submission.cells}
    submitted_code = {c.source for c in submission.cells if c.cell_type == "code"}
    cells = [nbformat.v4.new_code_cell(INSTALL_CELL)]
    for cell in added_after.get(None, []):
        cells.append(cell)
    for cell in source_nb.cells:
        new = nbformat.from_dict(cell.copy())
        if is_exercise(cell) and cell.get("id") in answer_of:
            new.source = answer_of[cell.get("id")].source
        elif cell.cell_type == "code" and not is_exercise(cell):
            mine = submitted.get(cell.get("id"))
            if cell.source not in submitted_code:       # ids can be lost on the way; the text cannot lie
                result.restored.append(f"{'deleted' if mine is None else 'edited'}: {_label(cell)}")
        if cell.cell_type == "code":
            new.outputs, new.execution_count = [], None
            if "check_" in cell.source and not is_exercise(cell):
                result.check_cells.add(cell_digest(new.source))
        cells.append(new)
        cells.extend(added_after.get(cell.get("id"), []))
    cells.append(nbformat.v4.new_code_cell(AUDIT_CELL))
    result.check_cells.add(cell_digest(AUDIT_CELL))
    nb = nbformat.v4.new_notebook(metadata=source_nb.metadata)
    nb.cells = cells
    result.notebook = nb
    return result
