"""The ``inferlab`` command: one entry point for learners, instructors and graders.

Every subcommand is declared here (its arguments and a small handler); the handlers call the
concept modules, which know nothing of the command line.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _doctor(args) -> int:
    from inferlab import doctor
    return doctor.main()


def _model(args) -> int:
    from inferlab import models
    if args.action == "path":
        print(models.embedded_model_dir())
        return 0 if models.embedded_ready() else 1
    path = models.prepare_embedded(force=args.force)
    print(f"embedded model ready: {path}")
    return 0


def _grade(args) -> int:
    from inferlab import grading
    params = {"PROFILE": args.profile} if args.profile else None
    out = Path(args.out)
    results = grading.grade_class(args.notebooks, out, timeout=args.timeout, cell_timeout=args.cell_timeout,
                                  labs=Path(args.labs), regrade=args.regrade, parameters=params)
    if not results:
        print(f"no notebooks found in {' '.join(args.notebooks)}")
        return 1
    if len(results) == 1:
        report = results[0][0]
        print(report.table())
        if args.json:
            grading.write_json(report, Path(args.json))
            print(f"report written to {args.json}")
    else:
        for report, fresh in results:
            print(report.line() + ("" if fresh else "  [unchanged since graded, skipped]"))
    skipped = sum(not fresh for _, fresh in results)
    print(f"gradebook: {out / 'gradebook.csv'} and {out / 'gradebook.json'}; feedback in {out / 'feedback'}"
          + (f"; {skipped} unchanged, not regraded (--regrade to redo)" if skipped else ""))
    ran = ("completed", "completed with errors")
    return 0 if all(report.status in ran for report, _ in results) else 1


def _labs(args) -> int:
    from inferlab import authoring
    solutions, labs = REPO / "solutions", REPO / "labs"
    if args.action == "generate":
        changed = authoring.generate_labs(solutions, labs)
        authoring.update_readme(REPO / "README.md", solutions, REPO / authoring.TIMINGS)
        print("\n".join(f"wrote {p.relative_to(REPO)}" for p in changed) or "labs/ is up to date")
        return 0
    from inferlab import execution, host, labtimes
    params = {"PROFILE": args.profile} if args.profile else None
    here = host.detect()
    print(f"host: {here.describe()}", flush=True)
    if args.action == "run":
        rows = execution.run_solutions(solutions, REPO / "build", params, args.only)
        labtimes.record(rows, REPO / "build" / "timings.json", here, host.probe())
    else:  # reference: re-execute in place on the CPU profile, then refresh labs/
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        probe = host.probe()           # before the labs, on an idle machine, like doctor's probe
        rows = execution.run_solutions(solutions, None, None, args.only)
        labtimes.record(rows, REPO / authoring.TIMINGS, here, probe)
        log = labtimes.load(REPO / authoring.TIMINGS)
        for row in rows:
            if row["status"] == "ok":
                labtimes.stamp_header(solutions / f"{row['lab']}.ipynb", log[row["lab"]])
        authoring.generate_labs(solutions, labs)
        authoring.update_readme(REPO / "README.md", solutions, REPO / authoring.TIMINGS)
    print(execution.format_rows(rows, here.describe()))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _serve(args) -> int:
    """Run an engine in the foreground until Ctrl-C or SIGTERM; the engine goes down with us."""
    import signal
    import time
    from inferlab import engines, models, profiles

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_sigterm)
    profile = profiles.resolve(args.profile, args.model)
    print(f"starting {args.engine} with {models.display_name(profile.model)} on {engines.HOST} "
          f"(profile {profile.name}); this takes a while...", flush=True)
    try:
        with engines.serve(args.engine, profile=profile, port=args.port, timeout=args.timeout,
                           kv_cache_gib=args.kv_cache_gib, extra_args=args.extra) as server:
            print(f"ready after {server.startup_seconds:.0f} s: {server.base_url}  "
                  f"(model name {server.model_name!r}, engine log {server.log_path}, removed when it stops)", flush=True)
            print("Ctrl-C stops the server.", flush=True)
            while server.alive():
                time.sleep(0.5)
            print(f"the engine exited with code {server.proc.returncode}; last lines of its log:\n"
                  f"{server.log_tail(30)}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped.", flush=True)
        return 0


def _vram(args) -> int:
    from inferlab import memory
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    step = args.max_batched_tokens
    config = memory.load_config(args.config)
    tp, pp = args.tensor_parallel, args.pipeline_parallel
    if tp != 1 or pp != 1:
        est = memory.per_device(config, dtype=args.dtype, kv_dtype=args.kv_dtype, context=args.context,
                                batch=args.batch, tensor_parallel=tp, pipeline_parallel=pp,
                                max_batched_tokens=None if step == 0 else step)
        print(json.dumps(est, indent=2) if args.json else memory.format_per_device(est))
        return 0
    est = memory.estimate(config, dtype=args.dtype, kv_dtype=args.kv_dtype,
                          context=args.context, batch=args.batch, gpus=gpus,
                          max_batched_tokens=None if step == 0 else step)
    print(json.dumps(est, indent=2) if args.json else memory.format_report(est))
    return 0


def _bench(args) -> int:
    from inferlab import bench
    from inferlab.metrics import parse_slo
    slo = parse_slo(args.goodput)
    percentiles = [float(p) for p in args.percentiles.split(",") if p.strip()]
    if any(not 0 < p < 100 for p in percentiles):
        raise ValueError(f"--percentiles takes numbers between 0 and 100, e.g. 50,90,99 (got {args.percentiles})")
    if args.num_prompts < 1 or args.input_len < 1 or args.output_len < 1:
        raise ValueError("--num-prompts, --input-len and --output-len must be at least 1")
    cpus = bench.resolve_cpus(args.cpus)
    tokenizer = bench.load_tokenizer(args.model, args.tokenizer)
    requests = bench.build_workload(tokenizer, args.dataset, args.num_prompts, args.input_len, args.output_len,
                                    args.seed, args.range_ratio, args.prefix_len)
    endpoint = "chat" if args.dataset == "conversation" else args.endpoint
    shape = bench.describe(requests)
    print(f"workload: {args.dataset}, {len(requests)} prompts, input {shape['input_len']['mean']:.0f} tokens "
          f"(mean), output {shape['output_len']['mean']:.0f} tokens (mean); request rate {args.request_rate:g}/s, "
          f"burstiness {args.burstiness:g}, max concurrency {args.max_concurrency or 'unlimited'}; "
          f"client on CPU(s) {sorted(cpus) if cpus else 'any'}", flush=True)
    result = bench.run(args.base_url, args.model, requests, endpoint=endpoint, request_rate=args.request_rate,
                       burstiness=args.burstiness, max_concurrency=args.max_concurrency, seed=args.seed, slo=slo,
                       percentiles=percentiles, timeout=args.timeout, num_warmups=args.num_warmups, cpus=cpus)
    result["workload"] = {"dataset": args.dataset, **shape}
    print(bench.report_table(result))
    for line in bench.failed_errors(result):
        print(f"failed: {line}")
    if args.json:
        print(f"result written to {bench.write_json(result, args.json)}")
    if result["completed"] == 0:
        print(f"inferlab bench: every request failed; the first reason: {result['errors'][0]}", file=sys.stderr)
        return 1
    return 0


def _plan(args) -> int:
    from inferlab import capacity
    plan = capacity.make_plan(capacity.load(args.spec))
    print(capacity.report(plan))
    if args.json:
        from inferlab.bench.records import write_atomically
        write_atomically(Path(args.json), json.dumps(plan, indent=2) + "\n")
        print(f"plan written to {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="is this machine ready for the labs? (exit 1 with the fix if not)")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("model", help="the embedded model: prepare (convert once) or print its path")
    p.add_argument("action", choices=["prepare", "path"])
    p.add_argument("--force", action="store_true", help="convert again even if the cache has it")
    p.set_defaults(func=_model)

    p = sub.add_parser("grade", help="grade notebooks (files, folders, globs): the lab's source runs with each "
                                     "learner's exercise cells; a gradebook and feedback per learner")
    p.add_argument("notebooks", nargs="+", help="notebooks, folders of them (one folder per learner), or globs")
    p.add_argument("--out", default="grades", help="folder for the gradebook, feedback and reports (default ./grades)")
    p.add_argument("--regrade", action="store_true", help="grade again what is unchanged since it was graded")
    p.add_argument("--labs", default=str(REPO / "labs"), help="the labs' sources the submissions are graded "
                   "against (default: this course's labs/)")
    p.add_argument("--timeout", type=float, default=1800, help="whole-notebook limit in seconds (default 1800)")
    p.add_argument("--cell-timeout", type=float, default=900, help="per-cell limit in seconds (default 900)")
    p.add_argument("--profile", choices=["auto", "cpu", "gpu"], help="override the notebook's PROFILE")
    p.add_argument("--json", help="also write a single notebook's report here")
    p.set_defaults(func=_grade)

    p = sub.add_parser("labs", help="generate labs/ from solutions/, run solutions, or refresh reference outputs")
    p.add_argument("action", choices=["generate", "run", "reference"])
    p.add_argument("--profile", choices=["auto", "cpu", "gpu"], help="PROFILE passed to every lab (run only)")
    p.add_argument("--only", nargs="*", help="lab number prefixes, e.g. 01 02")
    p.set_defaults(func=_labs)

    p = sub.add_parser("serve", help="run an inference engine in the foreground; Ctrl-C stops it",
                       description="Start an OpenAI-compatible server on 127.0.0.1, print its base URL once "
                                   "healthy, and stop it (all of its processes) on Ctrl-C or SIGTERM. "
                                   "Engine flags go after '--', e.g. inferlab serve vllm -- --max-model-len 2048")
    p.add_argument("engine", choices=["vllm"])
    p.add_argument("--model", help="local Hugging Face directory or hub id (default: the profile's model)")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--kv-cache-gib", type=float, help="KV-cache size in GiB (default on CPU: 1)")
    p.add_argument("--profile", choices=["auto", "cpu", "gpu"], default="auto")
    p.add_argument("--timeout", type=float, help="seconds to become healthy (default 300 on CPU, 1200 on GPU)")
    p.set_defaults(func=_serve, extra=[])

    from inferlab import memory
    dtypes = sorted(memory.DTYPE_BYTES)
    p = sub.add_parser(
        "vram",
        help="estimate GPU memory for serving a model from its config.json",
        description="Estimate weights + KV cache + activations + overhead from a config.json. "
                    "--config takes a file, a directory holding config.json, or a shipped name: "
                    + ", ".join(memory.shipped_configs()),
    )
    p.add_argument("--config", required=True, help="config.json, a directory holding it, or a shipped name")
    p.add_argument("--dtype", default="bf16", choices=dtypes, help="weight dtype (default bf16)")
    p.add_argument("--kv-dtype", default="bf16", choices=dtypes, help="KV-cache dtype (default bf16)")
    p.add_argument("--context", type=int, default=4096, help="tokens per sequence (default 4096)")
    p.add_argument("--batch", type=int, default=1, help="concurrent sequences (default 1)")
    p.add_argument("--max-batched-tokens", type=int, default=memory.DEFAULT_MAX_BATCHED_TOKENS,
                   help="tokens per forward step, as with chunked prefill (default "
                        f"{memory.DEFAULT_MAX_BATCHED_TOKENS}, vLLM's serve default on H100); "
                        "0 = prefill the whole batch in one pass")
    p.add_argument("--tensor-parallel", type=int, default=1, help="TP ranks: bytes per device (default 1)")
    p.add_argument("--pipeline-parallel", type=int, default=1, help="PP stages: bytes per device (default 1)")
    p.add_argument("--gpus", default=None, help="comma-separated GPU names for the fits table (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_vram)

    p = sub.add_parser(
        "bench", help="load-test an OpenAI-compatible server (vLLM's metric definitions and JSON keys)",
        description="Send a workload built offline to an OpenAI-compatible server, streamed, and report TTFT, "
                    "TPOT, ITL, E2EL, throughput and goodput as vLLM's serving benchmark defines them. "
                    "Closed loop: --request-rate inf --max-concurrency C. Open loop: --request-rate R.")
    p.add_argument("--base-url", required=True, help="server root or OpenAI base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="the model name the server knows (GET /v1/models)")
    p.add_argument("--tokenizer", help="local model directory whose tokenizer sizes the prompts (default: the model)")
    p.add_argument("--endpoint", choices=["chat", "completions"], default="completions",
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
    p.set_defaults(func=_bench)

    p = sub.add_parser("plan", help="capacity plan: a YAML/JSON spec (model, workload, SLO, GPUs, prices) in, "
                                    "the fleet and its cost out, every assumption printed",
                       description="Size a fleet for a workload within an SLO on each GPU and weight format of the "
                                   "spec, ranked by the cost of a million output tokens. SPEC is a .yaml/.json "
                                   "file or a shipped name (chat-8b); see inferlab/data/plans/chat-8b.yaml.")
    p.add_argument("spec", help="the plan spec: a .yaml or .json file, or a shipped name")
    p.add_argument("--json", help="also write the whole plan (every option, every assumption) to this file")
    p.set_defaults(func=_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if argv[:1] == ["serve"] and "--" in argv:     # engine flags after "--" go to the engine untouched
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if extra:
        args.extra = extra
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"inferlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
