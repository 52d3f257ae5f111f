"""The decision sequence as one call: workload -> memory -> parallelism -> operating point -> fleet -> cost,
for every GPU and weight format in a spec, ranked by the cost of a million output tokens.

``make_plan(spec)`` returns a dict (what ``--json`` writes); ``report(plan)`` is the readable version with
every assumption printed. An option that cannot work (fits no layout, misses the SLO even alone) is kept
with its reason; when no option works the plan fails with one line that says what to change.
"""
from __future__ import annotations

from inferlab import hardware, memory
import inferlab.capacity.perfmodel as pm
from inferlab.capacity.prices import price_of
from inferlab.capacity.fleet import fleet
from inferlab.capacity.sizing import layout_concurrency
from inferlab.capacity.spec import PlanError, Spec, parse
from inferlab.parallel.layout import ParallelLayoutError, validate_layout


def _peak_flops(gpu: hardware.GPU, weights: str) -> float:
    """FP8 weights run FP8 tensor cores where the GPU has them; other formats compute in BF16."""
    fp8 = weights.startswith("fp8") or weights == "float8"
    return (gpu.fp8_tflops if fp8 and gpu.fp8_tflops else gpu.bf16_tflops) * 1e12


def _layouts(spec: Spec, gpu: hardware.GPU, weights: str) -> list[tuple[int, int]]:
    """The smallest layout that fits, then every larger power-of-two TP up to the node (more GPUs, faster steps)."""
    first = memory.smallest_layout(spec.config, gpu.memory_bytes, max_gpus=spec.max_gpus_per_replica,
                                   node_size=min(8, spec.max_gpus_per_replica), dtype=weights,
                                   kv_dtype=spec.kv_dtype, context=int(spec.workload["tokens_p99"]))
    if first is None:
        return []
    tp, pp = first
    if pp > 1:
        return [first]
    s = memory.shape_from_config(spec.config)
    out = []
    while tp <= min(8, spec.max_gpus_per_replica):
        try:
            validate_layout(s.heads, s.kv_heads, s.layers, tp, 1)
            out.append((tp, 1))
        except ParallelLayoutError:
            pass
        tp *= 2
    return out


def _option(spec: Spec, gpu: hardware.GPU, weights: str, tp: int, pp: int) -> dict:
    w = spec.workload
    row = {"gpu": gpu.name, "weights": weights, "tensor_parallel": tp, "pipeline_parallel": pp,
           "gpus_per_replica": tp * pp}
    held = layout_concurrency(spec.config, gpu.memory_bytes, tp, pp, w["tokens_p99"], weights, spec.kv_dtype)
    row["kv_concurrency"] = held
    if held < 1:
        return {**row, "feasible": False, "reason": f"no room for one {w['tokens_p99']:.0f}-token request's KV"}
    cost = pm.ModelCost(memory.active_param_count(spec.config), memory.weight_bytes(spec.config, weights),
                        memory.kv_bytes_per_token(spec.config, spec.kv_dtype))
    # pipeline stages run one after another for a token: a step's time is that of the tp GPUs of one stage
    hw = pm.Hardware(f"{tp}x{gpu.name}", tp * _peak_flops(gpu, weights), tp * gpu.bandwidth_gbs * 1e9)
    eff = pm.Efficiency(**spec.efficiency)
    prefill = w["input_mean"] * (1 - w["prefix_share"]) if spec.prefix_caching else w["input_mean"]
    load = pm.Workload(prefill, w["output_mean"])
    slo_ttft, slo_tpot = spec.slo["ttft_ms"] / 1e3, spec.slo["tpot_ms"] / 1e3
    point = pm.operating_point(load, cost, hw, eff, slo_ttft, slo_tpot, max_batch=held)
    if point is None:
        floor = pm.alone(load, cost, hw, eff)
        return {**row, "feasible": False, "alone_ttft_ms": floor["ttft_s"] * 1e3, "alone_tpot_ms": floor["tpot_s"] * 1e3,
                "reason": f"one request alone takes TTFT {floor['ttft_s'] * 1e3:.0f} ms, TPOT "
                          f"{floor['tpot_s'] * 1e3:.1f} ms against the SLO's {spec.slo['ttft_ms']:g} / "
                          f"{spec.slo['tpot_ms']:g} ms"}
    bound = ("KV cache" if point["batch"] >= 0.99 * held else "TPOT" if point["tpot_s"] >= 0.99 * slo_tpot
             else "TTFT" if point["ttft_s"] >= 0.99 * slo_ttft else "prefill")
    price = price_of(gpu.name, spec.prices)
    sized = fleet(w["peak_rate"], w["mean_rate"], point["rate"], spec.utilisation, tp * pp, price.usd_per_gpu_hour,
                  w["output_mean"], w["input_mean"], spec.spare_replicas)
    return {**row, "feasible": True, "replica_rate": point["rate"], "ttft_ms": point["ttft_s"] * 1e3,
            "tpot_ms": point["tpot_s"] * 1e3, "batch": point["batch"], "prefill_share": point["prefill_share"],
            "limited_by": bound,
            **sized, "usd_per_gpu_hour": price.usd_per_gpu_hour, "price_source": price.source,
            "price_date": price.date}


def _no_option_error(spec: Spec, options: list[dict]) -> PlanError:
    if not options:
        dtypes = "/".join(spec.weights)
        return PlanError(f"{spec.model} fits no layout of up to {spec.max_gpus_per_replica} GPUs on "
                         f"{', '.join(spec.gpus)} with {dtypes} weights and {spec.workload['tokens_p99']:.0f}-token "
                         "requests: add a GPU with more memory, quantize (weights: [int4]) or allow more GPUs "
                         "(max_gpus_per_replica)")
    timed = [o for o in options if "alone_tpot_ms" in o]
    if timed:
        best = min(timed, key=lambda o: o["alone_tpot_ms"])
        return PlanError(f"no option meets the SLO (ttft {spec.slo['ttft_ms']:g} ms, tpot {spec.slo['tpot_ms']:g} ms): "
                         f"even the fastest, {best['tensor_parallel']}x{best['gpu']} {best['weights']}, has one "
                         f"request alone at TTFT {best['alone_ttft_ms']:.0f} ms and TPOT {best['alone_tpot_ms']:.1f} ms; "
                         "raise slo.ttft_ms/tpot_ms above those, or add a faster GPU")
    return PlanError(f"no option holds a {spec.workload['tokens_p99']:.0f}-token request in KV cache: "
                     "add a GPU with more memory or quantize the KV cache (kv_dtype: fp8)")


def make_plan(spec: Spec) -> dict:
    """Every option of the spec, the best layout of each GPU and weight format, ranked by $/M output tokens."""
    options = []
    for name in spec.gpus:
        gpu = hardware.get_gpu(name)
        for weights in spec.weights:
            tried = [_option(spec, gpu, weights, tp, pp) for tp, pp in _layouts(spec, gpu, weights)]
            if not tried:
                continue
            feasible = [o for o in tried if o["feasible"]]
            options.append(min(feasible, key=lambda o: o["usd_per_million_output_tokens"]) if feasible
                           else tried[-1])
    if not any(o["feasible"] for o in options):
        raise _no_option_error(spec, options)
    ranked = sorted(options, key=lambda o: (not o["feasible"], o.get("usd_per_million_output_tokens", 0)))
    return {"model": spec.model, "workload": spec.workload, "slo": spec.slo, "efficiency": spec.efficiency,
            "utilisation": spec.utilisation, "spare_replicas": spec.spare_replicas,
            "prefix_caching": spec.prefix_caching, "kv_dtype": spec.kv_dtype, "options": ranked,
            "assumptions": assumptions(spec)}


def cheapest(raw: dict) -> dict:
    """The cheapest option of a spec (a mapping) in one table row; an impossible spec is a row saying why."""
    try:
        best = make_plan(parse(raw))["options"][0]
    except PlanError as exc:
        return {"plan": "none", "GPUs": None, "$/hour": None, "$/M output tokens": None, "why": str(exc)[:90]}
    return {"plan": f"{best['replicas']} x {best['tensor_parallel']}x{best['gpu']} {best['weights']}",
            "GPUs": best["gpus"], "$/hour": round(best["usd_per_hour"], 2),
            "$/M output tokens": round(best["usd_per_million_output_tokens"], 3), "why": ""}


def assumptions(spec: Spec) -> list[str]:
    w = spec.workload
    return [
        f"workload: {w['source']}; mean {w['mean_rate']:.2f} requests/s, peak {w['peak_rate']:.2f} requests/s; "
        f"mean input {w['input_mean']:.0f} tokens, mean output {w['output_mean']:.0f} tokens",
        f"memory: every request is sized at the p99 total of {w['tokens_p99']:.0f} tokens; "
        f"{memory.USABLE_FRACTION:.0%} of each GPU usable; 1 GiB overhead per GPU; KV in {spec.kv_dtype}",
        f"speed: prefill at {spec.efficiency['prefill']:.0%} of peak FLOP/s, decode at {spec.efficiency['decode']:.0%} "
        "of peak bandwidth (datasheet peaks, inferlab.hardware); a decode step reads every weight (all experts of "
        "an MoE); TP communication not modelled",
        f"SLO: mean TTFT <= {spec.slo['ttft_ms']:g} ms and mean TPOT <= {spec.slo['tpot_ms']:g} ms "
        "(the model predicts means; a percentile SLO needs margin)",
        f"headroom: replicas run at <= {spec.utilisation:.0%} of their sustainable rate at the peak, plus "
        f"{spec.spare_replicas} spare replica(s) for a failure",
        "prefix caching: " + (f"on, the shared prefix ({w['prefix_share']:.0%} of input tokens) skips prefill"
                              if spec.prefix_caching else "off, every input token is prefilled"),
        "cost: a fixed fleet, paid every hour, serving the mean rate's output tokens",
    ]


COLUMNS = [("gpu", "GPU", "{}"), ("weights", "weights", "{}"), ("gpus_per_replica", "GPUs/replica", "{}"),
           ("kv_concurrency", "KV holds", "{}"), ("replica_rate", "req/s/replica", "{:.2f}"),
           ("tpot_ms", "TPOT ms", "{:.1f}"), ("limited_by", "limited by", "{}"), ("replicas", "replicas", "{}"), ("gpus", "GPUs", "{}"),
           ("usd_per_hour", "$/hour", "{:,.2f}"), ("usd_per_million_output_tokens", "$/M out", "{:.3f}")]


def table(plan: dict):
    """The options as a DataFrame, cheapest per token first."""
    import pandas as pd
    rows = []
    for o in plan["options"]:
        row = {label: (fmt.format(o[key]) if key in o else "-") for key, label, fmt in COLUMNS}
        row["note"] = "" if o["feasible"] else o["reason"]
        rows.append(row)
    return pd.DataFrame(rows)


def report(plan: dict) -> str:
    """The plan as text: the options ranked, the recommendation, and every assumption."""
    best = plan["options"][0]
    lines = [f"Capacity plan for {plan['model']}", "", table(plan).to_string(index=False), "",
             f"Recommendation: {best['replicas']} replicas of {best['tensor_parallel']}x{best['gpu']} "
             f"({best['weights']} weights) = {best['gpus']} GPUs, ${best['usd_per_hour']:,.2f}/hour, "
             f"${best['usd_per_million_output_tokens']:.3f} per million output tokens.",
             f"Price: ${best['usd_per_gpu_hour']:.2f} per GPU-hour, {best['price_source']} (read {best['price_date']}).",
             "", "Assumptions:"]
    return "\n".join(lines + [f"  - {a}" for a in plan["assumptions"]])
