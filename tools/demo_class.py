"""A class of seven submissions to try the grader on (what the README's grader section shows).

    .venv/bin/python tools/demo_class.py /tmp/class
    .venv/bin/python -m inferlab grade /tmp/class --out /tmp/grades --timeout 90

ada hands in lab 02's solution, ben its untouched stub, cy a solution whose kernel dies, dee one that
hangs, eli a file that is not a notebook, fay lab 01's notebook as lab 02, and gus lab 01's stub
with its check cells edited to print passes and a check replaced by assignment.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent


def _with_exercise_tail(src: Path, tail: str):
    nb = nbformat.read(src, as_version=4)
    first = next(c for c in nb.cells if "exercise" in c.metadata.get("tags", []))
    first.source += "\n\n" + tail
    return nb


def _cheating(src: Path):
    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "chk.check_" in cell.source:
            name = cell.source.split("chk.")[1].split("(")[0]
            cell.source = f'print("PASS {name}")'
    nb.cells.insert(3, nbformat.v4.new_code_cell("from inferlab.checks import anatomy\n"
                                                 "anatomy.check_greedy = lambda *a: print('PASS check_greedy')"))
    return nb


def build(folder: Path) -> None:
    sol, lab = REPO / "solutions", REPO / "labs"
    class_ = {
        "ada": nbformat.read(sol / "02-memory.ipynb", as_version=4),
        "ben": nbformat.read(lab / "02-memory.ipynb", as_version=4),
        "cy": _with_exercise_tail(sol / "02-memory.ipynb", "import os\nos._exit(1)"),
        "dee": _with_exercise_tail(sol / "02-memory.ipynb", "import time\ntime.sleep(3600)"),
        "fay": nbformat.read(lab / "01-anatomy.ipynb", as_version=4),
    }
    for learner, nb in class_.items():
        (folder / learner).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / learner / "02-memory.ipynb")
    (folder / "eli").mkdir(parents=True, exist_ok=True)
    (folder / "eli" / "02-memory.ipynb").write_text("I could not get Jupyter to start, sorry\n")
    (folder / "gus").mkdir(parents=True, exist_ok=True)
    nbformat.write(_cheating(lab / "01-anatomy.ipynb"), folder / "gus" / "01-anatomy.ipynb")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    build(ap.parse_args().folder)
