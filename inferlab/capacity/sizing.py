"""How many requests one replica's memory holds: the KV cache left on each GPU after weights, activations
and overhead, in requests of a given length.

Under tensor parallelism every GPU of a replica keeps its own share of every request's KV (its KV heads),
so a replica of tp GPUs holds tp times one GPU's free memory worth of KV, while each GPU also pays its
share of the weights and the full overhead.
"""
from __future__ import annotations

import math
from typing import Any

from inferlab import memory


def replica_concurrency(gpu_memory_bytes: float, tensor_parallel: int, weight_bytes: float, overhead_bytes: float,
                        kv_bytes_per_token: float, tokens_per_request: float,
                        usable_fraction: float = memory.USABLE_FRACTION) -> int:
    """Requests of tokens_per_request one replica of tensor_parallel GPUs holds in KV cache (0 if none fits).

    Weights and KV split evenly over the GPUs; every GPU pays the overhead and keeps usable_fraction of its
    memory.
    """
    free_per_gpu = usable_fraction * gpu_memory_bytes - weight_bytes / tensor_parallel - overhead_bytes
    if free_per_gpu <= 0:
        return 0
    return math.floor(free_per_gpu * tensor_parallel / (kv_bytes_per_token * tokens_per_request))


def layout_concurrency(cfg: Any, gpu_memory_bytes: float, tensor_parallel: int, pipeline_parallel: int,
                       tokens_per_request: float, dtype: str = "bf16", kv_dtype: str = "bf16") -> int:
    """The same for a real layout (``memory.per_device``: uneven KV heads, pipeline stages, activations of a
    full scheduler step): the stage that runs out of KV space first sets the replica's concurrency."""
    context = max(int(tokens_per_request), memory.DEFAULT_MAX_BATCHED_TOKENS)
    est = memory.per_device(cfg, dtype=dtype, kv_dtype=kv_dtype, context=context, batch=1,
                            tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel)
    budget = gpu_memory_bytes * memory.USABLE_FRACTION
    held = math.inf
    for stage in est["stages"]:
        fixed = stage["total_bytes"] - stage["kv_bytes"]
        per_token = stage["kv_bytes"] / context
        held = min(held, max(0.0, budget - fixed) / (per_token * tokens_per_request))
    return math.floor(held)
