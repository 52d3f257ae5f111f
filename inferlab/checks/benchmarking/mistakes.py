"""Lab 06's catalogue: answers a learner could write, and what the checks must say to each."""
from __future__ import annotations

import math

import numpy as np

from inferlab import bench, metrics
from inferlab.checks import right, wrong
from inferlab.checks.benchmarking import check_arrivals, check_goodput, check_percentile, check_tpot


def tpot_divides_by_all_tokens(e2el, ttft, n):
    return None if n <= 1 else (e2el - ttft) / n


def tpot_includes_ttft(e2el, ttft, n):
    return None if n <= 1 else e2el / (n - 1)


def tpot_zero_for_one_token(e2el, ttft, n):
    return 0.0 if n <= 1 else (e2el - ttft) / (n - 1)


def tpot_crashes_on_one_token(e2el, ttft, n):
    return (e2el - ttft) / (n - 1)


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


CATALOGUE = [
    wrong(check_tpot, "over the output_tokens - 1 after it", tpot_divides_by_all_tokens),
    wrong(check_tpot, "that includes the TTFT", tpot_includes_ttft),
    wrong(check_tpot, "return None", tpot_zero_for_one_token),
    wrong(check_tpot, "ZeroDivisionError", tpot_crashes_on_one_token),
    right(check_tpot, metrics.time_per_output_token, label="library-reference"),
    wrong(check_percentile, "nearest-rank", pct_nearest_rank),
    wrong(check_percentile, "sort (a copy) first", pct_unsorted),
    wrong(check_percentile, "not n * q / 100", pct_n_not_n_minus_1),
    wrong(check_percentile, "sort a copy", pct_sorts_in_place),
    wrong(check_percentile, "interpolate with the one above", pct_lower_only),
    wrong(check_percentile, "not the mean", pct_mean_for_median),
    right(check_percentile, metrics.percentile, label="library-reference"),
    wrong(check_goodput, "every successful request counted", gp_throughput),
    wrong(check_goodput, "a failed request is never good", gp_counts_failures),
    wrong(check_goodput, "it has no TPOT, which counts as 0", gp_one_token_fails_tpot),
    wrong(check_goodput, "the limits are inclusive", gp_strict_limits),
    wrong(check_goodput, "(in ms; the records' times are in seconds)", gp_seconds_vs_ms),
    wrong(check_goodput, "(attainment)", gp_attainment),
    wrong(check_goodput, "only TTFT was compared", gp_only_ttft),
    right(check_goodput, metrics.request_goodput, label="library-reference"),
    wrong(check_arrivals, "the mean gap is 0.009984 s, expected 1/rate", arr_scale_ignores_shape),
    wrong(check_arrivals, "coefficient of variation is 1, expected", arr_always_poisson),
    wrong(check_arrivals, "coefficient of variation is 0.5, expected", arr_shape_inverted),
    wrong(check_arrivals, "add up the gaps", arr_gaps_not_times),
    wrong(check_arrivals, "expected 1/rate = 0.5 s", arr_rate_as_gap),
    wrong(check_arrivals, "the same seed must give the same arrivals", arr_unseeded),
    wrong(check_arrivals, "the first request should be sent at 0 s", arr_first_after_a_gap),
    wrong(check_arrivals, "coefficient of variation is 0, expected", arr_regular),
    wrong(check_arrivals, "an infinite rate sends every request at once", arr_inf_is_one_per_second),
    right(check_arrivals, bench.arrival_times, label="library-reference"),
]
