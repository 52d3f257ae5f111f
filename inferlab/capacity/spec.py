"""A plan's input: a YAML or JSON spec, read and checked, every mistake a one-line error that says what to
change. ``EXAMPLE`` is a complete spec (``inferlab/data/plans/chat-8b.yaml`` is the same on disk)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferlab import hardware, memory
from inferlab.capacity.prices import DEFAULT_PRICES, price_of, price_table
from inferlab.capacity.trace import characterise, load as load_trace

PLANS = Path(__file__).resolve().parent.parent / "data" / "plans"
KEYS = {"model", "workload", "slo", "gpus", "weights", "kv_dtype", "efficiency", "headroom", "prices",
        "prefix_caching", "max_gpus_per_replica"}
SUMMARY_KEYS = ("mean_rate", "peak_rate", "input_mean", "output_mean", "tokens_p99")


class PlanError(ValueError):
    """A spec the plan cannot use, or a plan nothing in the spec can meet; one line, with what to change."""


@dataclass
class Spec:
    model: str
    config: dict
    workload: dict            # SUMMARY_KEYS (+ prefix_share, source)
    slo: dict                 # ttft_ms, tpot_ms
    gpus: list[str]
    weights: list[str]
    kv_dtype: str
    efficiency: dict          # prefill, decode
    utilisation: float
    spare_replicas: int
    prices: dict = field(default_factory=dict)
    prefix_caching: bool = False
    max_gpus_per_replica: int = 8


def _number(value, where: str, low: float = 0.0, high: float | None = None, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(f"{where} must be a number (got {value!r})")
    if value < low or (strict and value == low) or (high is not None and value > high):
        span = f"in ({low:g}, {high:g}]" if high is not None else f"{'above' if strict else 'at least'} {low:g}"
        raise PlanError(f"{where} must be {span} (got {value!r})")
    return float(value)


def _workload(raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise PlanError("workload: give a trace (workload: {trace: chat-day, scale: 40}) or a summary with "
                        + ", ".join(SUMMARY_KEYS))
    if "trace" in raw:
        frame = load_trace(raw["trace"])
        scale = _number(raw.get("scale", 1), "workload.scale")
        window = _number(raw.get("peak_window_s", 300), "workload.peak_window_s")
        stats = characterise(frame, window)
        totals = frame["input_tokens"] + frame["output_tokens"]
        return {"mean_rate": stats["mean_rate"] * scale, "peak_rate": stats["peak_rate"] * scale,
                "input_mean": stats["input_mean"], "output_mean": stats["output_mean"],
                "tokens_p99": float(totals.quantile(0.99)), "prefix_share": stats["prefix_share"],
                "source": f"trace {raw['trace']} x {scale:g} (peak: busiest {window:g} s window)"}
    missing = [k for k in SUMMARY_KEYS if k not in raw]
    if missing:
        raise PlanError(f"workload: missing {', '.join(missing)} (or give a trace: workload: {{trace: chat-day}})")
    out = {k: _number(raw[k], f"workload.{k}") for k in SUMMARY_KEYS}
    if out["peak_rate"] < out["mean_rate"]:
        raise PlanError(f"workload.peak_rate ({out['peak_rate']:g}) is below mean_rate ({out['mean_rate']:g}): "
                        "the peak is the busiest window's rate")
    out["prefix_share"] = _number(raw.get("prefix_share", 0.0), "workload.prefix_share", 0.0, 1.0, strict=False)
    out["source"] = "summary given in the spec"
    return out


def parse(raw: dict) -> Spec:
    """A spec from a mapping (what YAML or JSON load gives)."""
    if not isinstance(raw, dict):
        raise PlanError("a plan spec is a mapping of model, workload, slo, gpus, efficiency, ...")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise PlanError(f"unknown key(s) {', '.join(unknown)} in the spec; known: {', '.join(sorted(KEYS))}")
    for key in ("model", "workload", "slo", "gpus", "efficiency"):
        if key not in raw:
            raise PlanError(f"the spec needs '{key}' (see inferlab/data/plans/chat-8b.yaml)")
    try:
        config = memory.load_config(raw["model"])
    except (ValueError, FileNotFoundError) as exc:
        raise PlanError(f"model: {str(exc).splitlines()[0]}") from None
    try:
        memory.per_device(config, context=1)          # the per-device sizing a plan needs covers this model
    except ValueError as exc:
        raise PlanError(f"model: {exc}; plan a dense or all-MoE model with MHA/GQA/MQA attention "
                        "(e.g. llama-3.1-8b, mixtral-8x7b)") from None
    slo = raw["slo"] if isinstance(raw["slo"], dict) else {}
    if set(slo) != {"ttft_ms", "tpot_ms"}:
        raise PlanError(f"slo needs exactly ttft_ms and tpot_ms, in milliseconds (got {raw['slo']!r})")
    gpus = raw["gpus"] if isinstance(raw["gpus"], list) and raw["gpus"] else None
    if gpus is None:
        raise PlanError(f"gpus: a list of catalog GPUs, e.g. [L4, H100] (known: {', '.join(hardware.CATALOG)})")
    try:
        gpus = [hardware.get_gpu(g).name for g in gpus]
    except ValueError as exc:
        raise PlanError(f"gpus: {exc}") from None
    weights = raw.get("weights", ["bf16"])
    weights = weights if isinstance(weights, list) else [weights]
    for dtype in weights + [raw.get("kv_dtype", "bf16")]:
        if dtype not in memory.DTYPE_BYTES:
            raise PlanError(f"unknown dtype {dtype!r} in weights/kv_dtype; known: {', '.join(memory.DTYPE_BYTES)}")
    eff = raw["efficiency"] if isinstance(raw["efficiency"], dict) else {}
    if set(eff) != {"prefill", "decode"}:
        raise PlanError("efficiency needs prefill and decode: the sustained fractions of peak FLOP/s and bandwidth "
                        "(lab 11 section 3 calibrates them)")
    headroom = raw.get("headroom", {})
    try:
        table = price_table(raw["prices"]) if raw.get("prices") else dict(DEFAULT_PRICES)
        for gpu in gpus:
            price_of(gpu, table)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    return Spec(model=str(raw["model"]), config=config, workload=_workload(raw["workload"]),
                slo={k: _number(v, f"slo.{k}") for k, v in slo.items()}, gpus=gpus, weights=weights,
                kv_dtype=raw.get("kv_dtype", "bf16"),
                efficiency={k: _number(v, f"efficiency.{k}", 0.0, 1.0) for k, v in eff.items()},
                utilisation=_number(headroom.get("utilisation", 0.7), "headroom.utilisation", 0.0, 1.0),
                spare_replicas=int(_number(headroom.get("spare_replicas", 1), "headroom.spare_replicas", 0.0,
                                           strict=False)),
                prices=table, prefix_caching=bool(raw.get("prefix_caching", False)),
                max_gpus_per_replica=int(_number(raw.get("max_gpus_per_replica", 8), "max_gpus_per_replica", 1.0,
                                                 strict=False)))


def load(path: str | Path) -> Spec:
    """A spec from a .yaml/.yml/.json file, or a shipped one by name (``chat-8b``)."""
    path = Path(path)
    if not path.exists() and (PLANS / f"{path}.yaml").exists():
        path = PLANS / f"{path}.yaml"
    if not path.exists():
        raise PlanError(f"no spec file {path}; shipped: {', '.join(p.stem for p in sorted(PLANS.glob('*.yaml')))}")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            import yaml
            raw = yaml.safe_load(text)
    except Exception as exc:     # the parser's own message names the line
        raise PlanError(f"{path.name} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                        f"{' '.join(str(exc).split())}") from None
    return parse(raw)
