"""The ``inferlab`` command: one entry point for learners, instructors and graders."""
from __future__ import annotations

import argparse
import json
import os
import platform
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
    params = {"PROFILE": args.profile} if args.profile else None
    if args.action == "run":
        rows = authoring.run_solutions(solutions, REPO / "build", params, args.only)
        authoring.record_timings(rows, REPO / "build" / "timings.json", _machine())
    else:  # reference: re-execute in place on the CPU profile, then refresh labs/
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        rows = authoring.run_solutions(solutions, None, None, args.only)
        authoring.record_timings(rows, REPO / authoring.TIMINGS, _machine())
        for row in rows:
            if row["status"] == "ok":
                authoring.stamp_time(solutions / f"{row['lab']}.ipynb", row["seconds"], _machine())
        authoring.generate_labs(solutions, labs)
        authoring.update_readme(REPO / "README.md", solutions, REPO / authoring.TIMINGS)
    print(authoring.format_rows(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _machine() -> str:
    return f"{os.cpu_count()} cores, {platform.machine()}"


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

    from inferlab import memory
    memory.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"inferlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
