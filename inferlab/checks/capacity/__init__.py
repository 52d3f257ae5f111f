"""Graded checks of lab 11, capacity planning.

The references are ``inferlab.capacity``: the trace summary, a replica's KV concurrency and the fleet with
its cost. Every case is one the notebook does not show: traces generated here with other seeds and
shapes, hand-made arrivals on window edges, layouts and prices the lab never uses.
"""
from __future__ import annotations



import numpy as np

from inferlab.capacity.fleet import fleet as reference_fleet
from inferlab.capacity import sizing, trace
from inferlab.checks import Exercise, call_case, expect, graded, is_close

LAB = "11-capacity"
GiB = 2**30


def _show(value) -> str:
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return repr(value)


# ----------------------------------------------------------------------------- the workload

SUMMARY_KEYS = ("mean_rate", "peak_rate", "peak_to_mean", "input_p50", "input_p99", "output_p50", "output_p99",
                "prefix_share")


def _hand_trace():
    import pandas as pd
    return pd.DataFrame({"arrival_s": [0.0, 1.5, 2.0, 299.9, 300.0, 300.5, 301.0, 420.0, 599.99, 900.0],
                         "input_tokens": [100, 500, 120, 900, 80, 700, 1000, 60, 400, 3000],
                         "output_tokens": [10, 200, 30, 50, 5, 90, 400, 20, 60, 700],
                         "prefix_tokens": [0, 400, 0, 800, 0, 400, 800, 0, 0, 2000]})


def _summary_cases():
    return [
        ("ten requests by hand, one on a window edge (300.0 s starts the second window)", _hand_trace(), 1200, 300),
        ("two hours of a flatter day, 60 s windows", trace.generate(trace.TraceShape(mean_rate=0.8, day_swing=0.2,
                                                                                     bursts=0, seed=7), 7200), 7200, 60),
        ("six hours with bursts and long replies, 300 s windows",
         trace.generate(trace.TraceShape(mean_rate=0.3, bursts=6, output_median=400, prefixed_share=0.3, seed=11),
                        21600), 21600, 300),
    ]


@graded(hint="mean_rate: requests over duration_s; peak_rate: the most requests in one window [k*w, (k+1)*w), "
             "divided by w; peak_to_mean: peak over mean; p50/p99: numpy's default (linear) percentile of input "
             "and of output tokens separately; prefix_share: shared-prefix tokens over all input tokens")
def check_workload_summary(summarise_workload) -> str:
    for what, frame, duration, window in _summary_cases():
        args = (frame["arrival_s"].to_numpy(), frame["input_tokens"].to_numpy(), frame["output_tokens"].to_numpy(),
                frame["prefix_tokens"].to_numpy(), duration, window)
        got = call_case(summarise_workload, args, what)
        expect(isinstance(got, dict), f"return a dict with {', '.join(SUMMARY_KEYS)} (got {type(got).__name__})")
        missing = [k for k in SUMMARY_KEYS if k not in got]
        expect(not missing, f"the summary misses {', '.join(missing)}")
        want = trace.characterise(frame, window, duration)
        for key in SUMMARY_KEYS:
            unit = " requests/s" if key.endswith("_rate") else " tokens" if key[-3:] in ("p50", "p99") else ""
            expect(is_close(got[key], want[key], rel_tol=1e-6),
                   f"{what}: {key} = {_show(got[key])}{unit}, expected {want[key]:.6g}{unit}")
    return f"{len(_summary_cases())} traces: rates, busiest window, percentiles and prefix share"


# ----------------------------------------------------------------------------- memory per replica

CONCURRENCY_CASES = [  # gpu bytes, tp, weights, overhead, kv/token, tokens/request, usable, what
    (80 * GiB, 1, 16.06e9, 1 * GiB, 131072, 3500, 0.9, "8B bf16 on one 80 GiB GPU"),
    (80 * GiB, 2, 16.06e9, 1 * GiB, 131072, 3500, 0.9, "the same on TP 2: the KV of a request splits over both GPUs"),
    (80 * GiB, 4, 141.1e9, 1 * GiB, 327680, 6000, 0.9, "70B bf16 on TP 4: each GPU holds a quarter of the weights"),
    (24 * GiB, 1, 16.06e9, 1 * GiB, 131072, 2200, 0.85, "24 GiB GPU, 85% usable: 16.5 requests is 16"),
    (24 * GiB, 1, 40.0e9, 1 * GiB, 131072, 2000, 0.9, "weights larger than the GPU: nothing fits"),
    (48 * GiB, 8, 141.1e9, 2 * GiB, 327680, 9000, 0.9, "TP 8 with 2 GiB overhead on every GPU"),
]


@graded(hint="per GPU: usable_fraction x memory - weights / tensor_parallel - overhead (every GPU pays it); the "
             "replica's KV space is tensor_parallel times that; divide by the KV of one request "
             "(kv_bytes_per_token x tokens_per_request); whole requests only; 0 when nothing is left")
def check_replica_concurrency(replica_concurrency) -> str:
    for mem, tp, weights, overhead, kv, tokens, usable, what in CONCURRENCY_CASES:
        got = call_case(replica_concurrency, (mem, tp, weights, overhead, kv, tokens, usable), what)
        want = sizing.replica_concurrency(mem, tp, weights, overhead, kv, tokens, usable)
        expect(isinstance(got, (int, np.integer)) and not isinstance(got, bool),
               f"{what}: return a whole number of requests (int), got {got!r}")
        expect(got == want, f"{what} (tp {tp}, {tokens} tokens a request): got {got} requests, expected {want}")
    return f"{len(CONCURRENCY_CASES)} layouts: TP splits weights and KV, every GPU pays its overhead, nothing fits"


# ----------------------------------------------------------------------------- fleet and cost

FLEET_CASES = [  # peak, mean, replica rate, utilisation, gpus/replica, $/gpu-h, out, in, spare, what
    (12.0, 4.0, 2.5, 0.7, 1, 3.35, 210, 970, 1, "peak 12/s on replicas of 2.5/s at 70%"),
    (40.0, 10.0, 6.0, 0.8, 2, 1.33, 300, 1500, 0, "TP 2 replicas: a replica is two GPUs"),
    (3.0, 0.5, 8.0, 0.6, 4, 2.16, 150, 400, 2, "a peak below one replica's rate: one replica, plus two spares"),
    (81.9, 21.4, 27.5, 0.7, 1, 3.35, 211, 971, 1, "the chat trace at 40x on H100"),
]


@graded(hint="serving replicas = ceil(peak_rate / (replica_rate x target_utilisation)), at least 1, then add the "
             "spares; GPUs = replicas x gpus_per_replica; $/hour = GPUs x $/GPU-hour; tokens per hour come from "
             "the MEAN rate x 3600; $/M output tokens counts output tokens only, $/M tokens input + output")
def check_fleet(fleet) -> str:
    keys = ("replicas", "gpus", "usd_per_hour", "usd_per_million_output_tokens", "usd_per_million_tokens")
    for peak, mean, rate, util, per, usd, out, inp, spare, what in FLEET_CASES:
        got = call_case(fleet, (peak, mean, rate, util, per, usd, out, inp, spare), what)
        expect(isinstance(got, dict) and all(k in got for k in keys),
               f"return a dict with {', '.join(keys)} (got {got!r})"[:300])
        want = reference_fleet(peak, mean, rate, util, per, usd, out, inp, spare)
        for key in keys:
            expect(is_close(got[key], want[key], rel_tol=1e-6),
                   f"{what}: {key} = {_show(got[key])}, expected {want[key]:.6g}")
    return f"{len(FLEET_CASES)} fleets: sized for the peak with headroom and spares, paid at the mean's tokens"


EXERCISES = [
    Exercise(check_workload_summary, ("summarise_workload",)),
    Exercise(check_replica_concurrency, ("replica_concurrency",)),
    Exercise(check_fleet, ("fleet",)),
]

