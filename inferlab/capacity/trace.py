"""The request trace lab 11 plans for: one day of a chat assistant's traffic, generated here with a fixed
seed, and the handful of numbers a capacity plan needs from it.

Assumptions (all in TraceShape, none measured from a real service):
- Arrivals are a Poisson process whose rate follows the day: lowest at 03:00, highest at 15:00, the peak
  (1 + day_swing) times and the trough (1 - day_swing) times the mean. On top, ``bursts`` ten-minute
  spells in working hours (a campaign, an outage elsewhere) multiply the rate by ``burst_factor``.
- ``prefixed_share`` of requests start with one of a few system prompts (shared prefixes of fixed
  length); the user's own tokens and the reply lengths are log-normal, clipped to the context.

``python -m inferlab.capacity.trace`` writes the shipped file again; a test holds it to this code.
"""
from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DAY_S = 86_400
TRACES = Path(__file__).resolve().parent.parent / "data" / "traces"
COLUMNS = ["arrival_s", "input_tokens", "output_tokens", "prefix_tokens"]


@dataclass(frozen=True)
class TraceShape:
    mean_rate: float = 0.5            # requests/s over the day, before bursts
    day_swing: float = 0.6            # peak-hour rate = (1 + swing) x mean; 03:00 = (1 - swing) x mean
    peak_hour: float = 15.0
    bursts: int = 4                   # ten-minute spells between 09:00 and 18:00 ...
    burst_factor: float = 2.5         # ... at this multiple of the rate of their hour
    burst_s: float = 600.0
    prefixed_share: float = 0.7       # requests that start with a system prompt
    system_prompts: tuple = (420, 960, 1500)        # their lengths in tokens ...
    system_weights: tuple = (0.5, 0.3, 0.2)         # ... and how often each is used
    user_median: float = 250.0        # the user's own tokens: log-normal median and sigma
    user_sigma: float = 1.0
    output_median: float = 160.0      # reply tokens: log-normal median and sigma
    output_sigma: float = 0.75
    max_user: int = 6000
    max_output: int = 2048
    seed: int = 2026


def _rate_at(t: np.ndarray, shape: TraceShape, burst_starts: np.ndarray) -> np.ndarray:
    hours = (t % DAY_S) / 3600
    rate = shape.mean_rate * (1 + shape.day_swing * np.cos(2 * math.pi * (hours - shape.peak_hour) / 24))
    in_burst = ((t[:, None] >= burst_starts) & (t[:, None] < burst_starts + shape.burst_s)).any(axis=1)
    return np.where(in_burst, rate * shape.burst_factor, rate)


def generate(shape: TraceShape = TraceShape(), duration_s: float = DAY_S):
    """A trace as a DataFrame (COLUMNS; arrival_s in seconds from midnight, token counts as integers)."""
    import pandas as pd
    rng = np.random.default_rng(shape.seed)
    burst_starts = np.sort(rng.uniform(9 * 3600, 18 * 3600 - shape.burst_s, shape.bursts))
    ceiling = shape.mean_rate * (1 + shape.day_swing) * shape.burst_factor
    # thinning (Lewis and Shedler 1979): candidates at the ceiling rate, each kept with rate(t) / ceiling
    candidates = np.cumsum(rng.exponential(1 / ceiling, int(ceiling * duration_s * 1.2) + 100))
    candidates = candidates[candidates < duration_s]
    kept = candidates[rng.uniform(size=candidates.size) < _rate_at(candidates, shape, burst_starts) / ceiling]
    n = kept.size
    has_prefix = rng.uniform(size=n) < shape.prefixed_share
    which = rng.choice(len(shape.system_prompts), size=n, p=np.array(shape.system_weights))
    prefix = np.where(has_prefix, np.array(shape.system_prompts)[which], 0)
    user = np.clip(np.rint(rng.lognormal(math.log(shape.user_median), shape.user_sigma, n)), 4, shape.max_user)
    output = np.clip(np.rint(rng.lognormal(math.log(shape.output_median), shape.output_sigma, n)), 1,
                     shape.max_output)
    return pd.DataFrame({"arrival_s": np.round(kept, 3), "input_tokens": (prefix + user).astype(int),
                         "output_tokens": output.astype(int), "prefix_tokens": prefix.astype(int)})


def load(name_or_path: str | Path = "chat-day"):
    """A shipped trace by name (``chat-day``) or a CSV(.gz) with COLUMNS."""
    import pandas as pd
    path = Path(name_or_path)
    if not path.exists():
        shipped = TRACES / f"{name_or_path}.csv.gz"
        if not shipped.exists():
            known = ", ".join(p.name.removesuffix(".csv.gz") for p in sorted(TRACES.glob("*.csv.gz")))
            raise ValueError(f"no trace {name_or_path!r}: give a CSV path or a shipped name ({known})")
        path = shipped
    frame = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path.name}: the trace needs columns {', '.join(COLUMNS)}; missing {', '.join(missing)}")
    return frame


def write(frame, path: Path) -> Path:
    """The trace as gzip'd CSV, byte for byte the same for the same frame (no timestamp in the gzip header)."""
    text = frame.to_csv(index=False, lineterminator="\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path


def characterise(frame, window_s: float = 300.0, duration_s: float = DAY_S) -> dict:
    """What a plan needs from a trace: request rates (per second), length percentiles (tokens), prefix share.

    peak_rate is the busiest ``window_s`` window (aligned at 0) in requests per second; percentiles
    interpolate linearly (numpy's default); prefix_share is the share of input tokens that are a shared
    system prompt.
    """
    arrivals = frame["arrival_s"].to_numpy(dtype=float)
    inputs = frame["input_tokens"].to_numpy(dtype=float)
    outputs = frame["output_tokens"].to_numpy(dtype=float)
    mean_rate = arrivals.size / duration_s
    peak_rate = np.bincount((arrivals // window_s).astype(int)).max() / window_s
    return {"requests": int(arrivals.size), "mean_rate": mean_rate, "peak_rate": float(peak_rate),
            "peak_to_mean": float(peak_rate / mean_rate),
            "input_p50": float(np.percentile(inputs, 50)), "input_p99": float(np.percentile(inputs, 99)),
            "output_p50": float(np.percentile(outputs, 50)), "output_p99": float(np.percentile(outputs, 99)),
            "input_mean": float(inputs.mean()), "output_mean": float(outputs.mean()),
            "prefix_share": float(frame["prefix_tokens"].sum() / inputs.sum())}


if __name__ == "__main__":
    print(f"wrote {write(generate(), TRACES / 'chat-day.csv.gz')}")
