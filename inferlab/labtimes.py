"""The log of measured lab times, and everything built from it: header lines, the README table,
and the estimate ``make doctor`` gives for the machine it runs on.

``timings/cpu-reference.json`` holds, per lab, one run per ISA class (``inferlab.host``), each
with the host that ran it and that host's speed probe:

    "04-vllm": {"seconds": 280.4, "host": "..., AVX2 (emulated), 2 cores", "isa": "avx2",
                "runs": {"avx2": {"seconds": 280.4, "host": "...", "probe": 1.92},
                         "avx512": {"seconds": 190.2, "host": "...", "probe": 1.31}}}

The top-level ``seconds``/``host``/``isa`` are the reference run: the AVX2 one when there is one
(the budget holds for laptops, most of which have AVX2 and no AVX-512), else the slowest.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

TIMINGS = Path("timings") / "cpu-reference.json"
REFERENCE_ISA = "avx2"
TIME_FIELD = re.compile(r"^\*\*Time\*\*:.*$", re.M)
TABLE_START, TABLE_END = "<!-- lab-table:start -->", "<!-- lab-table:end -->"


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def reference(entry: dict) -> dict:
    """The run a lab's budget is judged on: AVX2 if measured, else the slowest run."""
    runs = entry.get("runs", {})
    return runs.get(REFERENCE_ISA) or max(runs.values(), key=lambda r: r["seconds"])


def record(rows: list[dict], path: Path, host, probe_seconds: float) -> None:
    """Merge this run's successful lab times, measured on ``host``, into the log at ``path``."""
    log = load(path)
    for r in rows:
        if r["status"] != "ok":
            continue
        entry = log.setdefault(r["lab"], {})
        entry.setdefault("runs", {})[host.isa] = {"seconds": r["seconds"], "host": host.describe(),
                                                  "probe": round(probe_seconds, 3),
                                                  **({"peak_gib": r["peak_gib"]} if r.get("peak_gib") else {})}
        ref = reference(entry)
        ref_isa = next(isa for isa, run in entry["runs"].items() if run is ref)
        entry.update(seconds=ref["seconds"], host=ref["host"], isa=ref_isa)
        log[r["lab"]] = {key: entry[key] for key in ("seconds", "host", "isa", "runs")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(log.items())), indent=2) + "\n")


def _runs_slowest_first(entry: dict) -> list[dict]:
    return sorted(entry["runs"].values(), key=lambda r: -r["seconds"])


def time_line(entry: dict) -> str:
    """The **Time** line of a lab's header, one figure per host it was measured on."""
    figures = "; ".join(f"{duration(r['seconds'])} on {r['host']}" for r in _runs_slowest_first(entry))
    return (f"**Time**: {figures} (CPU profile, measured by `make reference`, see "
            "`timings/cpu-reference.json`; `make doctor` estimates it for your machine), plus the time "
            "you spend on the exercises.")


def stamp_header(solution: Path, entry: dict) -> bool:
    """Write the measured times into the header's **Time** line; True when it changed."""
    import nbformat
    nb = nbformat.read(solution, as_version=4)
    header = nb.cells[0]
    new = TIME_FIELD.sub(time_line(entry), header.source, count=1)
    if new == header.source:
        return False
    header.source = new
    nbformat.write(nb, solution)
    return True


def basis(entry: dict, isa_here: str) -> dict:
    """The run an estimate for a host of class ``isa_here`` starts from: the run on the same ISA class
    where there is one (bfloat16 and the engine's kernels depend on it), else the reference run."""
    return entry["runs"].get(isa_here) or reference(entry)


def estimate(entry: dict, probe_here: float, isa_here: str) -> float:
    """Seconds the lab should take here: the basis run's time scaled by the ratio of the speed probes."""
    run = basis(entry, isa_here)
    return run["seconds"] * probe_here / run["probe"]


# ----------------------------------------------------------------------------- README table

def lab_table(labs: list[tuple], log: dict) -> str:
    """Markdown table of the labs: one wall-time column per ISA class measured, the GPU tier's status,
    hosts underneath.

    labs: (stem, title) or (stem, title, gpu tier) tuples in lab order; the GPU tier is what the lab's
    header says after "**GPU tier**:" (e.g. "not yet run on a GPU").
    """
    from inferlab.host import ISA_CLASSES, ISA_NAMES
    measured = {isa for entry in log.values() for isa in entry.get("runs", {})}
    columns = [isa for isa in ISA_CLASSES if isa in measured]
    gpu = any(len(lab) > 2 for lab in labs)
    memory = any("peak_gib" in run for entry in log.values() for run in entry.get("runs", {}).values())
    head = ("| Lab | Topic | Chapter | " + " | ".join(f"CPU time, {ISA_NAMES[isa]}" for isa in columns) + " |"
            + (" Peak memory |" if memory else "") + (" GPU tier |" if gpu else ""))
    rows = [head, "|---|---|---|" + "---|" * (len(columns) + memory + gpu)]
    for stem, title, *tier in labs:
        runs = log.get(stem, {}).get("runs", {})
        times = " | ".join(_figure(runs[isa]) if isa in runs else "not measured" for isa in columns)
        rows.append(f"| [{stem}](labs/{stem}.ipynb) | {title} | [{stem}.md](content/{stem}.md) | {times} |"
                    + (f" {_peak(runs)} |" if memory else "")
                    + (f" {tier[0] if tier else 'not stated'} |" if gpu else ""))
    hosts = sorted({run["host"] for entry in log.values() for run in entry.get("runs", {}).values()})
    if hosts:
        rows += ["", "Measured on: " + "; ".join(f"`{h}`" for h in hosts) + "."]
    if any(EMULATED in h for h in hosts):
        rows += ["", f"{EMULATED_MARK} an AVX-512 machine running as an AVX2 one (`tools/as-avx2-host`); a real AVX2 "
                 "CPU (most laptops) is usually slower than that figure."]
    return "\n".join(rows)


EMULATED = "(emulated)"
EMULATED_MARK = "†"


def _peak(runs: dict) -> str:
    """The largest peak memory any run of the lab measured (every process of the run, PSS)."""
    peaks = [run["peak_gib"] for run in runs.values() if "peak_gib" in run]
    return f"{max(peaks):.1f} GiB" if peaks else "not measured"


def _figure(run: dict) -> str:
    """A run's time for the table, marked when it was measured on an emulated instruction set."""
    return duration(run["seconds"]) + (f" {EMULATED_MARK}" if EMULATED in run.get("host", "") else "")


def update_readme(readme: Path, labs: list[tuple], log: dict) -> bool:
    """Rewrite the table between the README's markers; return True when it changed."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    new = text[:start] + "\n" + lab_table(labs, log) + "\n" + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text
