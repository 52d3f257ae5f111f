"""How much GPU memory does a model need? Memory math from a Hugging Face ``config.json``.

Everything here is arithmetic on the config: no weights are downloaded and no torch
is imported. (The measurement helpers at the end take torch objects that a caller
already has; they import torch only when called.) The pieces of an inference-time
memory budget are

    total = weights + KV cache + activations + overhead

* weights      = param_count * bytes_per_param(dtype)
* KV cache     = kv_bytes_per_token * context * batch
* activations  = transient buffers of one scheduler step of at most
                 ``max_batched_tokens`` tokens (see :func:`activation_bytes`)
* overhead     = CUDA context + allocator slack, a documented constant
                 (see :func:`overhead_bytes`)

``param_count`` is exact: it reproduces the tensor-element total of the published
safetensors checkpoints for the supported architectures (pinned in tests).

Units: GiB = 2**30 bytes, GB = 10**9 bytes. Functions return plain byte counts (int).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

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

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

# model_type -> how its layers are built. Dense "llama-like" families share one code path.
_DENSE_LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"}
_MOE = {"mixtral", "qwen3_moe", "deepseek_v2", "deepseek_v3"}
SUPPORTED_MODEL_TYPES = tuple(sorted(_DENSE_LLAMA_LIKE | _MOE))

# Used only when a config lacks model_type but names its architecture.
_ARCH_TO_MODEL_TYPE = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "GemmaForCausalLM": "gemma",
    "Gemma2ForCausalLM": "gemma2",
    "Phi3ForCausalLM": "phi3",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
}


# ----------------------------------------------------------------------------- configs

def shipped_configs() -> dict[str, Path]:
    """Name -> path of every ``inferlab/configs/*.json`` (name = file stem, e.g. "llama-3.1-8b")."""
    return {p.stem: p for p in sorted(CONFIGS_DIR.glob("*.json"))}


def _config_error(source: Any, reason: str) -> ValueError:
    return ValueError(
        f"cannot read config {source}: {reason} (give a config.json or a directory holding one)"
    )


def _resolve_config_path(source: str | Path) -> Path:
    """A file, a directory holding config.json, or a bare shipped name like "llama-3.1-8b"."""
    path = Path(source).expanduser()
    if path.is_dir():
        inner = path / "config.json"
        if not inner.is_file():
            raise _config_error(source, "directory has no config.json")
        return inner
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = str(source).removesuffix(".json")
    if name in shipped:
        return shipped[name]
    known = ", ".join(shipped)
    raise _config_error(source, f"no such file, and not a shipped config name (shipped: {known})")


def _prefer_text_config(cfg: dict) -> dict:
    """Multimodal configs nest the language model under text_config; use it, keeping
    top-level scalars (e.g. tie_word_embeddings) the text part does not override."""
    text = cfg.get("text_config")
    if not isinstance(text, dict):
        return cfg
    merged = {k: v for k, v in cfg.items() if not isinstance(v, dict)}
    merged.update(text)
    return merged


def load_config(path_or_dict: str | Path | Mapping) -> dict:
    """Return a config as a plain dict from a dict, a config.json path, a directory holding
    config.json, or a shipped name. Raises a one-line ValueError on anything else."""
    if isinstance(path_or_dict, Mapping):
        return _prefer_text_config(dict(path_or_dict))
    if not isinstance(path_or_dict, (str, Path)):
        raise _config_error(repr(path_or_dict), f"expected a path or a dict, got {type(path_or_dict).__name__}")
    path = _resolve_config_path(path_or_dict)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _config_error(path, f"{type(exc).__name__}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _config_error(path, f"invalid JSON at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(cfg, dict):
        raise _config_error(path, f"top level is a JSON {type(cfg).__name__}, not an object")
    return _prefer_text_config(cfg)


# ----------------------------------------------------------------------------- shape

@dataclass(frozen=True)
class ModelShape:
    """The numbers of a config that memory math needs, under uniform names."""

    model_type: str
    architecture: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int          # dense MLP width (dense layers of an MoE model too)
    vocab: int
    tied: bool                 # lm_head shares the embedding matrix
    attention: str             # "mha" | "gqa" | "mqa" | "mla"
    max_position_embeddings: int | None = None
    sliding_window: int | None = None
    # biases and extra norms
    attention_bias: bool = False   # q, k, v and o projections carry biases
    qkv_bias: bool = False         # only q, k, v carry biases (Qwen2)
    mlp_bias: bool = False
    qk_norm: bool = False          # per-head RMSNorm on q and k (Qwen3)
    norms_per_layer: int = 2       # Gemma-2 has 4: pre/post attention, pre/post feed-forward
    fused_qkv: bool = False        # Phi-3 stores one qkv_proj (same count as three)
    # multi-head latent attention (DeepSeek-V2/V3)
    kv_lora_rank: int | None = None
    q_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    # mixture of experts
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate: int = 0      # width of one routed expert
    shared_intermediate: int = 0   # width of the shared-expert MLP (all shared experts fused)
    first_k_dense: int = 0
    n_moe_layers: int = 0
    router_bias: bool = False      # DeepSeek-V3's e_score_correction_bias

    @property
    def is_moe(self) -> bool:
        return self.n_moe_layers > 0

    @property
    def n_dense_layers(self) -> int:
        return self.layers - self.n_moe_layers


def _require(cfg: Mapping, key: str, model_type: str) -> Any:
    value = cfg.get(key)
    if value is None:
        raise ValueError(f"config is missing {key!r} (model_type={model_type})")
    return value


def _model_type(cfg: Mapping) -> str | None:
    model_type = cfg.get("model_type")
    if model_type:
        return str(model_type)
    for arch in cfg.get("architectures") or []:
        if arch in _ARCH_TO_MODEL_TYPE:
            return _ARCH_TO_MODEL_TYPE[arch]
    return None


def _attention_kind(heads: int, kv_heads: int, is_mla: bool) -> str:
    if is_mla:
        return "mla"
    if kv_heads == heads:
        return "mha"
    if kv_heads == 1:
        return "mqa"
    return "gqa"


def _moe_layer_count(cfg: Mapping, model_type: str, layers: int) -> int:
    """How many decoder layers use a routed-expert MLP instead of a dense one."""
    if model_type == "mixtral":
        return layers
    if model_type == "qwen3_moe":
        sparse_step = cfg.get("decoder_sparse_step") or 1
        dense_only = set(cfg.get("mlp_only_layers") or [])
        return sum(1 for i in range(layers) if i not in dense_only and (i + 1) % sparse_step == 0)
    # DeepSeek: the first `first_k_dense_replace` layers are dense, then every `moe_layer_freq`-th.
    first_dense = cfg.get("first_k_dense_replace") or 0
    freq = cfg.get("moe_layer_freq") or 1
    return sum(1 for i in range(layers) if i >= first_dense and i % freq == 0)


def shape_from_config(cfg: Mapping | str | Path) -> ModelShape:
    """Normalise a config (dict, path or shipped name) into a :class:`ModelShape`."""
    cfg = load_config(cfg)
    model_type = _model_type(cfg)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported config: model_type={model_type}; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    hidden = int(_require(cfg, "hidden_size", model_type))
    layers = int(_require(cfg, "num_hidden_layers", model_type))
    heads = int(_require(cfg, "num_attention_heads", model_type))
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    vocab = int(_require(cfg, "vocab_size", model_type))
    # Gemma ties by default; the others untie by default in transformers.
    tied_default = model_type in {"gemma", "gemma2"}
    tied = bool(cfg.get("tie_word_embeddings", tied_default))
    is_mla = model_type in {"deepseek_v2", "deepseek_v3"}

    moe: dict[str, Any] = {}
    if model_type == "mixtral":
        moe = dict(
            n_routed_experts=int(_require(cfg, "num_local_experts", model_type)),
            experts_per_token=int(_require(cfg, "num_experts_per_tok", model_type)),
            moe_intermediate=int(_require(cfg, "intermediate_size", model_type)),
        )
    elif model_type == "qwen3_moe":
        moe = dict(
            n_routed_experts=int(_require(cfg, "num_experts", model_type)),
            experts_per_token=int(_require(cfg, "num_experts_per_tok", model_type)),
            moe_intermediate=int(_require(cfg, "moe_intermediate_size", model_type)),
        )
    elif is_mla and cfg.get("n_routed_experts"):
        moe_intermediate = int(_require(cfg, "moe_intermediate_size", model_type))
        n_shared = int(cfg.get("n_shared_experts") or 0)
        moe = dict(
            n_routed_experts=int(cfg["n_routed_experts"]),
            n_shared_experts=n_shared,
            experts_per_token=int(_require(cfg, "num_experts_per_tok", model_type)),
            moe_intermediate=moe_intermediate,
            shared_intermediate=moe_intermediate * n_shared,
            first_k_dense=int(cfg.get("first_k_dense_replace") or 0),
            router_bias=cfg.get("topk_method") == "noaux_tc",
        )
    if moe:
        moe["n_moe_layers"] = _moe_layer_count(cfg, model_type, layers)

    mla: dict[str, Any] = {}
    if is_mla:
        mla = dict(
            kv_lora_rank=int(_require(cfg, "kv_lora_rank", model_type)),
            q_lora_rank=int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None,
            qk_nope_head_dim=int(_require(cfg, "qk_nope_head_dim", model_type)),
            qk_rope_head_dim=int(_require(cfg, "qk_rope_head_dim", model_type)),
            v_head_dim=int(_require(cfg, "v_head_dim", model_type)),
        )

    return ModelShape(
        model_type=model_type,
        architecture=(cfg.get("architectures") or [model_type])[0],
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=int(cfg.get("intermediate_size") or 0),
        vocab=vocab,
        tied=tied,
        attention=_attention_kind(heads, kv_heads, is_mla),
        max_position_embeddings=cfg.get("max_position_embeddings"),
        sliding_window=cfg.get("sliding_window"),
        attention_bias=bool(cfg.get("attention_bias", False)) and not is_mla,
        qkv_bias=model_type == "qwen2",
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        qk_norm=model_type in {"qwen3", "qwen3_moe"},
        norms_per_layer=4 if model_type == "gemma2" else 2,
        fused_qkv=model_type == "phi3",
        **mla,
        **moe,
    )


def _shape(cfg: Any) -> ModelShape:
    return cfg if isinstance(cfg, ModelShape) else shape_from_config(cfg)


# ----------------------------------------------------------------------------- parameters

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


# ----------------------------------------------------------------------------- bytes

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


# ----------------------------------------------------------------------------- estimate

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


# ----------------------------------------------------------------------------- report

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


# ----------------------------------------------------------------------------- CLI

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


def shape_dict(cfg: Any) -> dict:
    """ModelShape as a plain dict (handy in notebooks)."""
    return asdict(_shape(cfg))


# ----------------------------------------------------------------------------- measuring

def _unique_storage_bytes(tensors: Iterable) -> int:
    """Bytes of the distinct storages behind `tensors`: a storage shared by several
    tensors (tied weights, views) is counted once, in full."""
    seen: set = set()
    total = 0
    for tensor in tensors:
        if tensor is None:
            continue
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr(), storage.nbytes())
        if key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def tensor_bytes(model: Any, buffers: bool = True) -> int:
    """Measured bytes a torch module holds in tensors: every distinct parameter storage
    (tied weights once) and, unless ``buffers=False``, its buffers (e.g. the rotary
    ``inv_freq`` tables, which are not weights and which no config formula counts)."""
    tensors = list(model.parameters())
    if buffers:
        tensors += list(model.buffers())
    return _unique_storage_bytes(tensors)


def _cache_tensors(cache: Any) -> list:
    """Key and value tensors of a transformers Cache (``.layers`` with ``.keys``/``.values``,
    transformers >= 4.56) or of the legacy tuple of (key, value) pairs per layer."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        tensors = []
        for layer in layers:
            tensors += [getattr(layer, "keys", None), getattr(layer, "values", None)]
        return tensors
    return [t for pair in cache for t in pair]


def kv_cache_bytes(past_key_values: Any) -> int:
    """Measured bytes of the key and value tensors a KV cache holds (after a forward
    pass with use_cache=True: ``outputs.past_key_values``)."""
    return _unique_storage_bytes(_cache_tensors(past_key_values))


def measure_gpu_peak(fn: Any, device: Any = None) -> dict:
    """Run ``fn()`` on a CUDA device and report what the PyTorch allocator saw.

    Returns before_bytes (torch.cuda.memory_allocated before the call), peak_bytes
    (torch.cuda.max_memory_allocated during it, after resetting the peak), after_bytes
    and fn's return value under "result". These count tensors only: the CUDA context
    and the allocator's cached-but-free blocks (memory_reserved) are not included.
    """
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("measure_gpu_peak needs a CUDA GPU and torch cannot see one")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    return {
        "before_bytes": before,
        "peak_bytes": torch.cuda.max_memory_allocated(device),
        "after_bytes": torch.cuda.memory_allocated(device),
        "result": result,
    }
