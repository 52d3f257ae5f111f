"""Load a notebook's exercise code into a namespace, so tests can call the learner's
stub and the reference solution exactly as the notebooks define them.

Convention (enforced by the lint test): cells that define exercise functions carry the
tag ``exercise`` and are self-contained (they import what they use).
"""
from __future__ import annotations

from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"


def exercise_namespace(path: Path) -> dict:
    """Execute every code cell tagged 'exercise' of ``path`` in order; return the namespace."""
    nb = nbformat.read(path, as_version=4)
    namespace: dict = {"__name__": f"nb_{path.stem.replace('-', '_')}"}
    for cell in nb.cells:
        if cell.cell_type == "code" and "exercise" in cell.metadata.get("tags", []):
            exec(compile(cell.source, f"{path.name}:exercise", "exec"), namespace)
    return namespace


def solution(lab: str) -> dict:
    """Exercise functions of solutions/<lab>.ipynb (the reference answers)."""
    return exercise_namespace(SOLUTIONS / f"{lab}.ipynb")


def stub(lab: str) -> dict:
    """Exercise functions of labs/<lab>.ipynb (what a learner starts from)."""
    return exercise_namespace(LABS / f"{lab}.ipynb")
