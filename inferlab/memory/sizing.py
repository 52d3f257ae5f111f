"""Memory arithmetic on a model shape: parameters, bytes per dtype, the KV cache per token and in
blocks, activations of one scheduler step, overhead, and what fits on which GPU.

    total = weights + KV cache + activations + overhead

Units: GiB = 2**30 bytes, GB = 10**9 bytes. Functions return plain byte counts (int).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from inferlab.memory.shapes import ModelShape, _shape

GiB = 2**30
GB = 10**9

# Bytes per element. int4/nf4 ignore the small extra cost of quantisation scales.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4, "float32": 4,
    "bf16": 2, "bfloat16": 2,
    "fp16": 2, "float16": 2, "half": 2,
    "fp8": 1, "float8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1,
    "int8": 1,
    "int4": 0.5, "nf4": 0.5,
}

# Fraction of a GPU's memory we let a model plan use. 0.9 mirrors vLLM's default
# gpu_memory_utilization; the rest is headroom for fragmentation, other processes and
# the gap between the nominal capacity and what the driver reports.
USABLE_FRACTION = 0.9

# Overhead constants (see overhead_bytes). PyTorch PR #86509 (which made
# CUDA_MODULE_LOADING=LAZY the default) measured the GPU memory of a process that only
# initialised CUDA: 287,047,680 bytes (~274 MiB) with lazy loading, 666,632,192 bytes
# (~636 MiB) without. cuBLAS workspaces and kernels loaded on first use add to that, and
# PyTorch's caching allocator keeps freed blocks and rounds every allocation up. We budget
# 512 MiB for the context and 512 MiB for the rest: 1 GiB. Not measured on this project's
# hardware; treat it as an order of magnitude.
CUDA_CONTEXT_BYTES = 512 * 2**20

ALLOCATOR_SLACK_BYTES = 512 * 2**20

# A fits-count above this is reported as None ("needs more than one 8-GPU node").
MAX_GPUS = 8

DEFAULT_CONTEXTS = (2048, 4096, 8192, 16384, 32768, 65536, 131072)

# Tokens one forward pass (one scheduler step) may carry. Engines with chunked prefill
# split long prompts and big batches into steps of at most this many tokens, so the
# activation peak stops growing with batch * context. 8192 is vLLM's default
# max_num_batched_tokens for `vllm serve` on H100/H200-class GPUs (vLLM 0.32,
# vllm/engine/arg_utils.py; smaller GPUs get 2048, the offline LLM class 8192-16384).
# Pass max_batched_tokens=None to model an engine that prefills the whole batch at once.
DEFAULT_MAX_BATCHED_TOKENS = 8192


def _linear(n_in: int, n_out: int, bias: bool = False) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _gated_mlp(hidden: int, width: int, bias: bool = False) -> int:
    """gate_proj + up_proj (hidden -> width) and down_proj (width -> hidden)."""
    return 2 * _linear(hidden, width, bias) + _linear(width, hidden, bias)


def _gqa_attention_params(s: ModelShape) -> int:
    """q, k, v, o projections (+ biases where the architecture has them, + q/k norms)."""
    q_dim = s.heads * s.head_dim
    kv_dim = s.kv_heads * s.head_dim
    qkv_bias = s.attention_bias or s.qkv_bias
    params = (
        _linear(s.hidden, q_dim, qkv_bias)
        + 2 * _linear(s.hidden, kv_dim, qkv_bias)
        + _linear(q_dim, s.hidden, s.attention_bias)
    )
    if s.qk_norm:
        params += 2 * s.head_dim
    return params


def _mla_attention_params(s: ModelShape) -> int:
    """DeepSeek MLA: queries (low-rank q_a/q_b or a full q_proj), the shared compressed
    KV projection kv_a_proj_with_mqa (+ its norm), the up-projection kv_b_proj, o_proj."""
    qk_head = s.qk_nope_head_dim + s.qk_rope_head_dim
    if s.q_lora_rank:
        q = _linear(s.hidden, s.q_lora_rank) + s.q_lora_rank + _linear(s.q_lora_rank, s.heads * qk_head)
    else:
        q = _linear(s.hidden, s.heads * qk_head)
    kv_a = _linear(s.hidden, s.kv_lora_rank + s.qk_rope_head_dim) + s.kv_lora_rank
    kv_b = _linear(s.kv_lora_rank, s.heads * (s.qk_nope_head_dim + s.v_head_dim))
    o = _linear(s.heads * s.v_head_dim, s.hidden)
    return q + kv_a + kv_b + o


def param_breakdown(cfg: Any) -> dict[str, int]:
    """Parameter count by component. Sums to :func:`param_count`.

    embedding = vocab*hidden; lm_head = vocab*hidden unless tied; per layer: attention,
    dense MLP (3*hidden*intermediate) or MoE (router hidden*n_experts, routed experts
    n_experts*3*hidden*moe_intermediate, shared experts 3*hidden*shared_intermediate);
    norms = norms_per_layer*hidden per layer + hidden for the final norm.
    """
    s = _shape(cfg)
    attention = _mla_attention_params(s) if s.attention == "mla" else _gqa_attention_params(s)
    router = s.n_routed_experts * s.hidden + (s.n_routed_experts if s.router_bias else 0)
    return {
        "embedding": s.vocab * s.hidden,
        "lm_head": 0 if s.tied else s.vocab * s.hidden,
        "attention": s.layers * attention,
        "mlp_dense": s.n_dense_layers * _gated_mlp(s.hidden, s.intermediate, s.mlp_bias),
        "moe_router": s.n_moe_layers * router,
        "moe_routed_experts": s.n_moe_layers * s.n_routed_experts * _gated_mlp(s.hidden, s.moe_intermediate),
        "moe_shared_experts": s.n_moe_layers * (_gated_mlp(s.hidden, s.shared_intermediate) if s.shared_intermediate else 0),
        "norms": s.layers * s.norms_per_layer * s.hidden + s.hidden,
    }


def param_count(cfg: Any) -> int:
    """Exact parameter count, equal to the element total of the published safetensors.

    DeepSeek-V3's multi-token-prediction layer (num_nextn_predict_layers) is not counted:
    transformers does not load it and it is only used for speculative decoding.
    """
    return sum(param_breakdown(cfg).values())


def active_param_count(cfg: Any) -> int:
    """Parameters a single token passes through: everything except the routed experts
    it is not sent to, i.e. total - routed + experts_per_token/n_experts * routed.
    Equals :func:`param_count` for dense models. Embedding and lm_head count in full."""
    s = _shape(cfg)
    parts = param_breakdown(s)
    if not s.is_moe:
        return sum(parts.values())
    routed = parts["moe_routed_experts"]
    active_routed = routed // s.n_routed_experts * s.experts_per_token
    return sum(parts.values()) - routed + active_routed


def dtype_bytes(dtype: str) -> float:
    """Bytes per element for a dtype name (case-insensitive); one-line ValueError if unknown."""
    key = str(dtype).lower()
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


def weight_bytes(cfg: Any, dtype: str = "bf16") -> int:
    """param_count * bytes_per_param(dtype), rounded up."""
    return math.ceil(param_count(cfg) * dtype_bytes(dtype))


def kv_elements_per_token(cfg: Any) -> int:
    """Cached numbers per token, all layers.

    MHA/GQA/MQA: 2 (K and V) * layers * kv_heads * head_dim.
    MLA: layers * (kv_lora_rank + qk_rope_head_dim): one compressed latent plus the
    shared rotary key, as vLLM/SGLang cache it (transformers' eager code caches the
    decompressed K/V instead, which is far larger).
    Sliding-window layers (Mistral v0.1, Gemma-2's local layers) are counted in full.
    """
    s = _shape(cfg)
    if s.attention == "mla":
        return s.layers * (s.kv_lora_rank + s.qk_rope_head_dim)
    return 2 * s.layers * s.kv_heads * s.head_dim


def kv_bytes_per_token(cfg: Any, kv_dtype: str = "bf16") -> int:
    """KV-cache bytes one token occupies across all layers (see kv_elements_per_token)."""
    return math.ceil(kv_elements_per_token(cfg) * dtype_bytes(kv_dtype))


def kv_capacity(kv_cache_bytes: int, bytes_per_token: int, block_size: int, max_model_len: int) -> dict:
    """A paged KV cache as vLLM sizes it: whole blocks of ``block_size`` tokens, and a request of
    ``max_model_len`` tokens holds ceil(max_model_len / block_size) of them (lab 04).

    Returns {"num_blocks", "tokens" (the blocks' capacity), "max_concurrency" (full-length requests)}.
    """
    num_blocks = int(kv_cache_bytes) // (int(block_size) * int(bytes_per_token))
    per_request = -(-int(max_model_len) // int(block_size))
    return {"num_blocks": num_blocks, "tokens": num_blocks * block_size, "max_concurrency": num_blocks / per_request}


def activation_bytes(cfg: Any, batch: int, context: int, dtype: str = "bf16",
                     max_batched_tokens: int | None = DEFAULT_MAX_BATCHED_TOKENS) -> int:
    """Peak transient memory of the largest forward pass serving `batch` sequences of
    `context` tokens.

    The pass carries tokens = min(batch*context, max_batched_tokens): an engine with
    chunked prefill (vLLM's max_num_batched_tokens, default here
    DEFAULT_MAX_BATCHED_TOKENS = 8192) never runs a bigger step, however many sequences
    it holds. max_batched_tokens=None models prefilling the whole batch in one pass,
    tokens = batch*context.

    Inference keeps no activations between layers, so the peak is the widest moment
    inside one layer: the MLP, where the residual stream and the normed input
    (2*hidden) are live next to gate, up and act(gate)*up (3*ffn_width). Attention
    is assumed to run in a fused kernel (FlashAttention/SDPA), so no context^2 score
    matrix is materialised. Logits are computed for the last position of each
    sequence in the step only (as vLLM and transformers' generate do), in fp32: at most
    rows = min(batch, tokens) of them.

        tokens * (2*hidden + 3*ffn_width) * bytes(dtype) + rows * vocab * 4

    ffn_width is the dense intermediate size, or for MoE the experts one token uses
    (experts_per_token * moe_intermediate + shared_intermediate), whichever is larger.
    """
    s = _shape(cfg)
    tokens = batch * context
    if max_batched_tokens is not None:
        if max_batched_tokens < 1:
            raise ValueError(f"max_batched_tokens must be >= 1 or None (got {max_batched_tokens})")
        tokens = min(tokens, max_batched_tokens)
    moe_width = s.experts_per_token * s.moe_intermediate + s.shared_intermediate
    ffn_width = max(s.intermediate, moe_width)
    per_token = (2 * s.hidden + 3 * ffn_width) * dtype_bytes(dtype)
    logits = min(batch, tokens) * s.vocab * 4
    return math.ceil(tokens * per_token + logits)


def overhead_bytes(cuda_context: int = CUDA_CONTEXT_BYTES, allocator_slack: int = ALLOCATOR_SLACK_BYTES) -> int:
    """Fixed per-process cost on top of tensors: 512 MiB CUDA context + 512 MiB allocator
    slack = 1 GiB.

    Source of the context figure: PyTorch PR #86509 measured 287,047,680 bytes for a bare
    CUDA init with lazy module loading (666,632,192 without); we round up to 512 MiB to
    cover cuBLAS workspaces and kernels loaded later. The slack covers the caching
    allocator's rounding and cached free blocks. An order of magnitude, not a measurement.
    """
    return int(cuda_context + allocator_slack)


def _gpu_list(gpus: Iterable | None) -> list:
    from inferlab import hardware

    if gpus is None:
        return list(hardware.CATALOG.values())
    if isinstance(gpus, (str, hardware.GPU)):
        gpus = [gpus]
    return [g if isinstance(g, hardware.GPU) else hardware.get_gpu(g) for g in gpus]


def gpus_needed(total: int, gpu_memory_bytes: int, usable_fraction: float = USABLE_FRACTION) -> int | None:
    """Smallest n with n * memory * usable_fraction >= total; None if more than MAX_GPUS.
    Ignores that each GPU of a tensor-parallel group pays its own overhead."""
    usable = gpu_memory_bytes * usable_fraction
    n = max(1, math.ceil(total / usable))
    return n if n <= MAX_GPUS else None


def estimate(cfg: Any, dtype: str = "bf16", kv_dtype: str = "bf16", context: int = 4096,
             batch: int = 1, gpus: Iterable | None = None,
             max_batched_tokens: int | None = DEFAULT_MAX_BATCHED_TOKENS) -> dict:
    """Full memory budget for serving `batch` sequences of `context` tokens.

    total_bytes = weight_bytes + kv_bytes + activation_bytes + overhead_bytes, with
    kv_bytes = kv_bytes_per_token * context * batch and activation_bytes the peak of one
    step of at most `max_batched_tokens` tokens (None: the whole batch in one pass; see
    :func:`activation_bytes`). ``fits`` maps each GPU name (all of
    the catalog unless `gpus` names some) to the smallest count of that GPU whose usable
    memory (USABLE_FRACTION of the total) holds total_bytes, None if more than 8.
    """
    if context < 1 or batch < 1:
        raise ValueError(f"context and batch must be >= 1 (got context={context}, batch={batch})")
    s = _shape(cfg)
    per_token = kv_bytes_per_token(s, kv_dtype)
    parts = {
        "weight_bytes": weight_bytes(s, dtype),
        "kv_bytes": per_token * context * batch,
        "activation_bytes": activation_bytes(s, batch, context, dtype, max_batched_tokens),
        "overhead_bytes": overhead_bytes(),
    }
    total = sum(parts.values())
    warnings = []
    if s.max_position_embeddings and context > s.max_position_embeddings:
        warnings.append(f"context {context} exceeds max_position_embeddings {s.max_position_embeddings}")
    return {
        "model_type": s.model_type,
        "architecture": s.architecture,
        "attention": s.attention,
        "dtype": dtype,
        "kv_dtype": kv_dtype,
        "context": context,
        "batch": batch,
        "max_batched_tokens": max_batched_tokens,
        "params": param_count(s),
        "active_params": active_param_count(s),
        "kv_bytes_per_token": per_token,
        **parts,
        "total_bytes": total,
        "usable_fraction": USABLE_FRACTION,
        "fits": {g.name: gpus_needed(total, g.memory_bytes) for g in _gpu_list(gpus)},
        "warnings": warnings,
    }


def _fits(cfg: ModelShape, batch: int, context: int, dtype: str, kv_dtype: str, budget: float,
          max_batched_tokens: int | None = DEFAULT_MAX_BATCHED_TOKENS) -> bool:
    est = estimate(cfg, dtype, kv_dtype, context=context, batch=batch, gpus=[],
                   max_batched_tokens=max_batched_tokens)
    return est["total_bytes"] <= budget


def max_batch_context(cfg: Any, gpu: Any, dtype: str = "bf16", kv_dtype: str = "bf16",
                      contexts: Iterable[int] = DEFAULT_CONTEXTS, count: int = 1,
                      max_batched_tokens: int | None = DEFAULT_MAX_BATCHED_TOKENS) -> dict[int, int]:
    """For each context length, the largest batch whose estimate fits in
    count * memory * USABLE_FRACTION of `gpu` (a name or hardware.GPU); 0 if none does.

    Activations are those of one step of at most `max_batched_tokens` tokens (chunked
    prefill, as vLLM schedules); None assumes the whole batch is prefilled in one pass,
    which makes the activation term grow with batch * context and the answer smaller.
    total_bytes grows with batch, so a doubling-then-bisection search is exact."""
    s = _shape(cfg)
    (device,) = _gpu_list([gpu])
    budget = count * device.memory_bytes * USABLE_FRACTION
    result = {}
    for context in contexts:
        def fits(batch: int) -> bool:
            return _fits(s, batch, context, dtype, kv_dtype, budget, max_batched_tokens)

        if not fits(1):
            result[context] = 0
            continue
        low, high = 1, 2
        while fits(high):
            low, high = high, high * 2
        while high - low > 1:  # invariant: low fits, high does not
            mid = (low + high) // 2
            if fits(mid):
                low = mid
            else:
                high = mid
        result[context] = low
    return result
