"""Lab 02's graded checks: each fails on the learner's stub, fails on plausible wrong
answers, and passes on the reference solution."""
import pytest

from inferlab import memory
from inferlab.checks import memory as chk

LAB = "02-memory"



def _kv_heads(cfg):
    return cfg.get("num_key_value_heads") or cfg["num_attention_heads"]


def _head_dim(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


# ----------------------------------------------------------------------------- stubs and solution

def test_every_check_fails_on_the_stub(stub, capsys):
    verdicts = [
        chk.check_param_count(stub["param_count"]),
        chk.check_kv_bytes_per_token(stub["kv_bytes_per_token"]),
        chk.check_max_batch(stub["max_batch"]),
        chk.check_measured_match(stub["weight_tensor_bytes"], stub["kv_tensor_bytes"]),
    ]
    for verdict in verdicts:
        assert not verdict.passed, verdict.name
        assert "not implemented" in verdict.detail
    out = capsys.readouterr().out
    assert out.count("FAIL check_") == 4 and "hint:" in out


def test_every_check_passes_on_the_solution(solution, capsys):
    verdicts = [
        chk.check_param_count(solution["param_count"]),
        chk.check_kv_bytes_per_token(solution["kv_bytes_per_token"]),
        chk.check_max_batch(solution["max_batch"]),
        chk.check_measured_match(solution["weight_tensor_bytes"], solution["kv_tensor_bytes"]),
    ]
    assert all(v.passed for v in verdicts), [v.line() for v in verdicts]
    assert capsys.readouterr().out.count("PASS check_") == 4


def test_checks_use_configs_the_notebook_does_not_show():
    shown = {"smollm2-135m-instruct", "llama-3.1-8b"}
    for _, cfg in chk._param_cases():
        assert memory.param_count(cfg) not in {memory.param_count(n) for n in shown}
    families = {memory.shape_from_config(cfg).model_type for _, cfg in chk._param_cases()}
    assert families == {"llama", "mistral", "qwen2"}
    kinds = {memory.shape_from_config(cfg).attention for _, cfg, _ in chk._kv_cases()}
    assert kinds == {"mha", "gqa", "mqa", "mla"}
    assert any(memory.max_batch_context(c, g, d, k, contexts=(x,))[x] == 0 for _, c, g, x, d, k in chk._batch_cases())


# ----------------------------------------------------------------------------- parameters

def _wrong_param_counts(right):
    def forgets_untied_head(cfg):  # counts one vocab matrix whatever the config says
        return right(cfg | {"tie_word_embeddings": True})

    def double_counts_tied_head(cfg):
        return right(cfg | {"tie_word_embeddings": False})

    def forgets_qkv_biases(cfg):
        return right(cfg | {"model_type": "llama", "attention_bias": False})

    def mha_instead_of_gqa(cfg):
        return right(cfg | {"num_key_value_heads": cfg["num_attention_heads"]})

    def forgets_norms(cfg):
        return right(cfg) - cfg["num_hidden_layers"] * 2 * cfg["hidden_size"] - cfg["hidden_size"]

    def ignores_explicit_head_dim(cfg):
        return right({k: v for k, v in cfg.items() if k != "head_dim"})

    def returns_float_billions(cfg):
        return round(right(cfg) / 1e9, 2)

    return [forgets_untied_head, double_counts_tied_head, forgets_qkv_biases, mha_instead_of_gqa,
            forgets_norms, ignores_explicit_head_dim, returns_float_billions]


@pytest.mark.parametrize("index", range(7))
def test_param_count_rejects_wrong_answers(solution, index, capsys):
    wrong = _wrong_param_counts(solution["param_count"])[index]
    verdict = chk.check_param_count(wrong)
    assert not verdict.passed, wrong.__name__
    assert "expected" in verdict.detail


def test_param_count_diagnoses_the_usual_mistakes(solution, capsys):
    wrong = {w.__name__: w for w in _wrong_param_counts(solution["param_count"])}
    assert "tie_word_embeddings" in chk.check_param_count(wrong["forgets_untied_head"]).detail
    assert "tie_word_embeddings" in chk.check_param_count(wrong["double_counts_tied_head"]).detail
    assert "biases" in chk.check_param_count(wrong["forgets_qkv_biases"]).detail
    assert "num_key_value_heads" in chk.check_param_count(wrong["mha_instead_of_gqa"]).detail
    assert "RMSNorm" in chk.check_param_count(wrong["forgets_norms"]).detail
    assert "head_dim" in chk.check_param_count(wrong["ignores_explicit_head_dim"]).detail


# ----------------------------------------------------------------------------- KV cache

def _wrong_kv(right):
    def no_factor_two(cfg, b):
        return right(cfg, b) // 2

    def heads_not_kv_heads(cfg, b):
        if cfg.get("kv_lora_rank"):
            return right(cfg, b)
        return 2 * cfg["num_hidden_layers"] * cfg["num_attention_heads"] * _head_dim(cfg) * b

    def forgets_layers(cfg, b):
        return right(cfg, b) // cfg["num_hidden_layers"]

    def ignores_head_dim(cfg, b):
        return right({k: v for k, v in cfg.items() if k != "head_dim"}, b)

    def mla_as_gqa(cfg, b):  # treats DeepSeek like any other config
        return 2 * cfg["num_hidden_layers"] * _kv_heads(cfg) * _head_dim(cfg) * b

    def mla_forgets_rope_key(cfg, b):
        if cfg.get("kv_lora_rank"):
            return cfg["num_hidden_layers"] * cfg["kv_lora_rank"] * b
        return right(cfg, b)

    def elements_not_bytes(cfg, b):
        return right(cfg, 1)

    return [no_factor_two, heads_not_kv_heads, forgets_layers, ignores_head_dim, mla_as_gqa,
            mla_forgets_rope_key, elements_not_bytes]


@pytest.mark.parametrize("index", range(7))
def test_kv_bytes_rejects_wrong_answers(solution, index, capsys):
    wrong = _wrong_kv(solution["kv_bytes_per_token"])[index]
    verdict = chk.check_kv_bytes_per_token(wrong)
    assert not verdict.passed, wrong.__name__


def test_kv_bytes_diagnoses_the_usual_mistakes(solution, capsys):
    wrong = {w.__name__: w for w in _wrong_kv(solution["kv_bytes_per_token"])}
    assert "factor 2" in chk.check_kv_bytes_per_token(wrong["no_factor_two"]).detail
    assert "num_key_value_heads" in chk.check_kv_bytes_per_token(wrong["heads_not_kv_heads"]).detail
    assert "num_hidden_layers" in chk.check_kv_bytes_per_token(wrong["forgets_layers"]).detail
    assert "kv_lora_rank" in chk.check_kv_bytes_per_token(wrong["mla_as_gqa"]).detail


# ----------------------------------------------------------------------------- max batch

def _wrong_max_batch():
    def solve(cfg, gpu, context, dtype, kv_dtype, *, budget=None, weights=True, overhead=True, activations=True):
        budget = memory.USABLE_FRACTION * gpu.memory_bytes if budget is None else budget
        fixed = (memory.weight_bytes(cfg, dtype) if weights else 0) + (memory.overhead_bytes() if overhead else 0)
        per_sequence = memory.kv_bytes_per_token(cfg, kv_dtype) * context
        batch = max(0, int((budget - fixed) // per_sequence))
        while activations and batch > 0 and \
                fixed + batch * per_sequence + memory.activation_bytes(cfg, batch, context, dtype) > budget:
            batch -= 1
        return batch

    def ignores_weights(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        return solve(cfg, gpu, context, dtype, kv_dtype, weights=False)

    def ignores_usable_fraction(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        return solve(cfg, gpu, context, dtype, kv_dtype, budget=gpu.memory_bytes)

    def ignores_activations(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        return solve(cfg, gpu, context, dtype, kv_dtype, activations=False)

    def ignores_overhead(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        return solve(cfg, gpu, context, dtype, kv_dtype, overhead=False)

    def gigabytes_not_gibibytes(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        return solve(cfg, gpu, context, dtype, kv_dtype, budget=memory.USABLE_FRACTION * gpu.memory_gib * 1e9)

    def ignores_dtypes(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        return solve(cfg, gpu, context, "bf16", "bf16")

    def negative_when_nothing_fits(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        per_sequence = memory.kv_bytes_per_token(cfg, kv_dtype) * context
        free = memory.USABLE_FRACTION * gpu.memory_bytes - memory.weight_bytes(cfg, dtype) - memory.overhead_bytes()
        batch = int(free // per_sequence)
        while batch > 0 and memory.estimate(cfg, dtype, kv_dtype, context, batch, gpus=[])["total_bytes"] > \
                memory.USABLE_FRACTION * gpu.memory_bytes:
            batch -= 1
        return batch

    return [ignores_weights, ignores_usable_fraction, ignores_activations, ignores_overhead,
            gigabytes_not_gibibytes, ignores_dtypes, negative_when_nothing_fits]


@pytest.mark.parametrize("index", range(7))
def test_max_batch_rejects_wrong_answers(index, capsys):
    wrong = _wrong_max_batch()[index]
    verdict = chk.check_max_batch(wrong)
    assert not verdict.passed, wrong.__name__


def test_max_batch_accepts_a_search_over_the_estimate(capsys):
    def by_search(cfg, gpu, context, dtype="bf16", kv_dtype="bf16"):
        budget = memory.USABLE_FRACTION * gpu.memory_bytes
        batch = 0
        while memory.estimate(cfg, dtype, kv_dtype, context, batch + 1, gpus=[])["total_bytes"] <= budget:
            batch += 1
        return batch
    assert chk.check_max_batch(by_search).passed


# ----------------------------------------------------------------------------- measured bytes

def _wrong_measurements(solution):
    weights, kv = solution["weight_tensor_bytes"], solution["kv_tensor_bytes"]

    def state_dict_bytes(model):  # lists a tied tensor under both names
        return sum(t.numel() * t.element_size() for t in model.state_dict().values())

    def assumes_four_bytes(model):
        return sum(p.numel() * 4 for p in model.parameters())

    def includes_buffers(model):
        return weights(model) + sum(b.numel() * b.element_size() for b in model.buffers())

    def named_with_duplicates(model):
        return sum(p.numel() * p.element_size() for _, p in model.named_parameters(remove_duplicate=False))

    def keys_only(cache):
        return sum(layer.keys.numel() * layer.keys.element_size() for layer in cache.layers)

    def first_layer_only(cache):
        layer = cache.layers[0]
        return sum(t.numel() * t.element_size() for t in (layer.keys, layer.values))

    def elements_not_bytes(cache):
        return sum(t.numel() for layer in cache.layers for t in (layer.keys, layer.values))

    return ([(w, kv) for w in (state_dict_bytes, assumes_four_bytes, includes_buffers, named_with_duplicates)]
            + [(weights, k) for k in (keys_only, first_layer_only, elements_not_bytes)])


@pytest.mark.parametrize("index", range(7))
def test_measured_match_rejects_wrong_answers(solution, index, capsys):
    weight_fn, kv_fn = _wrong_measurements(solution)[index]
    verdict = chk.check_measured_match(weight_fn, kv_fn)
    assert not verdict.passed, (weight_fn.__name__, kv_fn.__name__)


def test_measured_match_diagnoses_the_usual_mistakes(solution, capsys):
    wrong = _wrong_measurements(solution)
    assert "counted twice" in chk.check_measured_match(*wrong[0]).detail
    assert "4 bytes" in chk.check_measured_match(*wrong[1]).detail
    assert "buffers" in chk.check_measured_match(*wrong[2]).detail
    assert "keys and values" in chk.check_measured_match(*wrong[4]).detail


def test_a_crashing_answer_is_a_fail_not_a_crash(capsys):
    verdict = chk.check_param_count(lambda cfg: cfg["no_such_key"])
    assert not verdict.passed and "KeyError" in verdict.detail
    assert not chk.check_kv_bytes_per_token(lambda cfg, b: None).passed
