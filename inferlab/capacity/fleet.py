"""From one replica's sustainable rate to a fleet: replicas for the peak with headroom, GPUs, and what the
fleet costs per hour and per million output tokens.

A fixed fleet is sized for the busiest window but paid for every hour, so its cost per token is the
hourly bill over the tokens it serves in an average hour.
"""
from __future__ import annotations

import math


def fleet(peak_rate: float, mean_rate: float, replica_rate: float, target_utilisation: float, gpus_per_replica: int,
          usd_per_gpu_hour: float, mean_output_tokens: float, mean_input_tokens: float = 0.0,
          spare_replicas: int = 0) -> dict:
    """Replicas, GPUs, $/hour, and $ per million output tokens and per million tokens (input + output) of a
    fleet sized for peak_rate (requests/s).

    Each replica runs at most target_utilisation (0-1] of its sustainable replica_rate at the peak; at least
    one replica serves, plus spare_replicas for failures. Cost per token uses the mean rate.
    """
    serving = max(1, math.ceil(peak_rate / (replica_rate * target_utilisation) - 1e-9))
    replicas = serving + spare_replicas
    gpus = replicas * gpus_per_replica
    usd_per_hour = gpus * usd_per_gpu_hour
    tokens_per_hour = mean_rate * mean_output_tokens * 3600
    all_tokens_per_hour = mean_rate * (mean_input_tokens + mean_output_tokens) * 3600
    return {"replicas": replicas, "gpus": gpus, "usd_per_hour": usd_per_hour,
            "output_tokens_per_hour": tokens_per_hour,
            "usd_per_million_output_tokens": usd_per_hour / tokens_per_hour * 1e6,
            "usd_per_million_tokens": usd_per_hour / all_tokens_per_hour * 1e6,
            "peak_utilisation": peak_rate / (serving * replica_rate)}
