"""Timing code on a machine that is doing other things too.

Taking the fastest of N runs protects against short interruptions, not against load that lasts
the whole measurement (another program, a video call, a laptop throttling its clock). So a
comparison here *interleaves* its cases: each round times every case once, the order reversing
from one round to the next, so that a slow spell or a drift hits every case alike. Each figure
is reported with its spread, and ``verdict`` says plainly when the spread is too large to
conclude anything.

    samples = timing.interleaved({"with cache": step, "without": full}, repeats=5)
    table = timing.summarize(samples)          # a DataFrame: median, min, max (ms), spread (%)
    print(timing.verdict(samples, pairs=[("without", "with cache")]))
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable

# Above this relative spread ((max - min) / median) a difference is not worth reading.
TOO_NOISY = 0.5


def sync() -> None:
    """Wait for queued GPU work, so that a timer measures it (a no-op without CUDA)."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call, GPU work included."""
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def interleaved(cases: dict[Hashable, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                progress: bool = False) -> dict[Hashable, list[float]]:
    """Time every case ``repeats`` times, one call of each per round; {case: [seconds per round]}.

    ``warmup`` untimed rounds go first (first calls pay for allocation and caches). Rounds run
    forwards and backwards in turn, so no case always goes first or last.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    keys = list(cases)
    for _ in range(warmup):
        for key in keys:
            cases[key]()
    samples: dict[Hashable, list[float]] = {key: [] for key in keys}
    rounds = range(repeats)
    if progress:
        from tqdm.auto import tqdm
        rounds = tqdm(rounds, desc="timing rounds", unit="round")
    for r in rounds:
        for key in (keys if r % 2 == 0 else keys[::-1]):
            samples[key].append(seconds(cases[key]))
    return samples


def spread(values: list[float]) -> float:
    """(max - min) / median: 0.1 means the runs lay within 10 % of the typical one."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle > 0 else float("inf")


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Round-by-round ratios of two interleaved cases (the rounds share the machine's state)."""
    return [a / b for a, b in zip(numerator, denominator)]


def summarize(samples: dict[Hashable, list[float]], unit: str = "ms"):
    """A DataFrame, one row per case: median, fastest and slowest time in ``unit``, and the spread."""
    import pandas as pd
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    rows = [{"case": key, f"median ({unit})": statistics.median(v) * scale, f"min ({unit})": min(v) * scale,
             f"max ({unit})": max(v) * scale, "spread (%)": 100 * spread(v), "runs": len(v)}
            for key, v in samples.items()]
    return pd.DataFrame(rows).set_index("case")


def verdict(samples: dict[Hashable, list[float]], pairs: list[tuple[Hashable, Hashable]] | None = None,
            limit: float = TOO_NOISY) -> str:
    """One line: can these timings be compared, and if not, what to do.

    With ``pairs`` [(a, b), ...], what must hold still is each ratio a/b from round to round: a slow
    spell that lasted a whole round moved a and b alike and cancels out of their ratio. Without
    pairs, every case's own spread is judged.
    """
    runs = min(len(v) for v in samples.values())
    machine_key, machine = max(((k, spread(v)) for k, v in samples.items()), key=lambda kv: kv[1])
    if pairs:
        (a, b), worst = max((((a, b), spread(ratios(samples[a], samples[b]))) for a, b in pairs),
                            key=lambda item: item[1])
        if worst <= limit:
            drift = (f"; the machine's own speed moved by up to {100 * machine:.0f} % between rounds, which "
                     "interleaving cancels" if machine > limit else "")
            return (f"comparison is steady: every ratio held within {100 * worst:.0f} % over {runs} interleaved "
                    f"rounds{drift}")
        what, worst_value = f"the ratio {a} / {b}", worst
    else:
        if machine <= limit:
            return (f"timings are steady: every case within {100 * machine:.0f} % over {runs} interleaved rounds, "
                    "so the differences between cases are real")
        what, worst_value = str(machine_key), machine
    return (f"too noisy to conclude: {what} varied by {100 * worst_value:.0f} % between rounds (limit "
            f"{100 * limit:.0f} %); something else is using the CPU. Close other programs and re-run this "
            "cell, or raise the number of repeats")
