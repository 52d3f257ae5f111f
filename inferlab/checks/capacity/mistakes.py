"""Lab 11's catalogue: answers a learner could write, and what the checks must say to each."""
from __future__ import annotations

import math

import numpy as np

from inferlab.checks import right, wrong
from inferlab.checks.capacity import check_fleet, check_replica_concurrency, check_workload_summary


# ----------------------------------------------------------------------------- the workload

def _summary(arrivals, inputs, outputs, prefixes, duration_s, window_s, *, mean=None, peak=None, pct="linear",
             share=None, ratio=None):
    arrivals, inputs, outputs = (np.asarray(x, dtype=float) for x in (arrivals, inputs, outputs))
    mean_rate = mean(arrivals, duration_s) if mean else arrivals.size / duration_s
    peak_rate = peak(arrivals, window_s) if peak else np.bincount((arrivals // window_s).astype(int)).max() / window_s
    return {"mean_rate": mean_rate, "peak_rate": peak_rate,
            "peak_to_mean": ratio(peak_rate, mean_rate) if ratio else peak_rate / mean_rate,
            "input_p50": np.percentile(inputs, 50, method=pct), "input_p99": np.percentile(inputs, 99, method=pct),
            "output_p50": np.percentile(outputs, 50, method=pct), "output_p99": np.percentile(outputs, 99, method=pct),
            "prefix_share": share(prefixes, inputs) if share else float(np.sum(prefixes) / inputs.sum())}


def summary_mean_over_span(*a):
    return _summary(*a, mean=lambda t, d: t.size / (t.max() - t.min()))


def summary_peak_from_gaps(*a):
    return _summary(*a, peak=lambda t, w: 1 / np.diff(np.sort(t))[np.diff(np.sort(t)) > 0].min())


def summary_peak_per_window(*a):
    return _summary(*a, peak=lambda t, w: float(np.bincount((t // w).astype(int)).max()))     # requests per window


def summary_peak_sliding(*a):
    def sliding(t, w):
        t = np.sort(t)
        return max(np.searchsorted(t, x + w, side="left") - i for i, x in enumerate(t)) / w
    return _summary(*a, peak=sliding)


def summary_ratio_inverted(*a):
    return _summary(*a, ratio=lambda peak, mean: mean / peak)


def summary_nearest_rank(*a):
    return _summary(*a, pct="nearest")


def summary_prefix_by_requests(*a):
    return _summary(*a, share=lambda p, i: float(np.mean(np.asarray(p) > 0)))


def summary_lengths_pooled(arrivals, inputs, outputs, prefixes, duration_s, window_s):
    out = _summary(arrivals, inputs, outputs, prefixes, duration_s, window_s)
    both = np.concatenate([np.asarray(inputs), np.asarray(outputs)])
    out.update(input_p99=np.percentile(both, 99), output_p99=np.percentile(both, 99))
    return out


def summary_with_pandas(arrivals, inputs, outputs, prefixes, duration_s, window_s):
    """A correct answer: pandas groupby on the window index, quantile for the percentiles."""
    import pandas as pd
    df = pd.DataFrame({"t": arrivals, "inp": inputs, "out": outputs, "pre": prefixes})
    per_window = df.groupby((df["t"] // window_s).astype(int)).size()
    mean_rate = len(df) / duration_s
    peak = per_window.max() / window_s
    return {"mean_rate": mean_rate, "peak_rate": peak, "peak_to_mean": peak / mean_rate,
            "input_p50": df["inp"].quantile(0.5), "input_p99": df["inp"].quantile(0.99),
            "output_p50": df["out"].quantile(0.5), "output_p99": df["out"].quantile(0.99),
            "prefix_share": df["pre"].sum() / df["inp"].sum()}


# ----------------------------------------------------------------------------- memory per replica

def _held(mem, tp, weights, overhead, kv, tokens, usable, *, weights_split=True, overhead_each=True, kv_split=True,
          use_usable=True, rounding=math.floor, clamp=True):
    free = (usable if use_usable else 1.0) * mem - weights / (tp if weights_split else 1) \
        - (overhead if overhead_each else overhead / tp)
    if clamp and free <= 0:
        return 0
    return int(rounding(free * (tp if kv_split else 1) / (kv * tokens)))


def held_weights_whole(*a):
    return _held(*a, weights_split=False)


def held_overhead_once(*a):
    return _held(*a, overhead_each=False)


def held_one_gpu_of_kv(*a):
    return _held(*a, kv_split=False)


def held_all_memory(*a):
    return _held(*a, use_usable=False)


def held_rounded(*a):
    return _held(*a, rounding=round)


def held_negative(*a):
    return _held(*a, clamp=False)


def held_float(mem, tp, weights, overhead, kv, tokens, usable):
    return max(0.0, (usable * mem - weights / tp - overhead) * tp / (kv * tokens))


def held_per_gpu_first(mem, tp, weights, overhead, kv, tokens, usable):
    """A correct answer: the replica's pool of memory first, then its fixed costs, integer division."""
    pool = usable * mem * tp - weights - overhead * tp
    return max(0, int(pool // (kv * tokens)))


# ----------------------------------------------------------------------------- fleet and cost

def _fleet(peak, mean, rate, util, per, usd, out, inp, spare, *, size_for=None, headroom="divide", spares=True,
           per_gpu=True, tokens_rate=None, hours=3600, count_input=False, rounding=math.ceil):
    load = peak if size_for is None else size_for(peak, mean)
    capacity = rate * util if headroom == "divide" else rate / util if headroom == "multiply" else rate
    serving = max(1, rounding(load / capacity))
    replicas = serving + (spare if spares else 0)
    gpus = replicas * per
    usd_per_hour = (gpus if per_gpu else replicas) * usd
    served = (mean if tokens_rate is None else tokens_rate(peak, mean)) * hours
    output_per_hour = served * (out + (inp if count_input else 0))
    return {"replicas": replicas, "gpus": gpus, "usd_per_hour": usd_per_hour,
            "usd_per_million_output_tokens": usd_per_hour / output_per_hour * 1e6,
            "usd_per_million_tokens": usd_per_hour / (served * (out + inp)) * 1e6}


def fleet_for_mean(*a):
    return _fleet(*a, size_for=lambda peak, mean: mean)


def fleet_no_headroom(*a):
    return _fleet(*a, headroom="none")


def fleet_headroom_inverted(*a):
    return _fleet(*a, headroom="multiply")


def fleet_no_spares(*a):
    return _fleet(*a, spares=False)


def fleet_priced_per_replica(*a):
    return _fleet(*a, per_gpu=False)


def fleet_tokens_at_peak(*a):
    return _fleet(*a, tokens_rate=lambda peak, mean: peak)


def fleet_tokens_per_second(*a):
    return _fleet(*a, hours=1)


def fleet_counts_input(*a):
    return _fleet(*a, count_input=True)


def fleet_rounded(*a):
    return _fleet(*a, rounding=round)


def fleet_by_adding(peak, mean, rate, util, per, usd, out, inp, spare):
    """A correct answer: add replicas until the peak fits under the utilisation target."""
    serving = 1
    while serving * rate * util < peak:
        serving += 1
    gpus = (serving + spare) * per
    cost = gpus * usd
    per_hour = mean * 3600
    return {"replicas": serving + spare, "gpus": gpus, "usd_per_hour": cost,
            "usd_per_million_output_tokens": cost / (per_hour * out / 1e6),
            "usd_per_million_tokens": cost / (per_hour * (out + inp) / 1e6)}


CATALOGUE = [
    wrong(check_workload_summary, "mean_rate", summary_mean_over_span),
    wrong(check_workload_summary, "peak_rate", summary_peak_from_gaps),
    wrong(check_workload_summary, "peak_rate = 5 requests/s", summary_peak_per_window),
    wrong(check_workload_summary, "peak_rate", summary_peak_sliding),
    wrong(check_workload_summary, "peak_to_mean", summary_ratio_inverted),
    wrong(check_workload_summary, "input_p50", summary_nearest_rank),
    wrong(check_workload_summary, "prefix_share", summary_prefix_by_requests),
    wrong(check_workload_summary, "input_p99", summary_lengths_pooled),
    right(check_workload_summary, summary_with_pandas),

    wrong(check_replica_concurrency, "TP 2", held_weights_whole),
    wrong(check_replica_concurrency, "TP 2", held_overhead_once),
    wrong(check_replica_concurrency, "TP 2", held_one_gpu_of_kv),
    wrong(check_replica_concurrency, "expected 131", held_all_memory),
    wrong(check_replica_concurrency, "expected", held_rounded),
    wrong(check_replica_concurrency, "nothing fits", held_negative),
    wrong(check_replica_concurrency, "whole number", held_float),
    right(check_replica_concurrency, held_per_gpu_first),

    wrong(check_fleet, "replicas", fleet_for_mean),
    wrong(check_fleet, "replicas", fleet_no_headroom),
    wrong(check_fleet, "replicas", fleet_headroom_inverted),
    wrong(check_fleet, "replicas", fleet_no_spares),
    wrong(check_fleet, "usd_per_hour", fleet_priced_per_replica),
    wrong(check_fleet, "usd_per_million_output_tokens", fleet_tokens_at_peak),
    wrong(check_fleet, "usd_per_million_output_tokens", fleet_tokens_per_second),
    wrong(check_fleet, "usd_per_million_output_tokens", fleet_counts_input),
    wrong(check_fleet, "replicas", fleet_rounded),
    right(check_fleet, fleet_by_adding),
]
