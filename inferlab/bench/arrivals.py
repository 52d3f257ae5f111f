"""When the requests of an open-loop run are sent: a seeded gamma process (Poisson at burstiness 1)."""
from __future__ import annotations

import math

import numpy as np


def arrival_times(num_requests: int, request_rate: float, burstiness: float = 1.0, seed: int = 0) -> np.ndarray:
    """When each request is sent, in seconds after the first one (which goes at 0).

    Gaps between arrivals are gamma-distributed with shape ``burstiness`` and mean 1/request_rate:
    burstiness 1 is a Poisson process, below 1 burstier, above 1 more regular. An infinite rate
    sends everything at once (a closed loop then needs max_concurrency).
    """
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if request_rate <= 0:
        raise ValueError(f"request rate must be > 0 requests/s (or inf), got {request_rate}")
    if math.isinf(request_rate):
        return np.zeros(num_requests)
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=max(num_requests - 1, 0))
    return np.concatenate([[0.0], np.cumsum(gaps)])[:num_requests]


def ramp(phases, burstiness: float = 1.0, seed: int = 0) -> np.ndarray:
    """Send times of a load that changes: phases are (request rate in requests/s, seconds) in order.

    Each phase is a seeded gamma process at its own rate, started where the previous phase ended;
    the result goes to ``run(arrivals=...)``.
    """
    out, start = [], 0.0
    for number, (rate, seconds) in enumerate(phases):
        if rate <= 0 or seconds <= 0:
            raise ValueError(f"phase {number}: rate and seconds must be > 0, got ({rate}, {seconds})")
        times = arrival_times(max(1, math.ceil(rate * seconds * 2)), rate, burstiness, seed + number)
        out.append(start + times[times < seconds])
        start += seconds
    return np.concatenate(out)
