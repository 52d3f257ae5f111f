"""A run's result, keyed like vLLM's serving benchmark: its summary, merged repeats, the goodput knee,
a text report and the JSON file."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from inferlab.bench.records import RequestRecord, write_atomically, records_of
from inferlab.metrics import PERCENTILES, distribution, meets_slo, request_goodput


def summarize(records: list[RequestRecord], duration: float, percentiles=PERCENTILES,
              slo: dict | None = None) -> dict:
    """The result of a run, keyed like vLLM's serving benchmark where the two overlap."""
    ok = [r for r in records if r.success]
    total_input = sum(r.prompt_len for r in ok)
    total_output = sum(r.output_tokens for r in ok)
    result = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(ok) / duration,
        "request_goodput": request_goodput(records, slo, duration) if slo else None,
        "output_throughput": total_output / duration,
        "total_token_throughput": (total_input + total_output) / duration,
    }
    series = {
        "ttft": [r.ttft for r in ok],
        "tpot": [r.tpot for r in ok if r.tpot is not None],
        "itl": [gap for r in ok for gap in r.itl],
        "e2el": [r.latency for r in ok],
    }
    for name, values in series.items():
        for stat, value in distribution([v * 1000 for v in values], percentiles).items():
            result[f"{stat}_{name}_ms"] = value
    if slo:
        result["slo"] = dict(slo)
        result["slo_attainment"] = sum(meets_slo(r, slo) for r in records) / max(len(records), 1)
    result["mean_client_queue_time_ms"] = float(np.mean([r.queue_time for r in records] or [0])) * 1000
    result["errors"] = [r.error for r in records]
    return result


def pooled(results: list[dict], percentiles=PERCENTILES, slo: dict | None = None) -> dict:
    """One summary over several runs: every request's samples together, throughput over the summed time.

    Percentiles of runs cannot be averaged; pooling the samples is the honest way to merge repeats.
    """
    records = [r for result in results for r in records_of(result)]
    return summarize(records, sum(result["duration"] for result in results), percentiles, slo)


def goodput_knee(results: list[dict], slo: dict, attainment: float = 0.9) -> dict | None:
    """The run with the highest offered load whose share of requests meeting slo is >= attainment.

    Only runs up to the first one that misses count: past the knee a lucky run does not reopen it.
    """
    best = None
    for result in sorted(results, key=_offered_load):
        records = records_of(result)
        share = sum(meets_slo(r, slo) for r in records) / len(records)
        if share < attainment:
            break
        best = result
    return best


def mean_latency_limit(results: list[dict], slo: dict) -> dict | None:
    """The highest offered load at which the runs' MEAN latencies (``mean_<name>_ms``) are within slo (ms).

    Between the last run within the objectives and the first one past them the rate is interpolated
    linearly on the worst ratio of mean to limit. Returns {"rate", "bracketed"}: bracketed is False when
    no run missed (the rate is then a lower bound, the highest tried); None when the lightest run misses.
    """
    runs = sorted(results, key=_offered_load)

    def excess(result):
        return max(result[f"mean_{name}_ms"] / limit for name, limit in slo.items())
    previous = None
    for result in runs:
        if excess(result) > 1:
            if previous is None:
                return None
            r0, e0, r1, e1 = _offered_load(previous), excess(previous), _offered_load(result), excess(result)
            return {"rate": r0 + (1 - e0) / (e1 - e0) * (r1 - r0), "bracketed": True}
        previous = result
    return {"rate": _offered_load(previous), "bracketed": False} if previous else None


def _offered_load(result: dict) -> float:
    rate = result.get("request_rate", math.inf)
    return rate if not math.isinf(rate) else float(result.get("max_concurrency") or math.inf)


def report_table(result: dict) -> str:
    """A vLLM-style text report of one result."""
    lines = [" Serving benchmark ".center(60, "=")]

    def row(name, value, fmt="{:.2f}"):
        lines.append(f"{name:<44} {fmt.format(value) if isinstance(value, float) else value}")
    row("Successful requests:", result["completed"])
    row("Failed requests:", result["failed"])
    if result.get("max_concurrency"):
        row("Maximum request concurrency:", result["max_concurrency"])
    if not math.isinf(result.get("request_rate", math.inf)):
        row("Request rate configured (RPS):", float(result["request_rate"]))
    row("Benchmark duration (s):", float(result["duration"]))
    row("Total input tokens:", result["total_input_tokens"])
    row("Total generated tokens:", result["total_output_tokens"])
    row("Request throughput (req/s):", float(result["request_throughput"]))
    if result.get("request_goodput") is not None:
        row("Request goodput (req/s):", float(result["request_goodput"]))
    row("Output token throughput (tok/s):", float(result["output_throughput"]))
    row("Total token throughput (tok/s):", float(result["total_token_throughput"]))
    for name, title in (("ttft", "Time to first token"), ("tpot", "Time per output token (excl. 1st)"),
                        ("itl", "Inter-token latency"), ("e2el", "End-to-end latency")):
        lines.append(f" {title} ".center(60, "-"))
        for key in sorted(k for k in result if k.endswith(f"_{name}_ms")):
            row(f"{key.split('_')[0].capitalize()} {name.upper()} (ms):", float(result[key]))
    lines.append("=" * 60)
    return "\n".join(lines)


def failed_errors(result: dict, limit: int = 5) -> list[str]:
    """The distinct reasons requests failed, most frequent first."""
    from collections import Counter
    return [f"{n} x {e}" for e, n in Counter(e for e in result.get("errors", []) if e).most_common(limit)]


def write_json(result: dict, path) -> Path:
    """Write a result atomically: a reader never sees half a file."""
    return write_atomically(Path(path), json.dumps(result, indent=1, default=float))
