"""Memory per device under tensor (TP) and pipeline (PP) parallelism, as vLLM lays a model out.

- TP splits every attention layer by heads (q and o by query heads; k and v by KV heads, or one
  replicated KV head per rank when ranks outnumber KV heads), every MLP and expert by its
  intermediate width, and the embedding and LM head by vocabulary rows. Norms and MoE routers are
  replicated on every rank.
- PP gives each stage a run of whole layers (``parallel.layout.stage_layers``); the first stage
  also holds the embedding, the last the final norm and the LM head (a tied LM head is a second
  copy there when there are two or more stages).
- The KV cache of a stage: its layers x the KV heads a rank keeps x head_dim x 2 x context x batch.
- Activations of one step are split across the TP ranks; each device pays the overhead in full.

Vocabulary padding (vLLM pads the vocab to a multiple of 64 per rank) is ignored. MLA models
(DeepSeek) are not covered: their latent KV is replicated across TP ranks.
"""
from __future__ import annotations

import math
from typing import Any

from inferlab.memory.shapes import _shape
from inferlab.memory.sizing import (DEFAULT_MAX_BATCHED_TOKENS, USABLE_FRACTION, _gated_mlp, _linear,
                                    activation_bytes, dtype_bytes, overhead_bytes)
from inferlab.parallel.layout import validate_layout, kv_heads_per_rank, stage_layers


def layer_params_per_rank(cfg: Any, tensor_parallel: int) -> int:
    """Parameters of one decoder layer that one TP rank holds."""
    s = _shape(cfg)
    if s.attention == "mla":
        raise ValueError(f"per-device sizing covers MHA/GQA/MQA models; {s.model_type} uses MLA")
    tp = tensor_parallel
    kv_local = kv_heads_per_rank(s.kv_heads, tp)
    qkv_bias = s.attention_bias or s.qkv_bias
    q_dim, kv_dim = s.heads * s.head_dim, s.kv_heads * s.head_dim
    attention = (_linear(s.hidden, q_dim, qkv_bias) // tp
                 + 2 * _linear(s.hidden, kv_dim, qkv_bias) * kv_local // s.kv_heads
                 + s.hidden * q_dim // tp + (s.hidden if s.attention_bias else 0)
                 + (2 * s.head_dim if s.qk_norm else 0))
    if s.is_moe:
        mlp = (s.n_routed_experts * s.hidden + s.n_routed_experts * _gated_mlp(s.hidden, s.moe_intermediate) // tp
               + (_gated_mlp(s.hidden, s.shared_intermediate) // tp if s.shared_intermediate else 0))
    else:
        mlp = _gated_mlp(s.hidden, s.intermediate, s.mlp_bias) // tp
    return attention + mlp + s.norms_per_layer * s.hidden


def per_device(cfg: Any, dtype: str = "bf16", kv_dtype: str = "bf16", context: int = 4096, batch: int = 1,
               tensor_parallel: int = 1, pipeline_parallel: int = 1,
               max_batched_tokens: int | None = DEFAULT_MAX_BATCHED_TOKENS) -> dict:
    """Bytes on each device of a TP x PP layout: one row per pipeline stage, and the busiest device."""
    s = _shape(cfg)
    if s.is_moe and s.n_dense_layers:
        raise ValueError(f"per-device sizing covers dense and all-MoE models; {s.model_type} mixes dense layers in")
    tp, pp = tensor_parallel, pipeline_parallel
    validate_layout(s.heads, s.kv_heads, s.layers, tp, pp)
    per_layer = layer_params_per_rank(s, tp)
    kv_per_layer = 2 * kv_heads_per_rank(s.kv_heads, tp) * s.head_dim * context * batch * dtype_bytes(kv_dtype)
    vocab_rows = s.vocab * s.hidden // tp
    activations = math.ceil(activation_bytes(s, batch, context, dtype, max_batched_tokens) / tp)
    stages = []
    for index, layers in enumerate(stage_layers(s.layers, pp)):
        params = layers * per_layer
        if index == 0:
            params += vocab_rows
        if index == pp - 1:
            params += s.hidden + (vocab_rows if (not s.tied or pp > 1) else 0)
        weights = math.ceil(params * dtype_bytes(dtype))
        kv = math.ceil(layers * kv_per_layer)
        stages.append({"stage": index, "layers": layers, "params": params, "weight_bytes": weights, "kv_bytes": kv,
                       "activation_bytes": activations, "overhead_bytes": overhead_bytes(),
                       "total_bytes": weights + kv + activations + overhead_bytes()})
    busiest = max(stages, key=lambda row: row["total_bytes"])
    return {"tensor_parallel": tp, "pipeline_parallel": pp, "devices": tp * pp, "stages": stages,
            "busiest_stage": busiest["stage"], "total_bytes": busiest["total_bytes"],
            "weight_bytes": busiest["weight_bytes"], "kv_bytes": busiest["kv_bytes"]}


def layout_fits(cfg: Any, gpu_memory_bytes: int, **kwargs) -> bool:
    """Whether the busiest device's bytes fit in USABLE_FRACTION of one GPU's memory."""
    return per_device(cfg, **kwargs)["total_bytes"] <= gpu_memory_bytes * USABLE_FRACTION


def smallest_layout(cfg: Any, gpu_memory_bytes: int, max_gpus: int = 64, node_size: int = 8,
                    **kwargs) -> tuple[int, int] | None:
    """(tp, pp) by the usual rule: the smallest TP inside one node (a power of two up to node_size that
    the model admits) whose busiest device fits; if none does, the node's largest TP with as few
    pipeline stages as fit. None when nothing up to max_gpus does."""
    s = _shape(cfg)

    def admitted(tp: int, pp: int) -> bool:
        try:
            validate_layout(s.heads, s.kv_heads, s.layers, tp, pp)
        except ValueError:
            return False
        return True
    sizes = [tp for tp in (1, 2, 4, 8, 16, 32, 64) if tp <= node_size and admitted(tp, 1)]
    for tp in sizes:
        if layout_fits(s, gpu_memory_bytes, tensor_parallel=tp, **kwargs):
            return tp, 1
    tp = sizes[-1]
    for pp in range(2, max_gpus // tp + 1):
        if admitted(tp, pp) and layout_fits(s, gpu_memory_bytes, tensor_parallel=tp, pipeline_parallel=pp, **kwargs):
            return tp, pp
    return None
