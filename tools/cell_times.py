"""Where a lab's time goes: the slowest cells of executed notebooks, from papermill's durations.

    .venv/bin/python -m inferlab labs run --only 04      # executes into build/, durations kept
    .venv/bin/python tools/cell_times.py build/04-vllm.ipynb [--top 10]
"""
from __future__ import annotations

import argparse
import sys

import nbformat


def cell_times(path: str) -> list[tuple[float, int, str]]:
    """(seconds, cell index, first source line) of every code cell papermill timed."""
    nb = nbformat.read(path, as_version=4)
    rows = []
    for index, cell in enumerate(nb.cells):
        seconds = cell.metadata.get("papermill", {}).get("duration")
        if cell.cell_type == "code" and seconds is not None:
            first = next((line for line in cell.source.splitlines() if line.strip()), "")
            rows.append((seconds, index, first[:70]))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    for path in args.notebooks:
        rows = cell_times(path)
        if not rows:
            print(f"{path}: no per-cell durations (run it with `inferlab labs run`, not `make reference`)")
            continue
        total = sum(r[0] for r in rows)
        print(f"{path}: {total:.1f} s in {len(rows)} code cells; slowest:")
        for seconds, index, first in sorted(rows, reverse=True)[:args.top]:
            print(f"  {seconds:7.1f} s  {100 * seconds / total:4.0f} %  cell {index:>2}  {first}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
