"""Comparing two benchmark tools (or two settings) on one server without being fooled by the machine.

A shared machine has slow spells. Run tool A on the whole workload and then tool B, and a spell that
lands on one of them looks like a difference between the tools. So the workload is cut into parts,
each part runs under every tool back to back, the order alternating from part to part, and each
tool's results are pooled over its parts. How far one tool moved from part to part is the noise a
difference between the tools has to beat.

    runs = compare.interleaved({"ours": run_ours, "theirs": run_theirs}, requests, rounds=4)
    table = compare.side_by_side(runs, slo, ["median_ttft_ms", "output_throughput"])
"""
from __future__ import annotations

import math
from typing import Callable

from inferlab.bench.results import pooled


def interleaved(tools: dict[str, Callable[[list], dict]], requests: list, rounds: int,
                progress: bool = True) -> dict[str, list[dict]]:
    """Run every tool on each of ``rounds`` parts of ``requests``: {tool: [result of each part]}.

    Part r runs the tools in the order given when r is even, reversed when odd. Each result gains
    ``part`` and ``client_cpu_seconds``: the CPU time this process spent during the call (a tool
    that runs in another process, such as ``vllm bench serve``, spends almost none here).
    """
    import psutil

    if rounds < 1 or rounds > len(requests):
        raise ValueError(f"rounds must be between 1 and the number of requests ({len(requests)}), got {rounds}")
    names = list(tools)
    size = math.ceil(len(requests) / rounds)
    steps = [(r, name) for r in range(rounds) for name in (names if r % 2 == 0 else names[::-1])]
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="benchmark runs", unit="run")
    me = psutil.Process()
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r, name in steps:
        before = me.cpu_times()
        result = tools[name](requests[r * size:(r + 1) * size])
        after = me.cpu_times()
        result["part"] = r + 1
        result["client_cpu_seconds"] = (after.user - before.user) + (after.system - before.system)
        runs[name].append(result)
    return runs


def part_to_part(results: list[dict], key: str) -> float:
    """How far ``key`` moved between the parts of one tool, relative to its mean (0.1 = 10 %)."""
    values = [res[key] for res in results]
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean if mean else 0.0


def side_by_side(runs: dict[str, list[dict]], slo: dict | None, keys: list[str]):
    """A DataFrame: for each key, each tool's result pooled over its parts, their difference (% of the
    second tool's) and each tool's part-to-part spread (%)."""
    import pandas as pd

    if len(runs) != 2:
        raise ValueError(f"side_by_side compares two tools, got {len(runs)}: {list(runs)}")
    (first, first_runs), (second, second_runs) = runs.items()
    a_pooled, b_pooled = pooled(first_runs, slo=slo), pooled(second_runs, slo=slo)
    rows = []
    for key in keys:
        a, b = a_pooled[key], b_pooled[key]
        rows.append({"pooled over the parts": key, first: a, second: b,
                     "difference (%)": 100 * (a - b) / b if b else float("nan"),
                     f"{first}, part to part (%)": 100 * part_to_part(first_runs, key),
                     f"{second}, part to part (%)": 100 * part_to_part(second_runs, key)})
    return pd.DataFrame(rows).set_index("pooled over the parts")


def verdicts(table, keys: list[str]) -> list[str]:
    """One line per key: is the difference between the tools larger than the part-to-part noise?"""
    spread = [column for column in table.columns if column.endswith("part to part (%)")]
    lines = []
    for key in keys:
        gap = abs(table.loc[key, "difference (%)"])
        noise = max(table.loc[key, column] for column in spread)
        lines.append(f"{key}: the tools differ by {gap:.1f} %, one tool moved by up to {noise:.1f} % between "
                     "parts -> " + ("no difference this machine can resolve" if gap <= noise else
                                    "a difference larger than the noise: compare the workloads and settings"))
    return lines
