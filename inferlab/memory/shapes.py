"""From a Hugging Face ``config.json`` to a ``ModelShape``: the numbers every sizing needs (layers,
widths, heads, experts, attention kind), for the architectures the course supports. No torch, no
weights. Labs 02, 08 and 11 size memory, parallelism and capacity from these shapes."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

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


def shipped_configs() -> dict[str, Path]:
    """Name -> path of every ``inferlab/configs/*.json`` (name = file stem, e.g. "llama-3.1-8b")."""
    return {p.stem: p for p in sorted(CONFIGS_DIR.glob("*.json"))}


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


def shape_dict(cfg: Any) -> dict:
    """ModelShape as a plain dict (handy in notebooks)."""
    return asdict(_shape(cfg))
