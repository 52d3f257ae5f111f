"""The GPU tier's smoke test: what a bare CUDA machine can check in a few minutes.

The GPU runners this course can borrow have PyTorch and transformers but no network and no
vLLM. Here the labs' GPU cells that need neither a download nor an engine run on a model built
with random weights from a ``config.json`` shipped in ``inferlab/configs`` (memory predicted by
``inferlab.memory`` against what the device allocated, quantization on the device, decode
timing); every other GPU cell is listed as skipped, with the reason. One table comes out.

    make test-gpu SMOKE=1        # or: python -m inferlab.gpu_smoke [--config NAME]

The probes take a device, so CI runs the same code on the CPU (tests/test_gpu_smoke.py).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
from dataclasses import dataclass
from typing import Callable

from inferlab import memory, timing

# Why a probe cannot run, by the thing it needs.
NEEDS = {
    "cuda": "no CUDA GPU visible to torch",
    "vllm": "vLLM is not installed here",
    "network": "no network to download the GPU profile's hub models",
    "bitsandbytes": "bitsandbytes is not installed here",
    "xgrammar": "xgrammar is not installed here",
}
PREFILL_TOKENS = 512
DECODE_TOKENS = 32


@dataclass(frozen=True)
class Probe:
    lab: str
    what: str
    needs: tuple[str, ...] = ()
    run: Callable[["Subject"], str] | None = None      # None: only the full `make test-gpu` runs it


@dataclass
class Subject:
    """The random-weight model every probe shares, built once."""
    config: dict
    device: str
    dtype: str
    model: object = None


def capabilities() -> dict[str, bool]:
    """What this machine has, for each name in NEEDS."""
    import torch

    def importable(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    return {"cuda": torch.cuda.is_available(), "vllm": importable("vllm"),
            "bitsandbytes": importable("bitsandbytes"), "xgrammar": importable("xgrammar"), "network": _online()}


def _online() -> bool:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return True
    except OSError:
        return False


def skip_reason(probe: Probe, have: dict[str, bool]) -> str | None:
    """Why ``probe`` cannot run with ``have``; None when it can."""
    missing = [NEEDS[need] for need in probe.needs if not have.get(need)]
    if missing:
        return "; ".join(missing)
    if probe.run is None:
        return "needs an engine or a hub model: run the full `make test-gpu`"
    return None


# ----------------------------------------------------------------------------- the probes

def build_model(subject: Subject) -> str:
    """Random weights from the shipped config, created on the device (lab 02: predicted vs allocated)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(subject.config)
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    before = _allocated(subject.device)
    with torch.device(subject.device):
        subject.model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, subject.dtype)).eval()
    allocated = _allocated(subject.device) - before if subject.device.startswith("cuda") else \
        memory.tensor_bytes(subject.model)
    predicted = memory.weight_bytes(subject.config, _short(subject.dtype))
    return _compare("weights", predicted, allocated)


def kv_after_prefill(subject: Subject) -> str:
    """Lab 02: the KV cache of one prefill, from its tensors, against kv_bytes_per_token * tokens."""
    import torch

    ids = torch.arange(PREFILL_TOKENS, device=subject.device)[None] % subject.config["vocab_size"]
    with torch.no_grad():
        cache = subject.model(ids, use_cache=True, logits_to_keep=1).past_key_values
    predicted = memory.kv_bytes_per_token(subject.config, _short(subject.dtype)) * PREFILL_TOKENS
    return _compare(f"KV cache of {PREFILL_TOKENS} tokens", predicted, memory.kv_cache_bytes(cache))


def prefill_peak(subject: Subject) -> str:
    """Lab 02's GPU cell: torch.cuda.max_memory_allocated during a prefill against the estimate."""
    import torch

    ids = torch.arange(PREFILL_TOKENS, device=subject.device)[None] % subject.config["vocab_size"]

    def prefill():
        with torch.no_grad():
            subject.model(ids, use_cache=True, logits_to_keep=1)

    peak = memory.measure_gpu_peak(prefill)["peak_bytes"]
    dtype = _short(subject.dtype)
    predicted = (memory.weight_bytes(subject.config, dtype)
                 + memory.activation_bytes(subject.config, 1, PREFILL_TOKENS, dtype)
                 + memory.kv_bytes_per_token(subject.config, dtype) * PREFILL_TOKENS)
    return _compare(f"peak of a {PREFILL_TOKENS}-token prefill", predicted, peak)


def quantize_on_device(subject: Subject) -> str:
    """Lab 03: INT8 and INT4 codes computed on the device equal the CPU's."""
    from inferlab import quant

    weight = next(p for n, p in subject.model.named_parameters() if n.endswith("q_proj.weight")).detach().float()
    q8, _ = quant.quantize_int8(weight, per_channel=True)
    q4, _, _ = quant.quantize_int4(weight, group_size=128)
    same8 = bool((q8.cpu() == quant.quantize_int8(weight.cpu(), per_channel=True)[0]).all())
    same4 = bool((q4.cpu() == quant.quantize_int4(weight.cpu(), group_size=128)[0]).all())
    if not (same8 and same4):
        raise AssertionError(f"codes differ from the CPU's (INT8 same: {same8}, INT4 same: {same4})")
    return f"INT8 per-channel and INT4 g128 codes of a {tuple(weight.shape)} weight equal the CPU's"


def decode_timing(subject: Subject) -> str:
    """Lab 01: the greedy decode loop with a KV cache, timed per token (GPU work included)."""
    import torch

    from inferlab import decoding
    prompt = list(range(1, 65))
    with torch.no_grad():
        list(decoding.generate_tokens(subject.model, prompt, 4, decoding.greedy))          # warm-up
        seconds = timing.seconds(lambda: list(decoding.generate_tokens(subject.model, prompt, DECODE_TOKENS,
                                                                       decoding.greedy)))
    return f"{DECODE_TOKENS} tokens after a 64-token prompt: {seconds / DECODE_TOKENS * 1e3:.2f} ms/token"


def grammar_mask_on_device(subject: Subject) -> str:
    """Lab 05: an xgrammar bitmask for a regex over a small raw vocabulary, applied to logits on the
    device, allows exactly what it allows on the CPU (no tokenizer download needed)."""
    import torch
    import xgrammar as xgr
    vocab = ["<eos>"] + [str(d) for d in range(10)] + ["12", "345", "-", "a", "b", " ", "x9"] + [f"t{i}" for i in range(300)]
    info = xgr.TokenizerInfo(vocab, vocab_type=xgr.VocabType.RAW, stop_token_ids=[0])
    compiled = xgr.GrammarCompiler(info).compile_regex(r"[0-9]{3}-[ab]")
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, len(vocab))
    agreed = 0
    for token in ("12", "3", "-", "b", "<eos>"):
        matcher.fill_next_token_bitmask(bitmask)
        logits = torch.randn(1, len(vocab), generator=torch.Generator().manual_seed(agreed))
        on_cpu, on_device = logits.clone(), logits.to(subject.device)
        xgr.apply_token_bitmask_inplace(on_cpu, bitmask)
        xgr.apply_token_bitmask_inplace(on_device, bitmask.to(subject.device))
        if not torch.equal(torch.isfinite(on_cpu), torch.isfinite(on_device.cpu())):
            raise AssertionError(f"the mask differs on {subject.device} at step {agreed}")
        assert matcher.accept_token(vocab.index(token))
        agreed += 1
    return f"{agreed} steps of a regex mask applied on {subject.device}: same allowed tokens as on the CPU"


def roofline_on_device(subject: Subject) -> str:
    """Lab 07: the device's bandwidth and matmul rate, and decode step times at batch 1 and 16 with a
    random KV cache of 64 positions; the step must not beat the roofline's bound."""
    from inferlab import batching
    dtype = str(next(subject.model.parameters()).dtype).removeprefix("torch.")
    bandwidth = batching.measure_bandwidth(subject.device, mib=256)
    peak = batching.measure_matmul(subject.device, dtype=dtype, n=4096)
    params = list(subject.model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    kv = batching.kv_bytes_per_token(subject.model.config, params[0].element_size())
    flops = batching.decode_flops_per_token(subject.model.config, sum(p.numel() for p in params), 64)
    steps = {b: batching.decode_step_seconds(subject.model, b, 64) for b in (1, 16)}
    bound = batching.decode_step_bound(1, 64, weight_bytes, kv, flops, bandwidth, peak)["seconds"]
    if steps[1] < 0.5 * bound:
        raise AssertionError(f"a decode step took {steps[1] * 1e3:.3f} ms, under half the roofline bound "
                             f"{bound * 1e3:.3f} ms: a timer misses GPU work")
    return (f"{bandwidth / 1e9:.0f} GB/s, {peak / 1e12:.1f} {dtype} TFLOP/s; decode step {steps[1] * 1e3:.2f} ms "
            f"at batch 1, {steps[16] * 1e3:.2f} ms at 16; MBU at batch 1 {bound / steps[1]:.0%}")


def probes() -> list[Probe]:
    return [
        Probe("02", "weights: predicted vs allocated", (), build_model),
        Probe("02", "KV cache after a prefill: predicted vs tensors", (), kv_after_prefill),
        Probe("02", "prefill peak: predicted vs torch.cuda.max_memory_allocated", ("cuda",), prefill_peak),
        Probe("03", "INT8/INT4 quantization on the device", (), quantize_on_device),
        Probe("01", "greedy decode with a KV cache, ms/token", (), decode_timing),
        Probe("01-07", "every lab on the GPU profile's hub model", ("network",)),
        Probe("03", "bitsandbytes NF4/INT8 on CUDA", ("cuda", "bitsandbytes", "network")),
        Probe("03", "vLLM FP8/AWQ/GPTQ rows", ("cuda", "vllm", "network")),
        Probe("04", "vLLM server: KV report, gpu_memory_utilization sweep", ("cuda", "vllm", "network")),
        Probe("05", "xgrammar token bitmask applied to logits on the device", ("xgrammar",), grammar_mask_on_device),
        Probe("05", "structured outputs on vLLM and SGLang (make setup-sglang)", ("cuda", "vllm", "network")),
        Probe("06", "benchmarks against a vLLM server", ("cuda", "vllm", "network")),
        Probe("07", "roofline: bandwidth, matmul, decode steps at batch 1 and 16", (), roofline_on_device),
        Probe("07", "batching, paged KV and prefix caching on a vLLM server", ("cuda", "vllm", "network")),
    ]


# ----------------------------------------------------------------------------- running them

def run(config_name: str, device: str, dtype: str, have: dict[str, bool], layers: int | None = None):
    """Every probe in order: rows of (lab, check, status: ran / skipped / FAILED, result)."""
    config = memory.load_config(config_name)
    if layers:
        config["num_hidden_layers"] = layers
    subject = Subject(config, device, dtype)
    rows = []
    for probe in probes():
        reason = skip_reason(probe, have)
        if reason is None and subject.model is None and probe.run is not build_model:
            reason = "the model could not be built (see the first row)"
        if reason is not None:
            rows.append((probe.lab, probe.what, "skipped", reason))
            continue
        try:
            rows.append((probe.lab, probe.what, "ran", probe.run(subject)))
        except Exception as exc:                       # one broken probe must not hide the others
            rows.append((probe.lab, probe.what, "FAILED", f"{type(exc).__name__}: {exc}".splitlines()[0]))
    return rows


COLUMNS = ("lab", "check", "status", "result")


def format_table(rows) -> str:
    """The rows as aligned text (no pandas needed: a bare GPU runner may not have it)."""
    widths = [max(len(str(x)) for x in column) for column in zip(COLUMNS, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [COLUMNS, *rows]]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


def _allocated(device: str) -> int:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        return torch.cuda.memory_allocated(device)
    return 0


def _short(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]


def _compare(what: str, predicted: int, measured: int) -> str:
    error = (measured - predicted) / predicted * 100 if predicted else float("nan")
    return f"{what}: predicted {predicted:,} B, measured {measured:,} B ({error:+.2f} %)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferlab.gpu_smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="llama-3.2-1b", help="a config shipped in inferlab/configs")
    parser.add_argument("--device", default=None, help="default: cuda when visible, else cpu")
    parser.add_argument("--layers", type=int, default=None, help="keep only this many layers (a quicker run)")
    args = parser.parse_args(argv)
    have = capabilities()
    device = args.device or ("cuda" if have["cuda"] else "cpu")
    dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if args.config not in memory.shipped_configs():
        print(f"gpu_smoke: unknown config {args.config!r}; choose one of {sorted(memory.shipped_configs())}")
        return 2
    rows = run(args.config, device, dtype, have, args.layers)
    print(f"GPU smoke test on {device} ({dtype}), random weights from {args.config}.json")
    print(format_table(rows))
    return 1 if any(status == "FAILED" for _, _, status, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
