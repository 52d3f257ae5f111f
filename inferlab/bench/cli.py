"""``inferlab bench``: the load generator from the command line."""
from __future__ import annotations

import math
import os
import sys

from inferlab.bench.loadgen import ENDPOINTS, run
from inferlab.bench.results import failed_errors, report_table, write_json
from inferlab.bench.workloads import build_workload, describe, load_tokenizer
from inferlab.metrics import parse_slo


def _cli(args) -> int:
    slo = parse_slo(args.goodput)
    percentiles = [float(p) for p in args.percentiles.split(",") if p.strip()]
    if any(not 0 < p < 100 for p in percentiles):
        raise ValueError(f"--percentiles takes numbers between 0 and 100, e.g. 50,90,99 (got {args.percentiles})")
    if args.num_prompts < 1 or args.input_len < 1 or args.output_len < 1:
        raise ValueError("--num-prompts, --input-len and --output-len must be at least 1")
    cpus = _parse_cpus(args.cpus)
    tokenizer = load_tokenizer(args.model, args.tokenizer)
    requests = build_workload(tokenizer, args.dataset, args.num_prompts, args.input_len, args.output_len, args.seed,
                              args.range_ratio, args.prefix_len)
    endpoint = "chat" if args.dataset == "conversation" else args.endpoint
    shape = describe(requests)
    print(f"workload: {args.dataset}, {len(requests)} prompts, input {shape['input_len']['mean']:.0f} tokens "
          f"(mean), output {shape['output_len']['mean']:.0f} tokens (mean); request rate {args.request_rate:g}/s, "
          f"burstiness {args.burstiness:g}, max concurrency {args.max_concurrency or 'unlimited'}; "
          f"client on CPU(s) {sorted(cpus) if cpus else 'any'}", flush=True)
    result = run(args.base_url, args.model, requests, endpoint=endpoint, request_rate=args.request_rate,
                 burstiness=args.burstiness, max_concurrency=args.max_concurrency, seed=args.seed, slo=slo,
                 percentiles=percentiles, timeout=args.timeout, num_warmups=args.num_warmups, cpus=cpus)
    result["workload"] = {"dataset": args.dataset, **shape}
    print(report_table(result))
    for line in failed_errors(result):
        print(f"failed: {line}")
    if args.json:
        print(f"result written to {write_json(result, args.json)}")
    if result["completed"] == 0:
        print(f"inferlab bench: every request failed; the first reason: {result['errors'][0]}", file=sys.stderr)
        return 1
    return 0


def _parse_cpus(text: str) -> set[int] | None:
    """--cpus: "auto" (cores no local engine is pinned to), "none", or a list such as "1,3"."""
    if text == "none":
        return None
    if text == "auto":
        from inferlab import engines
        return engines.client_cpus()
    try:
        cpus = {int(c) for c in text.split(",") if c.strip()}
    except ValueError:
        raise ValueError(f"--cpus takes auto, none or a list of CPU numbers such as 1,3 (got {text!r})") from None
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus <= usable:
        raise ValueError(f"--cpus {text}: this process may only use CPUs {sorted(usable)}")
    return cpus


def add_cli(sub) -> None:
    p = sub.add_parser(
        "bench", help="load-test an OpenAI-compatible server (vLLM's metric definitions and JSON keys)",
        description="Send a workload built offline to an OpenAI-compatible server, streamed, and report TTFT, "
                    "TPOT, ITL, E2EL, throughput and goodput as vLLM's serving benchmark defines them. "
                    "Closed loop: --request-rate inf --max-concurrency C. Open loop: --request-rate R.")
    p.add_argument("--base-url", required=True, help="server root or OpenAI base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="the model name the server knows (GET /v1/models)")
    p.add_argument("--tokenizer", help="local model directory whose tokenizer sizes the prompts (default: the model)")
    p.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="completions",
                   help="API to call (default completions; the conversation dataset always uses chat)")
    p.add_argument("--dataset", choices=["random", "shared-prefix", "conversation"], default="random")
    p.add_argument("--num-prompts", type=int, default=200)
    p.add_argument("--input-len", type=int, default=256, help="prompt tokens per request (default 256)")
    p.add_argument("--output-len", type=int, default=64, help="output tokens per request, ignore_eos (default 64)")
    p.add_argument("--range-ratio", type=float, default=0.0,
                   help="draw lengths uniformly from L(1-r)..L(1+r) (random dataset; default 0: exact)")
    p.add_argument("--prefix-len", type=int, default=0, help="shared prefix tokens (shared-prefix dataset)")
    p.add_argument("--request-rate", type=float, default=math.inf,
                   help="requests per second, or inf to send all at once (default inf)")
    p.add_argument("--max-concurrency", type=int, help="most requests in flight (default: no limit)")
    p.add_argument("--burstiness", type=float, default=1.0, help="gamma shape of arrival gaps; 1 = Poisson")
    p.add_argument("--goodput", nargs="+", metavar="NAME:MS", help="objectives, e.g. ttft:500 tpot:50 e2el:5000")
    p.add_argument("--percentiles", default="50,90,99", help="percentiles to report (default 50,90,99)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-warmups", type=int, default=0, help="requests sent and discarded before the run")
    p.add_argument("--timeout", type=float, default=600, help="per-request limit in seconds (default 600)")
    p.add_argument("--cpus", default="auto",
                   help="CPUs for the load generator: auto (those no local engine is pinned to), none, or e.g. 1,3")
    p.add_argument("--json", help="write the result (vLLM's keys, plus per-request records) to this file")
    p.set_defaults(func=_cli)
