"""The lab contract, checked on every committed notebook, and labs/ in sync with solutions/."""
from pathlib import Path

import nbformat
import pytest

from inferlab import authoring, labtimes

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = authoring.lab_notebooks(REPO / "solutions")


def test_there_are_solutions_and_each_has_a_lab():
    assert SOLUTIONS, "no solution notebooks found"
    assert [p.name for p in SOLUTIONS] == [p.name for p in authoring.lab_notebooks(REPO / "labs")]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_meets_the_lab_contract(path):
    assert authoring.lint_solution(path) == []


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_has_a_chapter(path):
    assert (REPO / "content" / f"{path.stem}.md").is_file()


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_learner_notebook_has_no_outputs_and_no_solutions(path):
    assert authoring.lint_learner(REPO / "labs" / path.name) == []


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_cells_are_tagged_so_tests_can_load_them(path):
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and authoring.BEGIN in cell.source:
            assert "exercise" in cell.metadata.get("tags", []), f"cell {index} holds a solution region but is not tagged 'exercise'"


def test_labs_are_in_sync_with_solutions(tmp_path):
    authoring.generate_labs(REPO / "solutions", tmp_path)
    stale = [p.name for p in SOLUTIONS
             if (tmp_path / p.name).read_bytes() != (REPO / "labs" / p.name).read_bytes()]
    assert not stale, f"labs/ is stale for {stale}: run `make labs` and commit"


def test_check_names_are_unique_across_labs():
    seen = {}
    for path in SOLUTIONS:
        for name in authoring.graded_checks(nbformat.read(path, as_version=4)):
            assert name not in seen, f"{name} is used by {seen.get(name)} and {path.name}"
            seen[name] = path.name


def test_readme_lab_table_is_built_from_the_timing_log(tmp_path):
    copy = tmp_path / "README.md"
    copy.write_text((REPO / "README.md").read_text())
    changed = authoring.update_readme(copy, REPO / "solutions", REPO / authoring.TIMINGS)
    assert not changed, "README's lab table is stale: run `make labs` (or `make reference`) and commit"
    for path in SOLUTIONS:
        assert f"labs/{path.name}" in copy.read_text()


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_header_time_is_the_measured_one(path):
    log = labtimes.load(REPO / authoring.TIMINGS)
    assert path.stem in log, f"{path.stem} has no measured time: run `make reference`"
    header = nbformat.read(path, as_version=4).cells[0].source
    assert labtimes.time_line(log[path.stem]) in header, \
        "the header's **Time** line differs from timings/cpu-reference.json: run `make reference` for this lab"


def test_every_recorded_time_names_its_host():
    """CPU model, ISA class and cores on every run, and the reference run is the AVX2 one where there is one."""
    from inferlab.host import ISA_CLASSES, ISA_NAMES
    for lab, entry in labtimes.load(REPO / authoring.TIMINGS).items():
        assert entry["runs"], lab
        for isa, run in entry["runs"].items():
            assert isa in ISA_CLASSES and ISA_NAMES[isa] in run["host"] and " cores" in run["host"], (lab, run)
            assert run["seconds"] > 0 and run["probe"] > 0, (lab, run)
        assert entry["isa"] == ("avx2" if "avx2" in entry["runs"] else entry["isa"])
        assert entry["seconds"] == entry["runs"][entry["isa"]]["seconds"]
