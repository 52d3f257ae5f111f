"""Lab 02's catalogue: answers a learner could write, and what the checks must say to each.

Wrong answers are the reference of :mod:`inferlab.memory` with one thing changed; the words
after each are what its FAIL line must contain.
"""
from __future__ import annotations

from inferlab import memory
from inferlab.checks import right, wrong
from inferlab.checks.memory import (_DTYPE_OF_BYTES, check_kv_bytes_per_token, check_max_batch, check_measured_match,
                                    check_param_count)


def _kv_heads(cfg):
    return cfg.get("num_key_value_heads") or cfg["num_attention_heads"]


def _head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


# ----------------------------------------------------------------------------- parameters


def forgets_untied_head(cfg):                   # counts one vocab matrix whatever the config says
    return memory.param_count(cfg | {"tie_word_embeddings": True})


def double_counts_tied_head(cfg):
    return memory.param_count(cfg | {"tie_word_embeddings": False})


def forgets_qkv_biases(cfg):
    return memory.param_count(cfg | {"model_type": "llama", "attention_bias": False})


def mha_instead_of_gqa(cfg):
    return memory.param_count(cfg | {"num_key_value_heads": cfg["num_attention_heads"]})


def forgets_norms(cfg):
    return memory.param_count(cfg) - cfg["num_hidden_layers"] * 2 * cfg["hidden_size"] - cfg["hidden_size"]


def ignores_explicit_head_dim(cfg):
    return memory.param_count({k: v for k, v in cfg.items() if k != "head_dim"})


def returns_float_billions(cfg):
    return round(memory.param_count(cfg) / 1e9, 2)


def crashes_on_a_key(cfg):
    return cfg["no_such_key"]


# ----------------------------------------------------------------------------- KV cache


def _kv(cfg, nbytes):
    return memory.kv_bytes_per_token(cfg, _DTYPE_OF_BYTES[nbytes])


def no_factor_two(cfg, b):
    return _kv(cfg, b) // 2


def heads_not_kv_heads(cfg, b):
    if cfg.get("kv_lora_rank"):
        return _kv(cfg, b)
    return 2 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * _head_dim(cfg) * b


def forgets_layers(cfg, b):
    return _kv(cfg, b) // cfg["num_hidden_layers"]


def ignores_head_dim(cfg, b):
    return _kv({k: v for k, v in cfg.items() if k != "head_dim"}, b)


def mla_as_gqa(cfg, b):                          # treats DeepSeek like any other config
    return 2 * cfg["num_hidden_layers"] * _kv_heads(cfg) * _head_dim(cfg) * b


def mla_forgets_rope_key(cfg, b):
    if cfg.get("kv_lora_rank"):
        return cfg["num_hidden_layers"] * cfg["kv_lora_rank"] * b
    return _kv(cfg, b)


def elements_not_bytes(cfg, b):
    return _kv(cfg, 1) if not cfg.get("kv_lora_rank") else memory.kv_elements_per_token(cfg)


def returns_none(cfg, b):
    return None


# ----------------------------------------------------------------------------- max batch


def _solve(cfg, gpu, context, dtype, kv_dtype, *, budget=None, weights=True, overhead=True, activations=True):
    budget = memory.USABLE_FRACTION * gpu.memory_bytes if budget is None else budget
    fixed = (memory.weight_bytes(cfg, dtype) if weights else 0) + (memory.overhead_bytes() if overhead else 0)
    per_sequence = memory.kv_bytes_per_token(cfg, kv_dtype) * context
    batch = max(0, int((budget - fixed) // per_sequence))
    while activations and batch > 0 and \
            fixed + batch * per_sequence + memory.activation_bytes(cfg, batch, context, dtype) > budget:
        batch -= 1
    return batch


def ignores_weights(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    return _solve(cfg, gpu, context, dtype, kv_dtype, weights=False)


def ignores_usable_fraction(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    return _solve(cfg, gpu, context, dtype, kv_dtype, budget=gpu.memory_bytes)


def ignores_activations(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    return _solve(cfg, gpu, context, dtype, kv_dtype, activations=False)


def ignores_overhead(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    return _solve(cfg, gpu, context, dtype, kv_dtype, overhead=False)


def gigabytes_not_gibibytes(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    return _solve(cfg, gpu, context, dtype, kv_dtype, budget=memory.USABLE_FRACTION * gpu.memory_gib * 1e9)


def ignores_dtypes(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    return _solve(cfg, gpu, context, "bf16", "bf16")


def negative_when_nothing_fits(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    per_sequence = memory.kv_bytes_per_token(cfg, kv_dtype) * context
    free = memory.USABLE_FRACTION * gpu.memory_bytes - memory.weight_bytes(cfg, dtype) - memory.overhead_bytes()
    batch = int(free // per_sequence)
    while batch > 0 and memory.estimate(cfg, dtype, kv_dtype, context, batch, gpus=[])["total_bytes"] > \
            memory.USABLE_FRACTION * gpu.memory_bytes:
        batch -= 1
    return batch


def by_search(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
    """Right: the largest batch whose whole estimate fits, found by counting up."""
    budget = memory.USABLE_FRACTION * gpu.memory_bytes
    batch = 0
    while memory.estimate(cfg, dtype, kv_dtype, context, batch + 1, gpus=[])["total_bytes"] <= budget:
        batch += 1
    return batch


# ----------------------------------------------------------------------------- measured bytes


def weights_right(model):
    return memory.tensor_bytes(model, buffers=False)


def state_dict_bytes(model):                     # lists a tied tensor under both names
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def assumes_four_bytes(model):
    return sum(p.numel() * 4 for p in model.parameters())


def includes_buffers(model):
    return weights_right(model) + sum(b.numel() * b.element_size() for b in model.buffers())


def named_with_duplicates(model):
    return sum(p.numel() * p.element_size() for _, p in model.named_parameters(remove_duplicate=False))


def keys_only(cache):
    return sum(layer.keys.numel() * layer.keys.element_size() for layer in cache.layers)


def first_layer_only(cache):
    layer = cache.layers[0]
    return sum(t.numel() * t.element_size() for t in (layer.keys, layer.values))


def kv_elements_not_bytes(cache):
    return sum(t.numel() for layer in cache.layers for t in (layer.keys, layer.values))


CATALOGUE = [
    wrong(check_param_count, "is the LM head tied (tie_word_embeddings)", forgets_untied_head),
    wrong(check_param_count, "is the LM head tied (tie_word_embeddings)", double_counts_tied_head),
    wrong(check_param_count, "off by the attention biases", forgets_qkv_biases),
    wrong(check_param_count, "use num_key_value_heads for their width", mha_instead_of_gqa),
    wrong(check_param_count, "RMSNorm", forgets_norms),
    wrong(check_param_count, "this config sets head_dim explicitly", ignores_explicit_head_dim),
    wrong(check_param_count, "not millions or billions", returns_float_billions),
    wrong(check_param_count, "your code raised KeyError", crashes_on_a_key),
    right(check_param_count, memory.param_count, label="library-reference"),
    wrong(check_kv_bytes_per_token, "cache both K and V (factor 2)", no_factor_two),
    wrong(check_kv_bytes_per_token, "you used num_attention_heads", heads_not_kv_heads),
    wrong(check_kv_bytes_per_token, "multiply by num_hidden_layers", forgets_layers),
    wrong(check_kv_bytes_per_token, "head_dim is given explicitly", ignores_head_dim),
    wrong(check_kv_bytes_per_token, "MLA caches one latent of kv_lora_rank", mla_as_gqa),
    wrong(check_kv_bytes_per_token, "DeepSeek-R1 (MLA)", mla_forgets_rope_key),
    wrong(check_kv_bytes_per_token, "that is elements, not bytes", elements_not_bytes),
    wrong(check_kv_bytes_per_token, "not a number", returns_none),
    right(check_kv_bytes_per_token, _kv, label="library-reference"),
    wrong(check_max_batch, "too many: something that takes memory is missing", ignores_weights),
    wrong(check_max_batch, "too many: something that takes memory is missing", ignores_usable_fraction),
    wrong(check_max_batch, "too many", ignores_activations),
    wrong(check_max_batch, "too many", ignores_overhead),
    wrong(check_max_batch, "too few: check the budget", gigabytes_not_gibibytes),
    wrong(check_max_batch, "KV fp8: you returned 12, expected 25", ignores_dtypes),
    wrong(check_max_batch, "does it fit at all", negative_when_nothing_fits),
    right(check_max_batch, by_search),
    wrong(check_measured_match, "the tied LM head is counted twice", weight_tensor_bytes=state_dict_bytes),
    wrong(check_measured_match, "that assumes 4 bytes per element", weight_tensor_bytes=assumes_four_bytes),
    wrong(check_measured_match, "that includes the model's buffers", weight_tensor_bytes=includes_buffers),
    wrong(check_measured_match, "the tied LM head is counted twice", weight_tensor_bytes=named_with_duplicates),
    wrong(check_measured_match, "count both keys and values", kv_tensor_bytes=keys_only),
    wrong(check_measured_match, "that is one layer's cache", kv_tensor_bytes=first_layer_only),
    wrong(check_measured_match, "that counts elements, not bytes", kv_tensor_bytes=kv_elements_not_bytes),
    right(check_measured_match, weights_right, memory.kv_cache_bytes, label="library-reference"),
]
