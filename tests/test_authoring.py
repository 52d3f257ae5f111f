"""Solution regions become stubs; learner notebooks carry no outputs; generation is stable."""
import nbformat
import pytest

from inferlab import authoring


def test_region_becomes_stub_at_its_indentation_with_the_hint():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION square it\n    return x * x\n    ### END SOLUTION\n"
    out = authoring.stub_source(src)
    assert out == "def f(x):\n    y = 1\n    raise NotImplementedError('Exercise: square it')\n"
    namespace = {}
    exec(out, namespace)
    with pytest.raises(NotImplementedError, match="square it"):
        namespace["f"](3)


def test_region_without_hint_gets_a_generic_one_and_code_outside_is_kept():
    src = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3"
    assert authoring.stub_source(src) == "a = 1\nraise NotImplementedError('Exercise: write your solution here')\nc = 3"


@pytest.mark.parametrize("src, problem", [
    ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
    ("x = 1\n### END SOLUTION\n", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
])
def test_unbalanced_markers_are_errors(src, problem):
    with pytest.raises(authoring.SolutionMarkerError, match=problem):
        authoring.stub_source(src)


def _solution_nb():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION")
    cell.outputs = [nbformat.v4.new_output("stream", text="42\n")]
    cell.execution_count = 3
    cell.metadata["papermill"] = {"duration": 1.0}
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), cell]
    nb.metadata["papermill"] = {"parameters": {}}
    return nb


def test_learner_notebook_has_stubs_and_no_outputs_or_run_metadata():
    solution = _solution_nb()
    learner = authoring.learner_notebook(solution)
    code = learner.cells[1]
    assert code.outputs == [] and code.execution_count is None
    assert "papermill" not in code.metadata and "papermill" not in learner.metadata
    assert "return 42" not in code.source and "NotImplementedError" in code.source
    assert solution.cells[1].outputs, "the solution itself must not be modified"


def test_generate_labs_is_idempotent(tmp_path):
    sol, labs = tmp_path / "solutions", tmp_path / "labs"
    sol.mkdir()
    nbformat.write(_solution_nb(), sol / "01-demo.ipynb")
    assert authoring.generate_labs(sol, labs) == [labs / "01-demo.ipynb"]
    first = (labs / "01-demo.ipynb").read_bytes()
    assert authoring.generate_labs(sol, labs) == []
    assert (labs / "01-demo.ipynb").read_bytes() == first


def test_graded_checks_are_found_in_order_once():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("chk.check_b(f)\nchk.check_a(g)"), nbformat.v4.new_code_cell("chk.check_b(f)")]
    assert authoring.graded_checks(nb) == ["check_b", "check_a"]


def test_lint_reports_contract_violations(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Lab 99\nLearning objectives"),
                nbformat.v4.new_code_cell('PROFILE = "cpu"\nMODEL = None', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("chk.check_one(f)")]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="saved to /home/alice/x\n")]
    path = tmp_path / "99-bad.ipynb"
    nbformat.write(nb, path)
    problems = "\n".join(authoring.lint_solution(path))
    for expected in ("Prerequisites", 'PROFILE = "auto"', "at least 3 graded checks", "How to work",
                     "at least 3 solution regions", "NBVAL_CHECK_OUTPUT", "absolute path", "**GPU tier**"):
        assert expected in problems


@pytest.mark.parametrize("source,aligned", [('print(f"{name:<24}{n:>10,}")', True), ('f"{x:9,}"', True),
                                            ("f'{t:>4} {p:6.1%}'", True), ('f"{x:10.2f}"', True),
                                            ('print(f"{p:.1%} of {n:,} B")', False), ('f"{value!r}"', False),
                                            ('f"{x:.2f} ms"', False), ('d = {"ttft": 250, "x": 10}', False),
                                            ('"{:>10}".format(x)', False)])
def test_a_table_aligned_by_hand_is_found(source, aligned):
    assert bool(authoring.aligned_by_hand(source)) == aligned


@pytest.mark.parametrize("line,ok", [("**GPU tier**: not yet run on a GPU.", True),
                                     ("**GPU tier**: validated on 1x H100 80GB, 2026-12-01", True),
                                     ("**GPU tier**: should work", False), ("GPU tier: not yet run on a GPU", False)])
def test_the_gpu_tier_line_says_where_it_ran_or_that_it_did_not(line, ok):
    assert bool(authoring.GPU_TIER_LINE.search(f"# Lab\n\n{line}\n")) == ok


def test_a_stub_message_that_dictates_the_solution_is_flagged():
    dictating = ('def weight_bytes(model):\n    """Bytes of the parameters."""\n'
                 '    ### BEGIN SOLUTION sum numel() * element_size() over model.parameters()\n'
                 '    return sum(p.numel() * p.element_size() for p in model.parameters())\n    ### END SOLUTION')
    contract = dictating.replace("sum numel() * element_size() over model.parameters()",
                                 "return an int: bytes of the parameters, a shared tensor counted once")
    assert authoring.leaked_method(dictating) == ["element_size, numel, sum"]   # "parameters" is in the docstring
    assert authoring.leaked_method(contract) == []
    shown = contract.replace('"""Bytes of the parameters."""', '"""Bytes of model.parameters()."""').replace(
        "return an int", "return an int from parameters()")
    assert authoring.leaked_method(shown) == []        # what the cell already shows is not a leak
