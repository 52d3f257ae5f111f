"""What a GPU-hour costs: a small price table, each price with its source and the date it was read.

Prices move every few months and differ several-fold between providers, commitments and regions, so
a plan states the price it used. The default table is one provider's always-on rate for each GPU, so
the GPUs are compared on one footing; a spec can bring its own table (``prices:`` in the plan spec).
"""
from __future__ import annotations

from dataclasses import dataclass

from inferlab.hardware import get_gpu


@dataclass(frozen=True)
class Price:
    gpu: str                  # catalog name (inferlab.hardware)
    usd_per_gpu_hour: float
    source: str
    date: str                 # when the figure was read (YYYY-MM-DD)
    note: str = ""


_RUNPOD = ("Runpod Serverless pricing, 'Active' (always-on) workers, per-second rate x 3,600, "
           "https://docs.runpod.io/serverless/pricing")
_READ = "2026-12-03"
_NOTE = "the page carries no date of its own; read from the course's stored copy of it on this date"

DEFAULT_PRICES: dict[str, Price] = {p.gpu: p for p in [
    Price("L4", round(0.00013 * 3600, 4), _RUNPOD, _READ, _NOTE),
    Price("L40S", round(0.00037 * 3600, 4), _RUNPOD, _READ, _NOTE),
    Price("A100-80GB", round(0.00060 * 3600, 4), _RUNPOD, _READ, _NOTE),
    Price("H100", round(0.00093 * 3600, 4), _RUNPOD, _READ, "listed as 'H100 PRO'; " + _NOTE),
    Price("H200", round(0.00124 * 3600, 4), _RUNPOD, _READ, "listed as 'H200 PRO'; " + _NOTE),
    Price("B200", round(0.00190 * 3600, 4), _RUNPOD, _READ, _NOTE),
]}


def price_of(gpu: str, table: dict[str, Price] | None = None) -> Price:
    """The price of one GPU-hour of ``gpu`` in ``table`` (default: DEFAULT_PRICES)."""
    table = DEFAULT_PRICES if table is None else table
    name = get_gpu(gpu).name
    if name not in table:
        raise ValueError(f"no price for {name}: add prices: {{{name}: {{usd_per_gpu_hour: ..., source: ..., "
                         f"date: ...}}}} to the spec (priced here: {', '.join(table) or 'none'})")
    return table[name]


def price_table(raw: dict) -> dict[str, Price]:
    """A spec's ``prices`` mapping (GPU -> usd_per_gpu_hour, source, date) as Price rows."""
    table = {}
    for gpu, row in raw.items():
        name = get_gpu(gpu).name
        if not isinstance(row, dict):
            raise ValueError(f"prices.{gpu}: give usd_per_gpu_hour, source and date (got {row!r})")
        missing = [key for key in ("usd_per_gpu_hour", "source", "date") if key not in row]
        if missing:
            raise ValueError(f"prices.{gpu}: missing {', '.join(missing)}; every price needs its source and date")
        usd = row["usd_per_gpu_hour"]
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or usd <= 0:
            raise ValueError(f"prices.{gpu}.usd_per_gpu_hour must be a positive number of dollars (got {usd!r})")
        table[name] = Price(name, float(usd), str(row["source"]), str(row["date"]), str(row.get("note", "")))
    return table
