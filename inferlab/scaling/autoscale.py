"""Autoscaling on ongoing requests, as Ray Serve's default policy decides, and how long a scale-up takes.

Every control-loop tick the policy asks: with ``ongoing`` requests in the deployment (running and
queued, averaged over the look-back window) and ``target`` wanted per replica, how many replicas?
The raw answer ``ongoing / target`` is approached by a fraction of the gap (the up- or downscaling
factor), rounded up, held back until the wish has lasted ``upscale_delay_s`` / ``downscale_delay_s``,
and kept within [min_replicas, max_replicas]. A new replica then serves only after its cold start.
Ray's own implementation: ``ray/serve/autoscaling_policy.py`` (Ray 2.60).
"""
from __future__ import annotations

import math


def desired_replicas(ongoing: float, current: int, target: float, min_replicas: int, max_replicas: int,
                     upscaling_factor: float = 1.0, downscaling_factor: float = 1.0) -> int:
    """Replicas one control-loop tick asks for (before the up/down delays).

    ongoing: requests in flight or queued, summed over replicas; current: running replicas (0 = scaled
    to zero); target: ongoing requests wanted per replica (> 0). Returns an int in [min, max].
    """
    if target <= 0:
        raise ValueError(f"target ongoing requests per replica must be > 0, got {target}")
    if current == 0:  # from zero: one replica (times the factor) as soon as anything waits
        wanted = math.ceil(upscaling_factor) if ongoing > 0 else 0
    else:
        raw = ongoing / target
        factor = upscaling_factor if raw > current else downscaling_factor
        wanted = math.ceil(current + factor * (raw - current))
        if math.ceil(raw) < current and wanted == current:  # a small factor must not stall a scale-down
            wanted -= 1
    return max(min_replicas, min(max_replicas, wanted))


def scale_up_seconds(metrics_lag_s: float, upscale_delay_s: float, cold_start_s: float) -> float:
    """From a load step to the new replica serving: the signal's lag, the policy's delay, the cold start."""
    return metrics_lag_s + upscale_delay_s + cold_start_s


def backlog_during_scale_up(arrival_rate: float, capacity_rate: float, seconds: float) -> float:
    """Requests that pile up while capacity lags demand (rates in requests/s); never negative."""
    return max(0.0, arrival_rate - capacity_rate) * seconds
