"""``inferlab vram``: an estimate as a table or JSON on the command line."""
from __future__ import annotations

import argparse
import json
import sys

from inferlab.memory.shapes import load_config, shipped_configs
from inferlab.memory.sizing import DEFAULT_MAX_BATCHED_TOKENS, DTYPE_BYTES, GB, USABLE_FRACTION, GiB, estimate


def format_bytes(n: float) -> str:
    """e.g. '14.96 GiB (16.06 GB)'."""
    return f"{n / GiB:,.2f} GiB ({n / GB:,.2f} GB)"


def _format_params(n: int) -> str:
    return f"{n:,} ({n / 1e9:.2f} B)"


def _activation_note(est: dict) -> str:
    step = est.get("max_batched_tokens")
    if step is None:
        return "peak of prefilling the whole batch in one pass"
    return f"peak of one step of <= {step:,} tokens"


def format_report(est: dict) -> str:
    """Readable table of an :func:`estimate` result. GiB = 2**30 bytes, GB = 10**9 bytes."""
    lines = [
        f"Model: {est.get('architecture', est['model_type'])} ({est['model_type']}), attention {est['attention']}",
        f"Weights in {est['dtype']}, KV cache in {est['kv_dtype']}, context {est['context']:,} tokens, batch {est['batch']}",
        "",
        f"  {'parameters':<18}{_format_params(est['params'])}",
        f"  {'active per token':<18}{_format_params(est['active_params'])}",
        "",
        f"  {'weights':<18}{format_bytes(est['weight_bytes'])}",
        f"  {'KV cache':<18}{format_bytes(est['kv_bytes'])}"
        f"  [{est['kv_bytes_per_token']:,} B/token x {est['context']:,} x {est['batch']}]",
        f"  {'activations':<18}{format_bytes(est['activation_bytes'])}  [{_activation_note(est)}]",
        f"  {'overhead':<18}{format_bytes(est['overhead_bytes'])}  [CUDA context + allocator]",
        f"  {'total':<18}{format_bytes(est['total_bytes'])}",
    ]
    fits = est.get("fits") or {}
    if fits:
        lines += ["", f"GPUs needed (using {est.get('usable_fraction', USABLE_FRACTION):.0%} of each GPU's memory):"]
        for name, count in fits.items():
            lines.append(f"  {name:<12}{'more than 8' if count is None else count}")
    for warning in est.get("warnings") or []:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``vram`` on an argparse subparsers object.

    inferlab vram --config PATH|DIR|NAME [--dtype bf16] [--kv-dtype bf16]
                  [--context 4096] [--batch 1] [--max-batched-tokens 8192]
                  [--gpus H100,L4] [--json]
    """
    dtypes = sorted(DTYPE_BYTES)
    parser = subparsers.add_parser(
        "vram",
        help="estimate GPU memory for serving a model from its config.json",
        description="Estimate weights + KV cache + activations + overhead from a config.json. "
                    "--config takes a file, a directory holding config.json, or a shipped name: "
                    + ", ".join(shipped_configs()),
    )
    parser.add_argument("--config", required=True, help="config.json, a directory holding it, or a shipped name")
    parser.add_argument("--dtype", default="bf16", choices=dtypes, help="weight dtype (default bf16)")
    parser.add_argument("--kv-dtype", default="bf16", choices=dtypes, help="KV-cache dtype (default bf16)")
    parser.add_argument("--context", type=int, default=4096, help="tokens per sequence (default 4096)")
    parser.add_argument("--batch", type=int, default=1, help="concurrent sequences (default 1)")
    parser.add_argument("--max-batched-tokens", type=int, default=DEFAULT_MAX_BATCHED_TOKENS,
                        help="tokens per forward step, as with chunked prefill (default "
                             f"{DEFAULT_MAX_BATCHED_TOKENS}, vLLM's serve default on H100); "
                             "0 = prefill the whole batch in one pass")
    parser.add_argument("--gpus", default=None, help="comma-separated GPU names for the fits table (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run_vram)
    return parser


def run_vram(args: argparse.Namespace) -> int:
    """Handler for ``inferlab vram``. Bad input: one line on stderr and exit status 2."""
    try:
        gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
        step = getattr(args, "max_batched_tokens", DEFAULT_MAX_BATCHED_TOKENS)
        est = estimate(load_config(args.config), dtype=args.dtype, kv_dtype=args.kv_dtype,
                       context=args.context, batch=args.batch, gpus=gpus,
                       max_batched_tokens=None if step == 0 else step)
    except ValueError as exc:
        print(f"inferlab vram: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(est, indent=2) if args.json else format_report(est))
    return 0
