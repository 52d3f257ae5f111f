"""Lab 06 checks: each fails on the learner's stub, fails on plausible wrong answers, passes on the solution.

The functions under test come from the notebooks themselves (cells tagged ``exercise``) through
tests/nbcode.py; the wrong answers are mistakes a learner could make.
"""
import math

import numpy as np
import pytest

from inferlab import bench, metrics
from inferlab.checks import benchmarking as chk

LAB = "06-benchmarking"

EXERCISES = {"tpot": chk.check_tpot, "percentile": chk.check_percentile, "goodput": chk.check_goodput,
             "arrival_times": chk.check_arrivals}


@pytest.mark.parametrize("name", EXERCISES)
def test_solution_passes(solution, name):
    assert EXERCISES[name](solution[name]).passed


@pytest.mark.parametrize("name", EXERCISES)
def test_stub_fails(stub, name):
    verdict = EXERCISES[name](stub[name])
    assert not verdict.passed and "not implemented" in verdict.detail


def test_the_library_references_pass():
    for check, fn in ((chk.check_tpot, metrics.time_per_output_token), (chk.check_percentile, metrics.percentile),
                      (chk.check_goodput, metrics.request_goodput), (chk.check_arrivals, bench.arrival_times)):
        assert check(fn).passed


# ----------------------------------------------------------------------------- TPOT

def tpot_divides_by_all_tokens(e2el, ttft, n):
    return None if n <= 1 else (e2el - ttft) / n


def tpot_includes_ttft(e2el, ttft, n):
    return None if n <= 1 else e2el / (n - 1)


def tpot_zero_for_one_token(e2el, ttft, n):
    return 0.0 if n <= 1 else (e2el - ttft) / (n - 1)


def tpot_crashes_on_one_token(e2el, ttft, n):
    return (e2el - ttft) / (n - 1)


@pytest.mark.parametrize("wrong", [tpot_divides_by_all_tokens, tpot_includes_ttft, tpot_zero_for_one_token,
                                   tpot_crashes_on_one_token])
def test_tpot_rejects(wrong):
    assert not chk.check_tpot(wrong).passed


# ----------------------------------------------------------------------------- percentiles

def pct_nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def pct_unsorted(values, q):
    rank = (len(values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def pct_n_not_n_minus_1(values, q):
    ordered = sorted(values)
    rank = min(len(ordered) * q / 100, len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def pct_sorts_in_place(values, q):
    values.sort()
    return float(np.percentile(values, q))


def pct_lower_only(values, q):
    ordered = sorted(values)
    return ordered[int((len(ordered) - 1) * q / 100)]


def pct_mean_for_median(values, q):
    return float(np.mean(values)) if q == 50 else float(np.percentile(values, q))


@pytest.mark.parametrize("wrong", [pct_nearest_rank, pct_unsorted, pct_n_not_n_minus_1, pct_sorts_in_place,
                                   pct_lower_only, pct_mean_for_median])
def test_percentile_rejects(wrong):
    assert not chk.check_percentile(wrong).passed


# ----------------------------------------------------------------------------- goodput

def _good(r, slo, tpot_of_one=0.0, strict=False, scale=1000):
    per = metrics.time_per_output_token(r.latency, r.ttft, r.output_tokens)
    values = {"ttft": r.ttft * scale, "tpot": (tpot_of_one if per is None else per) * scale, "e2el": r.latency * scale}
    return all((values[k] < v) if strict else (values[k] <= v) for k, v in slo.items())


def gp_throughput(records, slo, duration):
    return sum(r.success for r in records) / duration


def gp_counts_failures(records, slo, duration):
    return sum((not r.success) or _good(r, slo) for r in records) / duration


def gp_one_token_fails_tpot(records, slo, duration):
    return sum(r.success and _good(r, slo, tpot_of_one=math.inf) for r in records) / duration


def gp_strict_limits(records, slo, duration):
    return sum(r.success and _good(r, slo, strict=True) for r in records) / duration


def gp_seconds_vs_ms(records, slo, duration):
    return sum(r.success and _good(r, slo, scale=1) for r in records) / duration


def gp_attainment(records, slo, duration):
    return sum(r.success and _good(r, slo) for r in records) / len(records)


def gp_only_ttft(records, slo, duration):
    return sum(r.success and r.ttft * 1000 <= slo.get("ttft", math.inf) for r in records) / duration


@pytest.mark.parametrize("wrong", [gp_throughput, gp_counts_failures, gp_one_token_fails_tpot, gp_strict_limits,
                                   gp_seconds_vs_ms, gp_attainment, gp_only_ttft])
def test_goodput_rejects(wrong):
    assert not chk.check_goodput(wrong).passed


# ----------------------------------------------------------------------------- arrivals

def arr_scale_ignores_shape(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.zeros(n)
    gaps = np.random.default_rng(seed).gamma(shape=k, scale=1 / rate, size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def arr_always_poisson(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.zeros(n)
    gaps = np.random.default_rng(seed).exponential(1 / rate, size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def arr_shape_inverted(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.zeros(n)
    gaps = np.random.default_rng(seed).gamma(shape=1 / k, scale=k / rate, size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def arr_gaps_not_times(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.zeros(n)
    return np.concatenate([[0.0], np.random.default_rng(seed).gamma(k, 1 / (rate * k), size=n - 1)])


def arr_rate_as_gap(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.zeros(n)
    gaps = np.random.default_rng(seed).gamma(shape=k, scale=rate / k, size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def arr_unseeded(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.zeros(n)
    gaps = np.random.default_rng().gamma(shape=k, scale=1 / (rate * k), size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def arr_first_after_a_gap(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.zeros(n)
    return np.cumsum(np.random.default_rng(seed).gamma(shape=k, scale=1 / (rate * k), size=n))


def arr_regular(n, rate, k=1.0, seed=0):
    return np.zeros(n) if math.isinf(rate) else np.arange(n) / rate


def arr_inf_is_one_per_second(n, rate, k=1.0, seed=0):
    if math.isinf(rate):
        return np.arange(float(n))
    gaps = np.random.default_rng(seed).gamma(shape=k, scale=1 / (rate * k), size=n - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


@pytest.mark.parametrize("wrong", [arr_scale_ignores_shape, arr_always_poisson, arr_shape_inverted, arr_gaps_not_times,
                                   arr_rate_as_gap, arr_unseeded, arr_first_after_a_gap, arr_regular, arr_inf_is_one_per_second])
def test_arrivals_rejects(wrong):
    assert not chk.check_arrivals(wrong).passed
