"""Graded checks of lab 02, memory math.

Each check runs the learner's function on configs (or tiny models) the notebook never
shows: shipped configs the lab does not use, and variants built here (tied and untied
heads, q/k/v biases, MHA/GQA/MQA through num_key_value_heads, an explicit head_dim that
is not hidden/heads, MLA). The reference is :mod:`inferlab.memory`.
"""
from __future__ import annotations

from inferlab import hardware, memory
from inferlab.checks import CheckFailed, Exercise, expect, graded

LAB = "02-memory"

# Bytes per element -> the dtype name inferlab.memory uses for it.
_DTYPE_OF_BYTES = {4: "fp32", 2: "bf16", 1: "fp8"}


def _cfg(name: str, **changes) -> dict:
    """A shipped config with some fields changed (None removes a field)."""
    cfg = memory.load_config(name)
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


def _describe(cfg: dict) -> str:
    s = memory.shape_from_config(cfg)
    bits = [s.model_type, f"{s.layers} layers", f"hidden {s.hidden}",
            f"{s.heads} q heads / {s.kv_heads} kv heads", f"head_dim {s.head_dim}",
            "tied" if s.tied else "untied"]
    if s.attention == "mla":
        bits[3] = f"MLA (kv_lora_rank {s.kv_lora_rank}, rope dim {s.qk_rope_head_dim})"
        del bits[4]  # head_dim means nothing for MLA's cache
    if s.attention_bias:
        bits.append("biases on q/k/v/o")
    elif s.qkv_bias:
        bits.append("biases on q/k/v")
    return ", ".join(bits)


def _equal(value, expected) -> bool:
    try:
        return value == expected or float(value) == float(expected)
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- parameters

def _param_cases() -> list[tuple[str, dict]]:
    return [
        ("Qwen2.5-7B", _cfg("qwen2.5-7b")),
        ("Mistral-7B", _cfg("mistral-7b")),
        ("Llama-3.2-1B", _cfg("llama-3.2-1b")),
        ("Qwen2.5-0.5B", _cfg("qwen2.5-0.5b")),
        ("Llama-3.1-70B", _cfg("llama-3.1-70b")),
        ("a Llama variant with MHA, q/k/v/o biases, an explicit head_dim and a tied head",
         _cfg("llama-3.2-1b", num_hidden_layers=3, num_key_value_heads=32, head_dim=96,
              attention_bias=True, tie_word_embeddings=True)),
        ("a Mistral variant with MQA (one kv head), untied",
         _cfg("mistral-7b", num_hidden_layers=2, num_key_value_heads=1, vocab_size=5000)),
        ("a Qwen2 variant without num_key_value_heads (so MHA), untied",
         _cfg("qwen2.5-0.5b", num_hidden_layers=2, num_key_value_heads=None,
              tie_word_embeddings=False, head_dim=None)),
    ]


def _param_diagnosis(cfg: dict, got, expected: int) -> str:
    s = memory.shape_from_config(cfg)
    try:
        diff = int(got) - expected
    except (TypeError, ValueError):
        return f"returned {got!r}, not a number"
    if isinstance(got, float) and 0 < got < expected / 1e5:
        return "return the number of parameters itself (an int), not millions or billions"
    if abs(diff) == s.vocab * s.hidden:
        return "off by exactly one vocab x hidden matrix: is the LM head tied (tie_word_embeddings)?"
    if diff % s.layers == 0:
        per_layer = diff // s.layers
        if abs(per_layer) == 2 * s.hidden:
            return "off by 2*hidden per layer: the two RMSNorm weights of each layer"
        q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
        if abs(per_layer) in {q + 2 * kv, q + 2 * kv + s.hidden}:
            return "off by the attention biases of each layer"
        extra_kv = 2 * (s.heads - s.kv_heads) * s.head_dim  # k and v widths if they were as wide as q
        if s.kv_heads != s.heads and per_layer in {s.hidden * extra_kv, (s.hidden + 1) * extra_kv}:
            return "k and v are as wide as q: use num_key_value_heads for their width (GQA/MQA)"
    if cfg.get("head_dim") and int(got) == memory.param_count({k: v for k, v in cfg.items() if k != "head_dim"}):
        return "this config sets head_dim explicitly; q/k/v/o widths are heads * head_dim, not hidden"
    norms = s.layers * s.norms_per_layer * s.hidden
    if abs(diff) in {s.hidden, norms, norms + s.hidden}:
        return "off by RMSNorm weights: 2*hidden per layer plus hidden for the final norm"
    return f"off by {diff:+,}"


@graded(hint="embedding V*h, LM head V*h unless tie_word_embeddings; per layer q and o h*n_q*d, "
             "k and v h*n_kv*d (n_kv defaults to n_q, d to h/n_q), biases where the config has them, "
             "MLP 3*h*I, two norms of h; plus the final norm h")
def check_param_count(param_count):
    """param_count(cfg: dict) -> int, on dense configs the notebook does not use."""
    cases = _param_cases()
    for label, cfg in cases:
        expected = memory.param_count(cfg)
        got = param_count(dict(cfg))
        if not _equal(got, expected):
            raise CheckFailed(f"{label} ({_describe(cfg)}): you returned {got!r}, expected {expected:,}; "
                              + _param_diagnosis(cfg, got, expected))
    return f"exact on {len(cases)} unseen dense configs (tied/untied, biases, MHA/GQA/MQA, explicit head_dim)"


# ----------------------------------------------------------------------------- KV cache

def _kv_cases() -> list[tuple[str, dict, int]]:
    return [
        ("Mixtral-8x7B", _cfg("mixtral-8x7b"), 2),
        ("Gemma-2-9B (head_dim 256, not hidden/heads)", _cfg("gemma-2-9b"), 2),
        ("Qwen2.5-7B with an FP8 cache", _cfg("qwen2.5-7b"), 1),
        ("DeepSeek-R1 (MLA)", _cfg("deepseek-r1"), 2),
        ("a DeepSeek-V2-Lite variant with kv_lora_rank 256, FP32", _cfg("deepseek-v2-lite", kv_lora_rank=256), 4),
        ("a Llama variant with MHA, FP32", _cfg("llama-3.2-1b", num_key_value_heads=32), 4),
        ("a Mistral variant with MQA", _cfg("mistral-7b", num_key_value_heads=1), 2),
        ("a Llama variant with head_dim 80", _cfg("llama-3.1-8b", head_dim=80, num_hidden_layers=7), 2),
    ]


def _kv_diagnosis(cfg: dict, got, expected: int, nbytes: int) -> str:
    s = memory.shape_from_config(cfg)
    try:
        got = float(got)
    except (TypeError, ValueError):
        return f"returned {got!r}, not a number"
    if s.attention == "mla":
        as_gqa = 2 * s.layers * s.kv_heads * s.head_dim * nbytes
        if got == as_gqa or got == 2 * expected:
            return "MLA caches one latent of kv_lora_rank plus one rope key of qk_rope_head_dim per layer, not per-head K and V"
        return f"off by {got - expected:+,.0f} bytes"
    if got * 2 == expected:
        return "half the answer: cache both K and V (factor 2)"
    if got == expected * s.heads / s.kv_heads and s.heads != s.kv_heads:
        return "you used num_attention_heads: K and V exist only for num_key_value_heads heads"
    if got * s.layers == expected:
        return "that is one layer: multiply by num_hidden_layers"
    if got == expected / nbytes:
        return "that is elements, not bytes: multiply by bytes_per_element"
    if got == expected * (s.hidden // s.heads) / s.head_dim:
        return "head_dim is given explicitly in this config; use it rather than hidden/heads"
    return f"off by {got - expected:+,.0f} bytes"


@graded(hint="MHA/GQA/MQA: 2 (K and V) * layers * num_key_value_heads * head_dim * bytes; "
             "MLA (kv_lora_rank in the config): layers * (kv_lora_rank + qk_rope_head_dim) * bytes")
def check_kv_bytes_per_token(kv_bytes_per_token):
    """kv_bytes_per_token(cfg: dict, bytes_per_element) -> int, on unseen configs and dtypes."""
    cases = _kv_cases()
    answers = [(kv_bytes_per_token(dict(cfg), nbytes), memory.kv_bytes_per_token(cfg, _DTYPE_OF_BYTES[nbytes]))
               for _, cfg, nbytes in cases]
    # With 2 bytes per element, elements and "K but not V" give the same number; the other dtypes tell.
    elements = all(_equal(got, expected / nbytes) for (got, expected), (_, _, nbytes) in zip(answers, cases))
    for (label, cfg, nbytes), (got, expected) in zip(cases, answers):
        if not _equal(got, expected):
            why = ("that is elements, not bytes: multiply by bytes_per_element" if elements
                   else _kv_diagnosis(cfg, got, expected, nbytes))
            raise CheckFailed(f"{label} ({_describe(cfg)}), {nbytes} B/element: you returned {got!r}, "
                              f"expected {expected:,}; " + why)
    return f"exact on {len(cases)} unseen configs (MHA, GQA, MQA, MLA; 1, 2 and 4 bytes per element)"


# ----------------------------------------------------------------------------- max batch

def _batch_cases() -> list[tuple[str, dict, str, int, str, str]]:
    """label, config, GPU name, context, weight dtype, KV dtype."""
    return [
        ("Qwen2.5-7B on an L40S", _cfg("qwen2.5-7b"), "L40S", 8192, "bf16", "bf16"),
        ("Mistral-7B on an A10G, FP8 cache", _cfg("mistral-7b"), "A10G", 4096, "bf16", "fp8"),
        ("Llama-3.1-70B in FP8 on an H200", _cfg("llama-3.1-70b"), "H200", 32768, "fp8", "bf16"),
        ("Llama-3.1-70B in BF16 on an H200 (does it fit at all?)", _cfg("llama-3.1-70b"), "H200", 4096, "bf16", "bf16"),
        ("DeepSeek-V2-Lite on an A100-40GB", _cfg("deepseek-v2-lite"), "A100-40GB", 16384, "bf16", "bf16"),
        ("Gemma-2-9B in INT4 on a T4", _cfg("gemma-2-9b"), "T4", 2048, "int4", "fp16"),
        ("Qwen2.5-0.5B on an MI300X", _cfg("qwen2.5-0.5b"), "MI300X", 32768, "bf16", "bf16"),
    ]


@graded(hint="budget = memory.USABLE_FRACTION * gpu.memory_bytes; subtract weights, overhead and the "
             "activation peak (memory.activation_bytes); divide the rest by one sequence's KV bytes "
             "(kv_bytes_per_token * context); 0 when nothing fits")
def check_max_batch(max_batch):
    """max_batch(cfg, gpu, context, dtype, kv_dtype) -> int, against memory.max_batch_context."""
    cases = _batch_cases()
    for label, cfg, gpu_name, context, dtype, kv_dtype in cases:
        gpu = hardware.get_gpu(gpu_name)
        (expected,) = memory.max_batch_context(cfg, gpu, dtype, kv_dtype, contexts=(context,)).values()
        got = max_batch(dict(cfg), gpu, context, dtype, kv_dtype)
        if not _equal(got, expected):
            hint = ""
            if isinstance(got, (int, float)) and got > expected:
                hint = "; too many: something that takes memory is missing from your budget"
            elif isinstance(got, (int, float)):
                hint = "; too few: check the budget (usable fraction of gpu.memory_bytes) and what you subtract"
            raise CheckFailed(f"{label}, context {context:,}, weights {dtype}, KV {kv_dtype}: "
                              f"you returned {got!r}, expected {expected}{hint}")
    return f"exact on {len(cases)} unseen model/GPU/context/dtype combinations"


# ----------------------------------------------------------------------------- measured bytes

def _tiny_models():
    """Two small randomly initialised models the notebook never loads, with a prefill length."""
    import warnings

    import torch
    with warnings.catch_warnings():  # a first import of transformers may warn about notebook widgets
        warnings.simplefilter("ignore")
        from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    llama = LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=3,
                        num_attention_heads=8, num_key_value_heads=2, head_dim=48,
                        tie_word_embeddings=True, max_position_embeddings=512)
    qwen = Qwen2Config(vocab_size=700, hidden_size=128, intermediate_size=320, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
                       max_position_embeddings=512)
    return [
        ("a tied GQA Llama in bfloat16", LlamaForCausalLM(llama).to(torch.bfloat16).eval(), "bf16", 37),
        ("an untied MHA Qwen2 in float32", Qwen2ForCausalLM(qwen).to(torch.float32).eval(), "fp32", 5),
    ]


def _bytes_diagnosis(got, expected: int, model=None, layers: int = 0) -> str:
    try:
        got = int(got)
    except (TypeError, ValueError):
        return f"returned {got!r}, not a number"
    if model is not None:
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        if got - expected == buffers:
            return "that includes the model's buffers (rotary tables); count the parameters only"
        head = model.get_output_embeddings()
        if head is not None and got - expected == head.weight.numel() * head.weight.element_size():
            return "the tied LM head is counted twice: it shares its tensor with the embedding"
        if got == expected * 4 // next(model.parameters()).element_size() and got != expected:
            return "that assumes 4 bytes per element: use each tensor's element_size()"
    if got * 2 == expected:
        return "half the answer: count both keys and values"
    if layers and got * layers == expected:
        return "that is one layer's cache: add up every layer of cache.layers"
    return f"off by {got - expected:+,} bytes"


@graded(hint="weights: sum numel()*element_size() over model.parameters() (a tied tensor appears once); "
             "KV: the same over layer.keys and layer.values of every layer in cache.layers")
def check_measured_match(weight_tensor_bytes, kv_tensor_bytes):
    """Learner's byte counters on tiny unseen models must equal the prediction from their configs."""
    import torch

    measured = []
    for label, model, dtype, tokens in _tiny_models():
        cfg = model.config.to_dict()
        predicted = memory.weight_bytes(cfg, dtype)
        expect(memory.tensor_bytes(model, buffers=False) == predicted, "internal: reference mismatch")
        ids = torch.arange(tokens).unsqueeze(0) % cfg["vocab_size"]
        with torch.no_grad():
            cache = model(ids, use_cache=True).past_key_values
        measured.append((label, model, tokens, weight_tensor_bytes(model), predicted, kv_tensor_bytes(cache),
                         memory.kv_bytes_per_token(cfg, dtype) * tokens, memory.kv_cache_bytes(cache)))
    # On a bfloat16 cache, "elements" and "keys only" give the same number; the float32 model tells.
    kv_elements = all(_equal(kv, predicted_kv // model.dtype.itemsize)
                      for _, model, _, _, _, kv, predicted_kv, _ in measured)
    for label, model, tokens, got, predicted, got_kv, predicted_kv, _ in measured:
        if not _equal(got, predicted):
            raise CheckFailed(f"weights of {label}: you measured {got!r} bytes, the config predicts "
                              f"{predicted:,}; " + _bytes_diagnosis(got, predicted, model))
        if not _equal(got_kv, predicted_kv):
            why = ("that counts elements, not bytes: multiply by each tensor's element_size()" if kv_elements
                   else _bytes_diagnosis(got_kv, predicted_kv, layers=model.config.num_hidden_layers))
            raise CheckFailed(f"KV cache of {label} after {tokens} tokens: you measured {got_kv!r} bytes, "
                              f"the config predicts {predicted_kv:,}; " + why)
    return "weights and KV cache of two unseen tiny models measured to the byte"


EXERCISES = [
    Exercise(check_param_count, ("param_count",)),
    Exercise(check_kv_bytes_per_token, ("kv_bytes_per_token",)),
    Exercise(check_max_batch, ("max_batch",)),
    Exercise(check_measured_match, ("weight_tensor_bytes", "kv_tensor_bytes")),
]
