"""An estimate as text: byte counts in GiB and GB, and the table ``inferlab vram`` prints."""
from __future__ import annotations

from inferlab.memory.sizing import GB, USABLE_FRACTION, GiB


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


def format_per_device(est: dict) -> str:
    """Readable table of a :func:`inferlab.memory.parallel.per_device` result, one row per stage."""
    lines = [f"Tensor parallel {est['tensor_parallel']} x pipeline parallel {est['pipeline_parallel']} = "
             f"{est['devices']} devices; bytes on each device of a stage:", "",
             f"  {'stage':<7}{'layers':>7}  {'weights':<30}{'KV cache':<30}{'total':<30}"]
    for row in est["stages"]:
        lines.append(f"  {row['stage']:<7}{row['layers']:>7}  {format_bytes(row['weight_bytes']):<30}"
                     f"{format_bytes(row['kv_bytes']):<30}{format_bytes(row['total_bytes']):<30}")
    lines += ["", f"busiest device (stage {est['busiest_stage']}): {format_bytes(est['total_bytes'])}, "
              f"activations and overhead included"]
    return "\n".join(lines)
