"""A performance model of one replica: step times from FLOPs and bytes, and the highest request rate it
sustains within a latency objective.

- Prefill is compute: 2 FLOPs per active parameter per prompt token, at ``prefill`` x the peak FLOP/s.
- A decode step reads every weight once plus each running request's KV cache, at ``decode`` x the peak
  bandwidth; when the batch is large enough to be compute-bound, it takes the FLOPs' time instead.
- Under load at rate ``rate``: prefill takes the share rho = rate x input x t_prefill of the engine's time,
  and decode steps stretch by 1 / (1 - rho); the requests decoding at once follow from Little's law,
  n = rate x output x TPOT; a new request waits for the prefill ahead of it as in an M/D/1 queue
  (Pollaczek-Khinchine: wait = rho x S / (2 (1 - rho)) for prefill time S).

The two fractions are the model's only free numbers: ``calibrate`` sets them from one measured TTFT and
one measured TPOT on the machine at hand. Latencies are means: an SLO written on a percentile needs margin
on top of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Hardware:
    name: str
    peak_flops: float          # FLOP/s of the whole replica (all its GPUs), dense
    bandwidth: float           # bytes/s of the whole replica


@dataclass(frozen=True)
class ModelCost:
    active_params: float       # parameters a token passes through
    weight_bytes: float        # bytes read per decode step (all weights)
    kv_bytes_per_token: float  # K and V of one position, all layers


@dataclass(frozen=True)
class Efficiency:
    prefill: float             # sustained share of peak FLOP/s
    decode: float              # sustained share of peak bandwidth


@dataclass(frozen=True)
class Workload:
    input_tokens: float        # mean prompt tokens a request prefills
    output_tokens: float       # mean reply tokens


def prefill_seconds_per_token(m: ModelCost, hw: Hardware, eff: Efficiency) -> float:
    return 2 * m.active_params / (hw.peak_flops * eff.prefill)


def decode_step_seconds(batch: float, context: float, m: ModelCost, hw: Hardware, eff: Efficiency) -> float:
    """One decode step of ``batch`` requests holding ``context`` positions each: the slower of bytes and FLOPs."""
    memory = (m.weight_bytes + batch * context * m.kv_bytes_per_token) / (hw.bandwidth * eff.decode)
    compute = batch * 2 * m.active_params / (hw.peak_flops * eff.prefill)
    return max(memory, compute)


def latencies(rate: float, w: Workload, m: ModelCost, hw: Hardware, eff: Efficiency,
              max_batch: float = math.inf) -> dict | None:
    """Mean TTFT and TPOT (s) and the requests decoding at once, at ``rate`` requests/s; None past saturation."""
    t_pt = prefill_seconds_per_token(m, hw, eff)
    prefill_s = w.input_tokens * t_pt
    rho = rate * prefill_s
    if rho >= 1:
        return None
    context = w.input_tokens + w.output_tokens / 2          # a decoding request's mean KV length
    batch, tpot = 1.0, 0.0
    for _ in range(200):                                    # fixed point of n = rate x output x TPOT(n)
        tpot = decode_step_seconds(max(batch, 1.0), context, m, hw, eff) / (1 - rho)
        new = rate * w.output_tokens * tpot
        if new > max_batch or new > 1e7:
            return None
        if abs(new - batch) < 1e-9 * max(1.0, batch):
            batch = new
            break
        batch = new
    else:
        return None
    wait = rho * prefill_s / (2 * (1 - rho))
    return {"rate": rate, "ttft_s": prefill_s + wait + tpot, "tpot_s": tpot, "batch": batch, "prefill_share": rho}


def operating_point(w: Workload, m: ModelCost, hw: Hardware, eff: Efficiency, ttft_s: float, tpot_s: float,
                    max_batch: float = math.inf) -> dict | None:
    """The highest rate (requests/s) whose mean TTFT and TPOT meet the objectives, with its latencies; None
    when even one request alone misses them."""
    def meets(rate):
        got = latencies(rate, w, m, hw, eff, max_batch)
        return got is not None and got["ttft_s"] <= ttft_s and got["tpot_s"] <= tpot_s
    if not meets(1e-9):
        return None
    low, high = 1e-9, 1 / (w.input_tokens * prefill_seconds_per_token(m, hw, eff))
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if meets(mid) else (low, mid)
    return latencies(low, w, m, hw, eff, max_batch)


def alone(w: Workload, m: ModelCost, hw: Hardware, eff: Efficiency) -> dict:
    """TTFT and TPOT (s) of one request with nothing else running: the floor no rate can beat."""
    context = w.input_tokens + w.output_tokens / 2
    tpot = decode_step_seconds(1, context, m, hw, eff)
    return {"ttft_s": w.input_tokens * prefill_seconds_per_token(m, hw, eff) + tpot, "tpot_s": tpot}


def calibrate(measured_ttft_s: float, prompt_tokens: float, measured_tpot_s: float, context: float,
              m: ModelCost, hw: Hardware) -> Efficiency:
    """The fractions of peak that reproduce one request alone: its TTFT (the prefill of prompt_tokens, then one
    decode step) and its TPOT (a decode step at batch 1 over ``context`` positions)."""
    if not 0 < measured_tpot_s < measured_ttft_s:
        raise ValueError(f"calibration needs 0 < TPOT < TTFT (got TTFT {measured_ttft_s:.4f} s, TPOT "
                         f"{measured_tpot_s:.4f} s): measure a longer prompt")
    ideal_prefill = prompt_tokens * 2 * m.active_params / hw.peak_flops
    ideal_decode = (m.weight_bytes + context * m.kv_bytes_per_token) / hw.bandwidth
    return Efficiency(prefill=ideal_prefill / (measured_ttft_s - measured_tpot_s),
                      decode=ideal_decode / measured_tpot_s)
