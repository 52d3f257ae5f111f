"""Interleaved timing: every case once per round, alternating order, spread reported."""
import pytest

from inferlab import timing


def test_rounds_interleave_the_cases_and_alternate_their_order():
    calls = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = timing.interleaved(cases, repeats=4, warmup=1)
    assert calls == list("abc") + list("abc") + list("cba") + list("abc") + list("cba")
    assert {k: len(v) for k, v in samples.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t >= 0 for v in samples.values() for t in v)


def test_a_load_that_lasts_the_whole_cell_slows_every_case_alike():
    """A slow spell in round 2 inflates both cases of that round: their ratio stays put, the verdict warns."""
    samples = {"fast": [1.0, 5.0, 1.0], "slow": [3.0, 15.0, 3.0]}
    assert timing.ratios(samples["slow"], samples["fast"]) == [3.0, 3.0, 3.0]
    assert timing.spread(samples["fast"]) == pytest.approx(4.0)
    assert "too noisy" in timing.verdict(samples)


def test_steady_timings_are_declared_comparable():
    samples = {"a": [0.010, 0.011, 0.0105], "b": [0.100, 0.102, 0.099]}
    line = timing.verdict(samples)
    assert line.startswith("timings are steady") and "3 interleaved rounds" in line


def test_a_comparison_survives_drift_that_moves_both_sides():
    """The whole machine slows in round 2 (spread 300 %), but every round agrees on the ratio: steady."""
    samples = {"fast": [1.0, 4.0, 1.1], "slow": [3.0, 12.0, 3.2]}
    assert "too noisy" in timing.verdict(samples)                              # judged case by case
    line = timing.verdict(samples, pairs=[("slow", "fast")])
    assert line.startswith("comparison is steady") and "interleaving cancels" in line


def test_a_comparison_whose_ratio_moves_is_too_noisy():
    samples = {"fast": [1.0, 1.0, 1.0], "slow": [3.0, 6.0, 3.0]}
    line = timing.verdict(samples, pairs=[("slow", "fast")])
    assert line.startswith("too noisy to conclude: the ratio slow / fast varied by")


def test_a_noisy_case_is_named_with_what_to_do():
    samples = {"a": [0.010, 0.011, 0.0105], "b": [0.100, 0.300, 0.099]}
    line = timing.verdict(samples)
    assert line.startswith("too noisy to conclude: b varied by")
    assert "re-run this cell" in line


def test_the_summary_is_a_table_with_units():
    table = timing.summarize({"a": [0.001, 0.003, 0.002]})
    assert list(table.columns) == ["median (ms)", "min (ms)", "max (ms)", "spread (%)", "runs"]
    assert table.loc["a", "median (ms)"] == pytest.approx(2.0)
    assert table.loc["a", "spread (%)"] == pytest.approx(100.0)


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        timing.interleaved({"a": lambda: None}, repeats=0)
