"""Serving metrics, defined once: TTFT, ITL, TPOT, E2EL, their distributions and goodput.

The definitions are those of vLLM's serving benchmark (``vllm/benchmarks/serve.py`` and
``vllm/benchmarks/lib/endpoint_request_func.py`` in vLLM 0.32), so that the labs, ``inferlab bench``
and ``vllm bench serve`` can be compared figure by figure:

- TTFT: from sending the request (or starting generation) to the first output that carries text.
- ITL: the gaps between successive outputs that carry text (a streamed chunk may hold several tokens).
- E2EL: from the start to the last output that carries text, so that E2EL - TTFT = sum(ITL).
- TPOT: (E2EL - TTFT) / (output tokens - 1) per request; undefined (None) for a single token. Such
  requests are left out of TPOT statistics and count as TPOT 0 against a TPOT objective (as in vLLM).
- goodput: requests per second that met every objective (``slo``, milliseconds per metric).

Times are in seconds unless a name says ``_ms``.
"""
from __future__ import annotations

import math
import statistics

import numpy as np

PERCENTILES = (50, 90, 99)
SLO_METRICS = ("ttft", "tpot", "e2el")


# ----------------------------------------------------------------------------- one request

def time_per_output_token(e2el: float | None, ttft: float | None, output_tokens: int) -> float | None:
    """TPOT of one request: the decode time spread over the tokens after the first; None if <= 1 token."""
    if e2el is None or ttft is None or output_tokens <= 1:
        return None
    return (e2el - ttft) / (output_tokens - 1)


def latency_metrics(timestamps: list[float], t_start: float) -> dict:
    """Per-request latency from the arrival time of each output token (same unit in and out).

    ``ttft``: first token - start; ``e2el``: last token - start; ``itl``: the gaps between
    consecutive tokens (n - 1 of them); ``tpot``: (e2el - ttft) / (n - 1), the mean gap,
    or None for a single token (vLLM's benchmark skips such requests).
    """
    if not timestamps:
        raise ValueError("no tokens: latency needs at least one output timestamp")
    ttft = timestamps[0] - t_start
    e2el = timestamps[-1] - t_start
    itl = [b - a for a, b in zip(timestamps, timestamps[1:])]
    return {"ttft": ttft, "tpot": time_per_output_token(e2el, ttft, len(timestamps)), "itl": itl, "e2el": e2el,
            "n_tokens": len(timestamps)}


def chunk_text(chunk) -> str | None:
    """The generated text an OpenAI streaming chunk carries (chat delta or completion text), if any."""
    for choice in getattr(chunk, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        text = getattr(delta, "content", None) if delta is not None else getattr(choice, "text", None)
        if text:
            return text
    return None


def time_to_first_token(events: list, t_start: float) -> float | None:
    """TTFT of a stream of (arrival time, OpenAI chunk): the first chunk that carries text, minus t_start."""
    for t, chunk in events:
        if chunk_text(chunk):
            return t - t_start
    return None


# ----------------------------------------------------------------------------- many requests

def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty list")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentile_name(q: float) -> str:
    """50 -> "50", 99.9 -> "99.9": the suffix of a ``p...`` key."""
    return str(int(q)) if float(q).is_integer() else str(q)


def distribution(values, percentiles=PERCENTILES) -> dict:
    """mean, median, std (population, as numpy) and the chosen percentiles; zeros when empty (as vLLM)."""
    values = list(values) or [0.0]
    out = {"mean": float(np.mean(values)), "median": percentile(values, 50), "std": float(np.std(values))}
    out.update({f"p{percentile_name(q)}": percentile(values, q) for q in percentiles})
    return out


def load_summary(results: list[dict], wall_seconds: float) -> dict:
    """A load of streamed requests in a few numbers (lab 04): results are dicts with ``completion_tokens``,
    ``ttft`` and ``tpot`` (seconds, None when undefined); throughput is output tokens per wall second."""
    ttfts = [r["ttft"] for r in results if r["ttft"] is not None]
    tpots = [r["tpot"] for r in results if r["tpot"] is not None]
    out_tokens = sum(r["completion_tokens"] for r in results)
    return {"requests": len(results), "output_tokens": out_tokens, "throughput": out_tokens / wall_seconds,
            "ttft_mean": statistics.fmean(ttfts), "ttft_median": statistics.median(ttfts), "ttft_max": max(ttfts),
            "tpot_mean": statistics.fmean(tpots) if tpots else None}


# ----------------------------------------------------------------------------- objectives and goodput

def meets_slo(record, slo: dict) -> bool:
    """Did one request (``success``, ``ttft``, ``tpot``, ``latency`` in seconds) meet every objective
    in slo ({"ttft": ms, "tpot": ms, "e2el": ms}, any subset)?"""
    if not record.success:
        return False
    seconds = {"ttft": record.ttft, "tpot": record.tpot or 0.0, "e2el": record.latency}
    return all(seconds[name] * 1000 <= limit for name, limit in slo.items())


def request_goodput(records, slo: dict, duration: float) -> float:
    """Requests per second that met every objective."""
    return sum(meets_slo(r, slo) for r in records) / duration


def parse_slo(pairs) -> dict:
    """["ttft:500", "tpot:50"] (or "ttft:500 tpot:50") -> {"ttft": 500.0, "tpot": 50.0}, in ms."""
    if isinstance(pairs, str):
        pairs = pairs.split()
    slo = {}
    for pair in pairs or []:
        name, _, value = pair.partition(":")
        if name not in SLO_METRICS or not value:
            raise ValueError(f"bad objective {pair!r}: write NAME:MILLISECONDS with NAME one of "
                             f"{', '.join(SLO_METRICS)}, e.g. ttft:500")
        try:
            slo[name] = float(value)
        except ValueError:
            raise ValueError(f"bad objective {pair!r}: {value!r} is not a number of milliseconds") from None
        if slo[name] < 0:
            raise ValueError(f"bad objective {pair!r}: a time limit cannot be negative")
    return slo
