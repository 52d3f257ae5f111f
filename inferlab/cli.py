"""The ``inferlab`` command: one entry point for learners, instructors and graders."""
from __future__ import annotations

import argparse
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
    report = grading.grade(Path(args.notebook), timeout=args.timeout, cell_timeout=args.cell_timeout,
                           parameters=params)
    print(report.table())
    out = Path(args.json) if args.json else Path.cwd() / (Path(args.notebook).stem + ".grade.json")
    grading.write_json(report, out)
    print(f"report written to {out}")
    return 0 if report.status in ("completed", "completed with errors") else 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="is this machine ready for the labs? (exit 1 with the fix if not)")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("model", help="the embedded model: prepare (convert once) or print its path")
    p.add_argument("action", choices=["prepare", "path"])
    p.add_argument("--force", action="store_true", help="convert again even if the cache has it")
    p.set_defaults(func=_model)

    p = sub.add_parser("grade", help="run a copy of a learner's notebook and score its graded checks")
    p.add_argument("notebook")
    p.add_argument("--timeout", type=float, default=1800, help="whole-notebook limit in seconds (default 1800)")
    p.add_argument("--cell-timeout", type=float, default=900, help="per-cell limit in seconds (default 900)")
    p.add_argument("--profile", choices=["auto", "cpu", "gpu"], help="override the notebook's PROFILE")
    p.add_argument("--json", help="where to write the JSON report (default: ./NOTEBOOK.grade.json)")
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
    from inferlab.bench import cli as bench_cli
    memory.add_cli(sub)
    bench_cli.add_cli(sub)
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
