"""From solution notebooks to learner notebooks, and the lab contract they must meet.

solutions/NN-slug.ipynb is the source of truth (nbgrader style). A region

    ### BEGIN SOLUTION  hint text for the learner
    ...reference code...
    ### END SOLUTION

becomes, in labs/NN-slug.ipynb, one line at the same indentation:

    raise NotImplementedError("Exercise: hint text for the learner")

Outputs and execution metadata are cleared; every other cell is copied unchanged.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat

from inferlab.labtimes import TIMINGS  # the timing log; re-exported for the CLI and tests

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CHECK_CALL = re.compile(r"(?<!def )\b(check_[A-Za-z0-9_]+)\s*\(")
HEADER_FIELDS = ("Learning objectives", "Prerequisites", "Time", "Hardware tiers", "GPU tier", "How to work")
# What the header says about the GPU path: where it has run, or plainly that it has not.
GPU_TIER_LINE = re.compile(r"^\*\*GPU tier\*\*: (validated on .+|not yet run on a GPU\b.*)$", re.M)
# Paths that betray the machine a notebook ran on; committed outputs must not contain them.
ABSOLUTE_PATH = re.compile(r"(/work/|/home/|/root/|/tmp/|/Users/|/opt/|site-packages|[A-Z]:\\\\)")
MIN_CHECKS = 3
# An f-string field with a width ({x:>10}, {name:<24}, {n:9,}) aligns columns by hand. Results a
# learner compares are a pandas DataFrame, with units in the column names.
F_STRING = re.compile(r"""\bf(?:"[^"\n]*"|'[^'\n]*')""")
WIDTH_SPEC = re.compile(r"^(?:.?[<>^=])?[+\- ]?#?0?\d")
# Words a contract may share with its solution: types and shapes say what goes in and comes out.
CONTRACT_WORDS = {"shape", "dtype", "float", "int", "str", "bool", "list", "dict", "tuple", "None", "Linear", "Tensor"}


class SolutionMarkerError(ValueError):
    pass


def lab_notebooks(folder: Path) -> list[Path]:
    """The lab notebooks of a folder (NN-slug.ipynb), without in-progress or temporary copies."""
    return [p for p in sorted(folder.glob("[0-9][0-9]-*.ipynb")) if "." not in p.stem]


def stub_source(source: str, where: str = "cell") -> str:
    """Replace each solution region in one cell's source by a NotImplementedError stub."""
    out, inside, lines = [], False, source.split("\n")
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise SolutionMarkerError(f"{where}, line {number}: {BEGIN} inside another solution region")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            hint = stripped[len(BEGIN):].strip(" :-") or "write your solution here"
            out.append(f"{indent}raise NotImplementedError({('Exercise: ' + hint)!r})")
        elif stripped.startswith(END):
            if not inside:
                raise SolutionMarkerError(f"{where}, line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}: {BEGIN} is never closed")
    return "\n".join(out)


def solution_regions(source: str) -> list[tuple[str, str]]:
    """(hint, code) of every solution region of one cell's source."""
    regions, hint, body = [], "", None
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            hint, body = stripped[len(BEGIN):].strip(" :-"), []
        elif stripped.startswith(END) and body is not None:
            regions.append((hint, "\n".join(body)))
            body = None
        elif body is not None:
            body.append(line)
    return regions


def _method_names(code: str) -> set[str]:
    """What a solution calls, reads as an attribute or passes by keyword: how it works."""
    import ast
    import textwrap
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            names.add(node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", ""))
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.keyword):
            names.add(node.arg or "")
    return {n for n in names if len(n) > 2}


def leaked_method(source: str) -> list[str]:
    """Per solution region whose stub message gives the method away: the names it borrows from the
    solution's code that the learner's cell does not already show (signature, docstring, given code)."""
    shown = set(re.findall(r"[A-Za-z_]\w*", _outside_regions(source))) | CONTRACT_WORDS
    found = []
    for hint, code in solution_regions(source):
        leaked = sorted((_method_names(code) & set(re.findall(r"[A-Za-z_]\w*", hint))) - shown)
        if leaked:
            found.append(", ".join(leaked))
    return found


def aligned_by_hand(source: str) -> str | None:
    """The first f-string field of ``source`` that pads to a width (a hand-aligned column), or None."""
    for literal in F_STRING.findall(source):
        for field in re.findall(r"\{([^{}]*)\}", literal):
            expression, colon, spec = field.partition(":")
            if colon and "[" not in spec and WIDTH_SPEC.match(spec):
                return "{" + field + "}"
    return None


def _outside_regions(source: str) -> str:
    kept, inside = [], False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            inside = True
        elif stripped.startswith(END):
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def learner_notebook(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's version of a solution notebook: stubs, no outputs, no run metadata."""
    nb = nbformat.from_dict(json.loads(json.dumps(solution)))  # deep copy
    for index, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source, f"{name} cell {index}")
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("papermill", None)
    return nb


def dumps(nb) -> str:
    """Stable serialisation, so regenerating an unchanged lab changes no byte."""
    return nbformat.writes(nb).rstrip("\n") + "\n"


def generate_labs(solutions: Path, labs: Path) -> list[Path]:
    """Write labs/ from solutions/; return the files whose content changed."""
    labs.mkdir(parents=True, exist_ok=True)
    changed = []
    for src in lab_notebooks(solutions):
        text = dumps(learner_notebook(nbformat.read(src, as_version=4), src.name))
        dest = labs / src.name
        if not dest.exists() or dest.read_text(encoding="utf-8") != text:
            tmp = dest.with_suffix(".ipynb.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(dest)
            changed.append(dest)
    return changed


def lab_needs(nb) -> list[str]:
    """What a lab's CPU path needs (``metadata.inferlab.needs``): components of inferlab.host.COMPONENTS."""
    return list(nb.metadata.get("inferlab", {}).get("needs", []))


def graded_checks(nb) -> list[str]:
    """Names of the graded checks a notebook calls, in order of first appearance."""
    names: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for name in CHECK_CALL.findall(cell.source):
                if name not in names:
                    names.append(name)
    return names


def clean_executed(nb) -> None:
    """Drop what a run adds that is noise in version control (timings, papermill state)."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr"
                                    and "papermill" in o.get("text", ""))]


def lint_solution(path: Path) -> list[str]:
    """Problems with a solution notebook against the lab contract (empty list: it complies)."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown" or not first.source.lstrip().startswith("# "):
        problems.append("the first cell must be a markdown header starting with '# Title'")
    else:
        for field in HEADER_FIELDS:
            if field.lower() not in first.source.lower():
                problems.append(f"header lacks the field '{field}'")
        if not GPU_TIER_LINE.search(first.source):
            problems.append("the header needs a line '**GPU tier**: validated on <GPU, date>' or "
                            "'**GPU tier**: not yet run on a GPU'")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        problems.append(f"needs exactly one cell tagged 'parameters' (found {len(params)})")
    else:
        src = params[0].source
        if not re.search(r'^PROFILE\s*=\s*"auto"', src, re.M):
            problems.append('the parameters cell must set PROFILE = "auto"')
        if not re.search(r"^MODEL\s*=\s*None", src, re.M):
            problems.append("the parameters cell must set MODEL = None")
        below = "".join(c.source for c in nb.cells[nb.cells.index(params[0]) + 1:] if c.cell_type == "code")
        if re.search(r"^(PROFILE|MODEL)\s*=", below, re.M):
            problems.append("a cell below the parameters cell overrides PROFILE or MODEL")
    from inferlab.host import COMPONENTS
    needs = lab_needs(nb)
    if not needs or not set(needs) <= set(COMPONENTS):
        problems.append(f"metadata.inferlab.needs must list what the CPU path needs, from {', '.join(COMPONENTS)} "
                        f"(found {needs})")
    try:
        learner_notebook(nb, path.name)
    except SolutionMarkerError as exc:
        problems.append(f"unbalanced solution markers: {exc}")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for names in leaked_method(cell.source):
                problems.append(f"cell {index}: a stub's message gives away its solution ({names}); state what goes "
                                "in and what comes out, and leave the method to the markdown and the check's hint")
        field = aligned_by_hand(cell.source) if cell.cell_type == "code" else None
        if field:
            problems.append(f"cell {index} aligns a table by hand ({field}); show results a learner compares "
                            "as a pandas DataFrame, units in the column names")
    regions = sum(c.source.count(BEGIN) for c in nb.cells if c.cell_type == "code")
    if regions < MIN_CHECKS:
        problems.append(f"needs at least {MIN_CHECKS} solution regions (found {regions})")
    checks = graded_checks(nb)
    if len(checks) < MIN_CHECKS:
        problems.append(f"needs at least {MIN_CHECKS} graded checks (found {len(checks)})")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and CHECK_CALL.search(cell.source) and "NBVAL_CHECK_OUTPUT" not in cell.source:
            problems.append(f"cell {index} runs a graded check but lacks '# NBVAL_CHECK_OUTPUT'")
        for output in cell.get("outputs", []):
            text = json.dumps(output.get("text", "")) + json.dumps(output.get("data", {}).get("text/plain", ""))
            if ABSOLUTE_PATH.search(text):
                problems.append(f"cell {index} has an absolute path in its committed output")
    if not any(c.cell_type == "code" and c.get("outputs") for c in nb.cells):
        problems.append("solutions are committed with the outputs of a CPU reference run; this one has none")
    return problems


def lint_learner(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            problems.append(f"{path.name} cell {index} has outputs; labs/ are generated without them")
        if BEGIN in cell.source or END in cell.source:
            problems.append(f"{path.name} cell {index} still holds a solution region")
    return problems


# ---------------------------------------------------------------- running the solutions



# ---------------------------------------------------------------- the README's lab table

def lab_title(path: Path) -> str:
    first = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0]
    return first.lstrip("# ").split("—", 1)[-1].strip()


def gpu_tier(path: Path) -> str:
    """What a lab's header says about its GPU tier ("not yet run on a GPU", "validated on ...")."""
    found = GPU_TIER_LINE.search(nbformat.read(path, as_version=4).cells[0].source)
    return found.group(1).split(". ")[0].rstrip(".") if found else "not stated"


def update_readme(readme: Path, solutions: Path, timings_path: Path) -> bool:
    """Rewrite the README's lab table from the solutions and the timing log; True when it changed."""
    from inferlab import labtimes
    labs = [(path.stem, lab_title(path), gpu_tier(path)) for path in lab_notebooks(solutions)]
    return labtimes.update_readme(readme, labs, labtimes.load(timings_path))
