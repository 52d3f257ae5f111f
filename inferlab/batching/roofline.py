"""The roofline of this machine for decoding: measured bandwidth and matmul throughput, the bytes
and FLOPs of one decode step, and measured step times of a real model against batch size.

A decode step reads every weight once, whatever the batch, plus each sequence's own KV cache, and
does about 2 FLOPs per weight per sequence plus the attention over the context. While the bytes
dominate, adding sequences to the batch is nearly free; past the ridge point (peak FLOP/s over
bandwidth, in FLOPs per byte) the step time grows with the batch.
"""
from __future__ import annotations


from inferlab.timing import seconds


def _best_seconds(fn, repeats: int) -> float:
    fn()                                     # warm-up: page in, pick kernels
    return min(seconds(fn) for _ in range(repeats))


def measure_bandwidth(device: str = "cpu", mib: int = 256, repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s from the best of several copies of a mib-MiB tensor (read + write)."""
    import torch
    src = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / _best_seconds(lambda: dst.copy_(src), repeats)


def measure_matmul(device: str = "cpu", dtype: str = "float32", n: int = 1024, repeats: int = 3) -> float:
    """Matmul throughput in FLOP/s from the best of several n x n products (2 n^3 FLOPs each)."""
    import torch
    a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    return 2 * n**3 / _best_seconds(lambda: a @ b, repeats)


def decode_flops_per_token(config, num_params: int, context_len: int) -> float:
    """FLOPs for one sequence's token in a decode step: 2 per weight, plus attention's two
    products (scores and weighted values) over context_len positions in every layer."""
    width = config.num_attention_heads * (getattr(config, "head_dim", None)
                                          or config.hidden_size // config.num_attention_heads)
    return 2 * num_params + 4 * config.num_hidden_layers * context_len * width


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Bytes of K and V one token leaves in the cache, all layers."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * dtype_bytes


def decode_step_bound(batch_size: int, context_len: int, weight_bytes: float, kv_bytes_per_token: float,
                      flops_per_token: float, bandwidth: float, peak_flops: float) -> dict:
    """The roofline's lower bound on one decode step: its bytes, FLOPs, arithmetic intensity
    (FLOPs per byte), seconds (the slower of moving the bytes and doing the FLOPs) and which bound."""
    moved = weight_bytes + batch_size * context_len * kv_bytes_per_token
    flops = batch_size * flops_per_token
    memory_s, compute_s = moved / bandwidth, flops / peak_flops
    return {"bytes": moved, "flops": flops, "intensity": flops / moved, "seconds": max(memory_s, compute_s),
            "bound": "memory" if memory_s >= compute_s else "compute"}


def _random_cache(model, batch_size: int, context_len: int):
    """A KV cache of context_len positions filled with random values: a decode step costs the same
    whatever the values, and this skips a prefill of batch_size x context_len tokens."""
    import torch
    from transformers import DynamicCache
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    cache = DynamicCache(config=cfg)
    p = next(model.parameters())
    for layer in range(cfg.num_hidden_layers):
        shape = (batch_size, cfg.num_key_value_heads, context_len, head_dim)
        cache.update(torch.randn(shape, dtype=p.dtype, device=p.device),
                     torch.randn(shape, dtype=p.dtype, device=p.device), layer)
    return cache


def decode_step_seconds(model, batch_size: int, context_len: int, steps: int = 5) -> float:
    """Shortest wall time of one decode step of a transformers model, batch_size sequences that
    each already hold context_len positions of KV cache."""
    import torch
    p = next(model.parameters())
    cache = _random_cache(model, batch_size, context_len)
    ids = torch.randint(0, model.config.vocab_size, (batch_size, 1), device=p.device)
    times = []
    with torch.inference_mode():
        for step in range(steps + 1):        # the first step is a warm-up
            pos = torch.full((batch_size, 1), context_len + step, device=p.device)
            times.append(seconds(lambda: model(input_ids=ids, past_key_values=cache, position_ids=pos,
                                               use_cache=True)))
    return min(times[1:])                    # the least disturbed step: others only add noise


def prefill_seconds_per_token(model, prompt_len: int = 256, repeats: int = 2) -> float:
    """Seconds per prompt token of one prefill of prompt_len random tokens (best of repeats)."""
    import torch
    p = next(model.parameters())
    ids = torch.randint(0, model.config.vocab_size, (1, prompt_len), device=p.device)
    with torch.inference_mode():
        return _best_seconds(lambda: model(input_ids=ids, use_cache=True), repeats) / prompt_len
