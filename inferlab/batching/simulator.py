"""A serving loop as a discrete-event simulation: static, dynamic and continuous batching.

The engine works in steps. A step is one forward pass that gives every sequence in it one token
and lasts ``step_time(batch_size, prefill_tokens)`` seconds: the sequences in the step, and the
prompt tokens it prefills. A request's prompt is prefilled in its first step, which also yields
its first token; a request of ``output_len`` tokens takes ``output_len`` steps.

- **static**: a batch starts once ``max_batch`` requests wait (or no more will arrive), is padded to
  its longest prompt and runs until its longest output is done; every request in it finishes then.
- **dynamic**: as static, but a batch also starts when its oldest request has waited ``timeout``.
- **continuous** (Orca's iteration-level scheduling): before every step, waiting requests join
  while fewer than ``max_batch`` run; a request leaves after the step that gives its last token.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

POLICIES = ("static", "dynamic", "continuous")


@dataclass(frozen=True)
class SimRequest:
    arrival: float       # seconds
    prompt_len: int      # tokens
    output_len: int      # tokens, at least 1


@dataclass(frozen=True)
class StepCost:
    """Step time from measured costs: decode step seconds at some batch sizes (interpolated
    linearly, extrapolated from the last two points) plus seconds per prefilled prompt token."""
    batch_sizes: tuple[int, ...]
    decode_seconds: tuple[float, ...]
    prefill_per_token: float

    def decode(self, batch_size: int) -> float:
        b, s = np.asarray(self.batch_sizes, float), np.asarray(self.decode_seconds, float)
        if batch_size > b[-1] and len(b) > 1:
            return float(s[-1] + (batch_size - b[-1]) * (s[-1] - s[-2]) / (b[-1] - b[-2]))
        return float(np.interp(batch_size, b, s))

    def __call__(self, batch_size: int, prefill_tokens: int) -> float:
        return self.decode(batch_size) + self.prefill_per_token * prefill_tokens


def simulate(requests: Sequence[SimRequest], policy: str, step_time: Callable[[int, int], float],
             max_batch: int, timeout: float = math.inf) -> list[tuple[float, float]]:
    """(first-token time, finish time) in seconds of every request, in the order given."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    order = deque(sorted(range(len(requests)), key=lambda i: (requests[i].arrival, i)))
    times: list = [None] * len(requests)
    if policy == "continuous":
        _continuous(requests, order, step_time, max_batch, times)
    else:
        _batched(requests, order, step_time, max_batch, timeout if policy == "dynamic" else math.inf, times)
    return times


def _batched(requests, waiting, step_time, max_batch, timeout, times) -> None:
    now = 0.0
    while waiting:
        oldest = requests[waiting[0]].arrival
        full_at = requests[waiting[min(max_batch, len(waiting)) - 1]].arrival   # fills up, or the last one came
        start = max(now, min(full_at, oldest + timeout))
        batch = []
        while waiting and len(batch) < max_batch and requests[waiting[0]].arrival <= start:
            batch.append(waiting.popleft())
        n = len(batch)
        first = start + step_time(n, n * max(requests[i].prompt_len for i in batch))
        now = first + (max(requests[i].output_len for i in batch) - 1) * step_time(n, 0)
        for i in batch:
            times[i] = (first, now)


def _continuous(requests, waiting, step_time, max_batch, times) -> None:
    now, running = 0.0, {}                      # request -> tokens it has so far
    while waiting or running:
        if not running:
            now = max(now, requests[waiting[0]].arrival)
        joining = []
        while waiting and len(running) + len(joining) < max_batch and requests[waiting[0]].arrival <= now:
            joining.append(waiting.popleft())
        now += step_time(len(running) + len(joining), sum(requests[i].prompt_len for i in joining))
        for i in joining:
            running[i] = 0
            times[i] = (now, None)
        for i in list(running):
            running[i] += 1
            if running[i] == requests[i].output_len:
                times[i] = (times[i][0], now)
                del running[i]


def summarize(requests: Sequence[SimRequest], times: Sequence[tuple[float, float]]) -> dict:
    """Throughput and latency of a simulated (or measured) run: output tokens per second from the
    first arrival to the last finish, and TTFT / end-to-end latency statistics in seconds."""
    start = min(r.arrival for r in requests)
    end = max(finish for _, finish in times)
    ttft = np.array([first - r.arrival for r, (first, _) in zip(requests, times)])
    e2el = np.array([finish - r.arrival for r, (_, finish) in zip(requests, times)])
    tokens = sum(r.output_len for r in requests)
    return {"output_throughput": tokens / (end - start), "median_ttft_s": float(np.median(ttft)),
            "median_e2el_s": float(np.median(e2el)), "mean_e2el_s": float(e2el.mean()), "duration_s": end - start}
