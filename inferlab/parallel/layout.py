"""Which parallel layouts a model admits, and what each device holds under one.

Tensor parallelism (TP) splits every layer across ``tp`` devices by attention heads and by MLP
columns; pipeline parallelism (PP) gives each of ``pp`` stages a run of whole layers. A TP size
must divide the attention heads. KV heads are split when there are at least as many as ranks and
replicated otherwise (each KV head then lives on ``tp / kv_heads`` ranks), so one of the two counts
must divide the other. Layers are split between stages as vLLM does (``get_pp_indices``): evenly,
with any remainder going to the stages before the last.
"""
from __future__ import annotations


class ParallelLayoutError(ValueError):
    """A parallel layout this model cannot run; the message is one line and says what to use."""


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _spoken(sizes: list[int]) -> str:
    return sizes[0] if len(sizes) == 1 else f"{', '.join(map(str, sizes[:-1]))} or {sizes[-1]}"


def validate_sizes(tensor_parallel: int = 1, pipeline_parallel: int = 1) -> None:
    """Raise ParallelLayoutError (one line) unless both sizes are positive integers."""
    for name, size in (("tensor parallel size", tensor_parallel), ("pipeline parallel size", pipeline_parallel)):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ParallelLayoutError(f"the {name} must be a positive integer, got {size!r}")


def validate_layout(num_heads: int, num_kv_heads: int, num_layers: int, tensor_parallel: int = 1,
                    pipeline_parallel: int = 1) -> None:
    """Raise ParallelLayoutError (one line) unless the model can be split this way."""
    validate_sizes(tensor_parallel, pipeline_parallel)
    tp = tensor_parallel
    if num_heads % tp:
        raise ParallelLayoutError(f"{num_heads} attention heads are not divisible by {tp}; use "
                                  f"{_spoken(divisors(num_heads))}")
    if (tp > num_kv_heads and tp % num_kv_heads) or (tp <= num_kv_heads and num_kv_heads % tp):
        fits = [d for d in divisors(num_heads) if (d % num_kv_heads == 0) or (num_kv_heads % d == 0)]
        raise ParallelLayoutError(f"{num_kv_heads} KV heads can be neither split nor replicated evenly over {tp} "
                                  f"ranks; use {_spoken(fits)}")
    if pipeline_parallel > num_layers:
        raise ParallelLayoutError(f"a pipeline of {pipeline_parallel} stages needs at least {pipeline_parallel} "
                                  f"layers; this model has {num_layers}")


def validate_model_layout(config, tensor_parallel: int = 1, pipeline_parallel: int = 1) -> None:
    """validate_layout for a transformers config (or any object with the usual attribute names)."""
    validate_layout(config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
                 config.num_hidden_layers, tensor_parallel, pipeline_parallel)


def kv_heads_per_rank(num_kv_heads: int, tensor_parallel: int) -> int:
    """KV heads each rank stores: its share, or one replicated head when ranks outnumber them."""
    return max(1, num_kv_heads // tensor_parallel)


def stage_layers(num_layers: int, pipeline_parallel: int) -> list[int]:
    """Layers of each pipeline stage, as vLLM partitions them by default."""
    parts = [num_layers // pipeline_parallel] * pipeline_parallel
    for i in range(2, num_layers % pipeline_parallel + 2):
        parts[-i] += 1
    return parts


def smallest_tensor_parallel(num_heads: int, num_kv_heads: int) -> int | None:
    """The smallest TP size above 1 the model admits, or None when only 1 works."""
    for size in range(2, num_heads + 1):
        try:
            validate_layout(num_heads, num_kv_heads, 1, size)
        except ParallelLayoutError:
            continue
        return size
    return None
