"""Graded checks of lab 06, benchmarking and goodput.

The references are ``inferlab.bench`` (the same definitions as vLLM's serving benchmark). Every
check uses inputs the notebook does not: unsorted samples with ties, percentiles between ranks,
requests that failed, one-token outputs, objectives on a subset of the metrics, answers exactly
on a limit, and arrival processes at rates and burstiness factors other than the lab's.
"""
from __future__ import annotations

import math

import numpy as np

from inferlab import bench, metrics
from inferlab.checks import CheckFailed, Exercise, expect, graded, is_close

LAB = "06-benchmarking"


# ----------------------------------------------------------------------------- TPOT

@graded(hint="TPOT spreads the decode time (E2EL - TTFT) over the tokens after the first: "
             "divide by output_tokens - 1, and return None when there is at most one token")
def check_tpot(tpot) -> str:
    cases = [  # (e2el s, ttft s, output tokens) -> expected, written out
        ((2.0, 0.5, 16), 0.1),
        ((3.3, 0.3, 2), 3.0),
        ((1.25, 0.25, 101), 0.01),
        ((0.9, 0.9, 1), None),        # one token: nothing after the first
        ((0.4, 0.4, 0), None),        # nothing generated
    ]
    for (e2el, ttft, n), expected in cases:
        got = tpot(e2el, ttft, n)
        if expected is None:
            expect(got is None, f"tpot(e2el={e2el}, ttft={ttft}, output_tokens={n}) returned {got!r}; "
                                "with at most one token there is no time per output token: return None")
        elif not is_close(got, expected):
            why = ""
            if is_close(got, (e2el - ttft) / n):
                why = "; the first token's time is in TTFT, so spread E2EL - TTFT over the output_tokens - 1 after it"
            elif is_close(got, e2el / (n - 1)):
                why = "; that includes the TTFT: subtract it from E2EL first"
            raise CheckFailed(f"tpot(e2el={e2el}, ttft={ttft}, output_tokens={n}) = {got!r}, expected {expected}{why}")
    return f"{len(cases)} requests, one- and zero-token outputs included"


# ----------------------------------------------------------------------------- percentiles

PERCENTILE_CASES = [
    ([7.0, 1.0, 3.0, 5.0], (0, 25, 50, 90, 100)),                      # unsorted, even length
    ([0.31, 0.12, 0.12, 0.95, 0.40, 0.33, 2.70], (50, 90, 99, 99.9)),   # ties, a long tail
    ([42.0], (0, 50, 99)),                                               # a single sample
    (list(np.linspace(10, 1, 10) ** 2), (10, 33.3, 75, 95)),             # descending input
]


@graded(hint="sort a copy, take rank = (n - 1) * q / 100 and interpolate linearly between the samples "
             "at floor(rank) and floor(rank) + 1 -- numpy.percentile's default")
def check_percentile(percentile) -> str:
    cases = [(values, q) for values, qs in PERCENTILE_CASES for q in qs]
    got = []
    for values, q in cases:
        given = list(values)
        got.append(percentile(given, q))
        expect(given == list(values), "percentile() changed the list it was given; sort a copy instead")
    for value, (values, q) in zip(got, cases):
        expected = float(np.percentile(values, q))
        expect(is_close(value, expected, abs_tol=1e-12),
               f"percentile({[round(v, 3) for v in values]}, {q}) = {value!r}, expected {expected:.6g}"
               + _percentile_diagnosis(got, cases))
    return f"{len(cases)} percentiles, interpolated between ranks"


def _percentile_diagnosis(got: list, cases: list) -> str:
    """Names the mistake when the answers match one plausible variant on every case."""
    def interpolate(ordered, rank):
        low = min(int(rank), len(ordered) - 1)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    variants = {
        "that is the nearest-rank percentile; interpolate between the samples around rank (n - 1) * q / 100":
            lambda v, q: sorted(v)[max(0, math.ceil(q / 100 * len(v)) - 1)],
        "you read the samples in the order given: sort (a copy) first":
            lambda v, q: interpolate(v, (len(v) - 1) * q / 100),
        "rank = (n - 1) * q / 100 (0 is the smallest sample, n - 1 the largest), not n * q / 100":
            lambda v, q: interpolate(sorted(v), min(len(v) * q / 100, len(v) - 1)),
        "that is the sample at or below the rank: interpolate with the one above it":
            lambda v, q: sorted(v)[int((len(v) - 1) * q / 100)],
        "the 50th percentile is the median, not the mean":
            lambda v, q: float(np.mean(v)) if q == 50 else float(np.percentile(v, q)),
    }
    for why, variant in variants.items():
        if all(is_close(value, variant(v, q), abs_tol=1e-12) for value, (v, q) in zip(got, cases)):
            return f" -- {why}"
    return ""


# ----------------------------------------------------------------------------- goodput

def _rec(success=True, ttft=None, latency=None, output_tokens=0) -> bench.RequestRecord:
    return bench.RequestRecord(index=0, prompt_len=8, success=success, ttft=ttft, latency=latency,
                               output_tokens=output_tokens, error="" if success else "HTTP 500")


def goodput_cases():
    """(records, slo in ms, duration s, expected requests/s). TPOT of each record = (latency - ttft)/(n - 1)."""
    records = [
        _rec(ttft=0.25, latency=1.25, output_tokens=11),    # ttft and tpot (0.100) both exactly on the limit
        _rec(ttft=0.125, latency=0.625, output_tokens=11),  # tpot 0.05
        _rec(ttft=0.30, latency=0.80, output_tokens=11),    # ttft too slow; tpot 0.05
        _rec(ttft=0.10, latency=2.10, output_tokens=11),    # tpot 0.2: too slow
        _rec(ttft=0.15, latency=0.15, output_tokens=1),     # one token: TPOT counts as 0
        _rec(success=False),                                  # failed: never good
        _rec(success=False),
    ]
    return [
        (records, {"ttft": 250.0, "tpot": 100.0}, 2.0, 3 / 2.0),
        (records, {"ttft": 250.0}, 4.0, 4 / 4.0),            # TPOT not an objective now
        (records, {"tpot": 60.0}, 0.5, 3 / 0.5),             # two at 0.05 and the one-token request
        (records, {"e2el": 800.0}, 10.0, 3 / 10.0),
        (records[5:], {"ttft": 1000.0}, 1.0, 0.0),           # nothing succeeded
    ]


@graded(hint="a request is good when it succeeded and meets every objective given (ttft, tpot, e2el in ms, "
             "limits inclusive; a one-token output has TPOT 0); goodput = good requests / duration in seconds")
def check_goodput(goodput) -> str:
    cases = goodput_cases()
    got = [goodput(records, slo, duration) for records, slo, duration, _ in cases]
    for value, (records, slo, duration, expected) in zip(got, cases):
        if not is_close(value, expected, abs_tol=1e-12):
            raise CheckFailed(f"goodput(..., slo={slo}, duration={duration}) = {value!r} req/s, expected "
                              f"{expected:g} (records: {len(records)}, of which {sum(not r.success for r in records)} "
                              f"failed)" + _goodput_diagnosis(got, cases))
    return "5 objective sets: failures, a one-token output and answers on the limit included"


def _goodput_diagnosis(got: list, cases: list) -> str:
    """Names the mistake when the answers match one plausible variant on every case."""
    def good(r, slo, *, tpot_of_one=0.0, strict=False, scale=1000.0, only=None):
        per = metrics.time_per_output_token(r.latency, r.ttft, r.output_tokens)
        values = {"ttft": r.ttft * scale, "tpot": (tpot_of_one if per is None else per) * scale,
                  "e2el": r.latency * scale}
        return all((values[k] < v) if strict else (values[k] <= v) for k, v in slo.items() if only in (None, k))

    variants = {
        "every successful request counted as good: a good request also meets every objective (in ms; "
        "the records' times are in seconds)":
            lambda rs, slo, d: sum(r.success for r in rs) / d,
        "failed requests counted: a failed request is never good":
            lambda rs, slo, d: sum((not r.success) or good(r, slo) for r in rs) / d,
        "a one-token output failed the TPOT objective: it has no TPOT, which counts as 0":
            lambda rs, slo, d: sum(r.success and good(r, slo, tpot_of_one=math.inf) for r in rs) / d,
        "requests exactly on an objective were not counted: the limits are inclusive":
            lambda rs, slo, d: sum(r.success and good(r, slo, strict=True) for r in rs) / d,
        "that is the share of good requests (attainment); goodput is good requests per second":
            lambda rs, slo, d: sum(r.success and good(r, slo) for r in rs) / len(rs),
        "only TTFT was compared: a good request meets every objective given":
            lambda rs, slo, d: sum(r.success and good(r, slo, only="ttft") for r in rs) / d,
    }
    for why, variant in variants.items():
        if all(is_close(value, variant(rs, slo, d), abs_tol=1e-12) for value, (rs, slo, d, _) in zip(got, cases)):
            return f" -- {why}"
    return ""


# ----------------------------------------------------------------------------- arrivals

ARRIVAL_CASES = [(2.0, 1.0), (25.0, 0.25), (0.5, 4.0)]   # (requests/s, burstiness)
ARRIVAL_N = 40_001


@graded(hint="gaps ~ Gamma(shape=burstiness, scale=1/(rate*burstiness)) from np.random.default_rng(seed); "
             "the first request goes at 0 and each later one after the sum of the gaps before it; inf -> all 0")
def check_arrivals(arrival_times) -> str:
    for rate, k in ARRIVAL_CASES:
        times = np.asarray(arrival_times(ARRIVAL_N, rate, k, 11), dtype=float)
        expect(times.shape == (ARRIVAL_N,), f"arrival_times({ARRIVAL_N}, ...) returned shape {times.shape}, "
                                            f"expected ({ARRIVAL_N},): one time per request")
        expect(times[0] == 0.0, f"the first request should be sent at 0 s, not {times[0]:.4g}")
        gaps = np.diff(times)
        expect(bool(np.all(gaps >= 0)), "arrival times must never go back: add up the gaps (a running sum)")
        mean, cv = gaps.mean(), gaps.std() / gaps.mean()
        expect(math.isclose(mean, 1 / rate, rel_tol=0.03),
               f"at {rate:g} requests/s with burstiness {k:g} the mean gap is {mean:.4g} s, "
               f"expected 1/rate = {1 / rate:.4g} s")
        expect(math.isclose(cv, 1 / math.sqrt(k), rel_tol=0.06),
               f"at burstiness {k:g} the gaps' coefficient of variation is {cv:.3g}, expected "
               f"1/sqrt(burstiness) = {1 / math.sqrt(k):.3g} (the shape of the gamma sets how bursty it is)")
    again = np.asarray(arrival_times(50, 3.0, 1.0, 5), dtype=float)
    expect(np.array_equal(again, np.asarray(arrival_times(50, 3.0, 1.0, 5), dtype=float)),
           "the same seed must give the same arrivals: draw from np.random.default_rng(seed)")
    expect(not np.array_equal(again, np.asarray(arrival_times(50, 3.0, 1.0, 6), dtype=float)),
           "different seeds gave the same arrivals: use the seed argument")
    burst = np.asarray(arrival_times(8, math.inf, 1.0, 0), dtype=float)
    expect(burst.shape == (8,) and bool(np.all(burst == 0)),
           "an infinite rate sends every request at once: all arrival times 0")
    return f"{len(ARRIVAL_CASES)} (rate, burstiness) pairs: mean gap and coefficient of variation; seeds; inf"


__all__ = ["check_tpot", "check_percentile", "check_goodput", "check_arrivals", "CheckFailed"]


EXERCISES = [
    Exercise(check_tpot, ("tpot",)),
    Exercise(check_percentile, ("percentile",)),
    Exercise(check_goodput, ("goodput",)),
    Exercise(check_arrivals, ("arrival_times",)),
]
