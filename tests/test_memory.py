"""inferlab.memory: exact parameter counts, KV-cache sizes, the estimate and the vram CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inferlab import hardware, memory

REPO_ROOT = Path(__file__).resolve().parents[1]

REQUIRED_CONFIGS = [
    "llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b", "mistral-7b", "mixtral-8x7b",
    "gemma-2-9b", "deepseek-v2-lite", "smollm2-135m-instruct",
]

# Element totals of the published safetensors checkpoints.
PINNED_PARAMS = {
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "qwen2.5-7b": 7_615_616_512,
    "mistral-7b": 7_241_732_096,          # v0.1, vocab 32000
    "mixtral-8x7b": 46_702_792_704,
    "gemma-2-9b": 9_241_705_984,
    "deepseek-v2-lite": 15_706_484_224,
    "smollm2-135m-instruct": 134_515_008,
    "llama-3.2-1b": 1_235_814_400,
    "qwen2.5-0.5b": 494_032_768,
    "deepseek-r1": 671_026_419_200,       # main model, no MTP layer; DeepSeek-V3 is the same
}


def llama_like(**overrides):
    """A small Llama-shaped config; tests override the field they are about."""
    cfg = {
        "model_type": "llama", "hidden_size": 1024, "num_hidden_layers": 4,
        "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 2816,
        "vocab_size": 1000, "tie_word_embeddings": False,
    }
    cfg.update(overrides)
    return cfg


# ----------------------------------------------------------------------------- shipped configs

def test_required_configs_are_shipped():
    shipped = memory.shipped_configs()
    for name in REQUIRED_CONFIGS:
        assert name in shipped, name
        assert shipped[name].is_file()


def test_shipped_configs_are_pure_json_objects():
    for name, path in memory.shipped_configs().items():
        cfg = json.loads(path.read_text())
        assert isinstance(cfg, dict)
        assert not any(key.startswith("_source") for key in cfg), name
        memory.shape_from_config(cfg)  # every shipped config is supported


def test_smollm2_config_matches_the_brief():
    cfg = memory.load_config("smollm2-135m-instruct")
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    expected = {
        "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
        "tie_word_embeddings": True, "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": 100000,
    }
    assert {k: cfg[k] for k in expected} == expected


# ----------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("name,expected", PINNED_PARAMS.items())
def test_param_count_matches_published_total(name, expected):
    assert memory.param_count(name) == expected


def test_mistral_v03_vocab_gives_its_published_total():
    cfg = memory.load_config("mistral-7b") | {"vocab_size": 32768}
    assert memory.param_count(cfg) == 7_248_023_552


@pytest.mark.parametrize("cfg,total,active", [
    # architecture fields of the published Qwen3 configs
    (dict(model_type="qwen3", hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
          num_key_value_heads=8, head_dim=128, intermediate_size=12288, vocab_size=151936,
          tie_word_embeddings=False), 8_190_735_360, 8_190_735_360),
    (dict(model_type="qwen3_moe", hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
          num_key_value_heads=4, head_dim=128, intermediate_size=6144, moe_intermediate_size=768,
          num_experts=128, num_experts_per_tok=8, vocab_size=151936, tie_word_embeddings=False,
          decoder_sparse_step=1, mlp_only_layers=[]), 30_532_122_624, 3_353_032_704),
    # Phi-3-mini: fused qkv_proj / gate_up_proj count the same as separate ones
    (dict(model_type="phi3", hidden_size=3072, num_hidden_layers=32, num_attention_heads=32,
          num_key_value_heads=32, intermediate_size=8192, vocab_size=32064,
          tie_word_embeddings=False), 3_821_079_552, 3_821_079_552),
])
def test_other_supported_families(cfg, total, active):
    assert memory.param_count(cfg) == total
    assert memory.active_param_count(cfg) == active


def test_mixtral_active_params():
    assert memory.active_param_count("mixtral-8x7b") == 12_879_925_248


@pytest.mark.parametrize("name", ["mixtral-8x7b", "deepseek-v2-lite", "deepseek-r1"])
def test_moe_active_is_less_than_total(name):
    assert memory.active_param_count(name) < memory.param_count(name)


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-7b", "gemma-2-9b", "smollm2-135m-instruct"])
def test_dense_active_equals_total(name):
    assert memory.active_param_count(name) == memory.param_count(name)


def test_deepseek_v2_lite_layer_structure():
    shape = memory.shape_from_config("deepseek-v2-lite")
    assert shape.attention == "mla"
    assert shape.q_lora_rank is None
    assert (shape.n_dense_layers, shape.n_moe_layers) == (1, 26)
    assert shape.shared_intermediate == 2 * 1408


def test_tied_embeddings_drop_one_vocab_matrix():
    untied = memory.param_count(llama_like(tie_word_embeddings=False))
    tied = memory.param_count(llama_like(tie_word_embeddings=True))
    assert untied - tied == 1000 * 1024


def test_gemma2_has_four_norms_per_layer():
    breakdown = memory.param_breakdown("gemma-2-9b")
    assert breakdown["norms"] == 42 * 4 * 3584 + 3584
    assert breakdown["lm_head"] == 0  # Gemma ties by default


def test_qwen2_has_qkv_biases_only():
    shape = memory.shape_from_config("qwen2.5-7b")
    assert shape.qkv_bias and not shape.attention_bias
    as_llama = memory.load_config("qwen2.5-7b") | {"model_type": "llama"}
    bias = 3584 + 2 * 4 * 128  # q bias + k and v biases
    assert memory.param_count("qwen2.5-7b") - memory.param_count(as_llama) == 28 * bias


def test_param_breakdown_sums_to_total():
    assert sum(memory.param_breakdown("mixtral-8x7b").values()) == memory.param_count("mixtral-8x7b")


def test_head_dim_comes_from_config_when_present():
    assert memory.shape_from_config("gemma-2-9b").head_dim == 256  # not 3584 / 16
    assert memory.shape_from_config("llama-3.1-8b").head_dim == 4096 // 32


# ----------------------------------------------------------------------------- KV cache

@pytest.mark.parametrize("name,kv_dtype,expected", [
    ("llama-3.1-8b", "bf16", 131_072),
    ("llama-3.1-70b", "bf16", 327_680),
    ("smollm2-135m-instruct", "fp32", 2 * 30 * 3 * 64 * 4),
    ("deepseek-v2-lite", "bf16", (512 + 64) * 27 * 2),
    ("llama-3.1-8b", "fp8", 65_536),
])
def test_kv_bytes_per_token_pins(name, kv_dtype, expected):
    assert memory.kv_bytes_per_token(name, kv_dtype) == expected


def test_attention_kinds_and_their_kv_sizes():
    mha = llama_like(num_key_value_heads=16)
    gqa = llama_like(num_key_value_heads=4)
    mqa = llama_like(num_key_value_heads=1)
    kinds = [memory.shape_from_config(c).attention for c in (mha, gqa, mqa)]
    assert kinds == ["mha", "gqa", "mqa"]
    head_dim, layers = 1024 // 16, 4
    assert memory.kv_bytes_per_token(mha) == 2 * layers * 16 * head_dim * 2
    assert memory.kv_bytes_per_token(gqa) == 2 * layers * 4 * head_dim * 2
    assert memory.kv_bytes_per_token(mqa) == 2 * layers * 1 * head_dim * 2
    assert memory.shape_from_config("deepseek-v2-lite").attention == "mla"


def test_mla_caches_far_less_than_its_heads_would():
    shape = memory.shape_from_config("deepseek-v2-lite")
    as_mha = 2 * shape.layers * shape.heads * (shape.qk_nope_head_dim + shape.qk_rope_head_dim) * 2
    assert memory.kv_bytes_per_token(shape) * 10 < as_mha


# ----------------------------------------------------------------------------- bytes and estimate

def test_dtype_table():
    assert memory.DTYPE_BYTES["fp32"] == memory.DTYPE_BYTES["float32"] == 4
    assert memory.DTYPE_BYTES["bf16"] == memory.DTYPE_BYTES["bfloat16"] == 2
    assert memory.DTYPE_BYTES["fp16"] == memory.DTYPE_BYTES["float16"] == 2
    assert memory.DTYPE_BYTES["fp8"] == memory.DTYPE_BYTES["int8"] == 1
    assert memory.DTYPE_BYTES["int4"] == memory.DTYPE_BYTES["nf4"] == 0.5
    with pytest.raises(ValueError, match="unknown dtype"):
        memory.weight_bytes("llama-3.1-8b", "fp12")


def test_weight_bytes_scale_with_dtype():
    params = memory.param_count("llama-3.1-8b")
    assert memory.weight_bytes("llama-3.1-8b", "bf16") == 2 * params
    assert memory.weight_bytes("llama-3.1-8b", "int4") == params // 2


def test_activation_bytes_formula():
    # tokens * (2*hidden + 3*intermediate) * bytes + batch * vocab * 4 (step below the cap)
    expected = 2 * 100 * (2 * 4096 + 3 * 14336) * 2 + 2 * 128256 * 4
    assert memory.activation_bytes("llama-3.1-8b", batch=2, context=100) == expected


def test_activation_bytes_of_one_chunked_step():
    # 8 x 4096 tokens are served in steps of at most 8192 tokens (vLLM's max_num_batched_tokens)
    assert memory.DEFAULT_MAX_BATCHED_TOKENS == 8192
    per_token = (2 * 4096 + 3 * 14336) * 2
    step = 8192 * per_token + 8 * 128256 * 4
    assert memory.activation_bytes("llama-3.1-8b", batch=8, context=4096) == step
    assert memory.activation_bytes("llama-3.1-8b", 8, 4096, max_batched_tokens=2048) == 2048 * per_token + 8 * 128256 * 4
    # None: the whole batch in one pass, the model's earlier behaviour
    assert memory.activation_bytes("llama-3.1-8b", 8, 4096, max_batched_tokens=None) == 32768 * per_token + 8 * 128256 * 4
    # once a step is full, only the logits (one row per sequence, at most one per token) grow
    assert memory.activation_bytes("llama-3.1-8b", 8, 131072) == step
    assert memory.activation_bytes("llama-3.1-8b", 10_000, 4096) == 8192 * per_token + 8192 * 128256 * 4
    with pytest.raises(ValueError, match="max_batched_tokens"):
        memory.activation_bytes("llama-3.1-8b", 1, 10, max_batched_tokens=0)


def test_overhead_is_one_gib():
    assert memory.overhead_bytes() == 2**30


ESTIMATE_KEYS = {
    "params", "active_params", "weight_bytes", "kv_bytes_per_token", "kv_bytes",
    "activation_bytes", "overhead_bytes", "total_bytes", "fits", "model_type",
    "attention", "dtype", "kv_dtype", "context", "batch",
}


def test_estimate_keys_and_arithmetic():
    est = memory.estimate("llama-3.1-8b", context=4096, batch=8)
    assert ESTIMATE_KEYS <= set(est)
    assert est["kv_bytes"] == 131_072 * 4096 * 8
    assert est["max_batched_tokens"] == memory.DEFAULT_MAX_BATCHED_TOKENS
    assert est["activation_bytes"] == memory.activation_bytes("llama-3.1-8b", 8, 4096)
    parts = ("weight_bytes", "kv_bytes", "activation_bytes", "overhead_bytes")
    assert est["total_bytes"] == sum(est[k] for k in parts)
    assert set(est["fits"]) == set(hardware.CATALOG)
    json.dumps(est)  # serialisable as is


def test_fits_is_monotonic_in_gpu_memory():
    for name in ["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "deepseek-r1"]:
        fits = memory.estimate(name, context=8192, batch=4)["fits"]
        by_memory = sorted(hardware.CATALOG.values(), key=lambda g: g.memory_bytes)
        counts = [fits[g.name] if fits[g.name] is not None else float("inf") for g in by_memory]
        assert counts == sorted(counts, reverse=True), (name, counts)


def test_fits_counts():
    est = memory.estimate("llama-3.1-70b", dtype="bf16", context=4096, batch=1)
    assert est["fits"]["H100"] == 2
    assert est["fits"]["T4"] is None  # ~141 GB of weights need more than eight 16 GiB cards
    small = memory.estimate("smollm2-135m-instruct", gpus=["t4"])
    assert small["fits"] == {"T4": 1}


def test_max_batch_context_is_the_largest_fitting_batch():
    gpu = hardware.get_gpu("H100")
    budget = gpu.memory_bytes * memory.USABLE_FRACTION
    result = memory.max_batch_context("llama-3.1-8b", "H100", "bf16", "bf16", contexts=(4096, 32768))
    for context, batch in result.items():
        assert batch > 0
        assert memory.estimate("llama-3.1-8b", context=context, batch=batch, gpus=[])["total_bytes"] <= budget
        assert memory.estimate("llama-3.1-8b", context=context, batch=batch + 1, gpus=[])["total_bytes"] > budget
    assert result[4096] > result[32768]


def test_max_batch_context_with_chunked_prefill_and_in_one_pass():
    contexts = (4096, 32768)
    chunked = memory.max_batch_context("llama-3.1-8b", "H100", contexts=contexts)
    one_pass = memory.max_batch_context("llama-3.1-8b", "H100", contexts=contexts, max_batched_tokens=None)
    # one pass: activations grow with batch*context (the 62 of the chapter); chunked: one step's worth
    assert one_pass == {4096: 62, 32768: 7}
    assert chunked == {4096: 110, 32768: 13}
    budget = hardware.get_gpu("H100").memory_bytes * memory.USABLE_FRACTION
    for context, batch in chunked.items():
        fits = memory.estimate("llama-3.1-8b", context=context, batch=batch, gpus=[])
        over = memory.estimate("llama-3.1-8b", context=context, batch=batch + 1, gpus=[])
        assert fits["total_bytes"] <= budget < over["total_bytes"]


def test_max_batch_context_zero_when_nothing_fits():
    assert memory.max_batch_context("llama-3.1-70b", "T4", "bf16", "bf16", contexts=(2048,)) == {2048: 0}
    two = memory.max_batch_context("llama-3.1-70b", "H100", "bf16", "bf16", contexts=(2048,), count=2)
    assert two[2048] > 0


def test_format_report_says_its_units():
    report = memory.format_report(memory.estimate("llama-3.1-8b"))
    assert "GiB" in report and "GB" in report and "H100" in report
    assert "one step of <= 8,192 tokens" in report
    one_pass = memory.format_report(memory.estimate("llama-3.1-8b", max_batched_tokens=None))
    assert "whole batch in one pass" in one_pass


# ----------------------------------------------------------------------------- loading and errors

def test_load_config_from_file_dir_and_name(tmp_path):
    src = memory.shipped_configs()["qwen2.5-7b"]
    (tmp_path / "config.json").write_text(src.read_text())
    from_dir = memory.load_config(tmp_path)
    from_file = memory.load_config(str(tmp_path / "config.json"))
    from_name = memory.load_config("qwen2.5-7b")
    assert from_dir == from_file == from_name


def test_load_config_uses_text_config():
    cfg = {"model_type": "llava", "tie_word_embeddings": True,
           "text_config": llama_like(tie_word_embeddings=False),
           "vision_config": {"hidden_size": 1}}
    assert memory.shape_from_config(cfg).model_type == "llama"
    assert memory.load_config(cfg)["tie_word_embeddings"] is False


@pytest.mark.parametrize("bad", ["/no/such/config.json", "not-a-model", 42])
def test_bad_config_is_a_one_line_error(bad):
    with pytest.raises(ValueError) as info:
        memory.load_config(bad)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot read config")
    assert "give a config.json or a directory holding one" in message


def test_bad_json_and_empty_dir(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    for bad in (tmp_path / "broken.json", tmp_path):
        with pytest.raises(ValueError, match="cannot read config") as info:
            memory.load_config(bad)
        assert "\n" not in str(info.value)


def test_unsupported_model_type():
    with pytest.raises(ValueError) as info:
        memory.shape_from_config({"model_type": "bert", "hidden_size": 768})
    message = str(info.value)
    assert message.startswith("unsupported config: model_type=bert; supported: ")
    assert "llama" in message and "\n" not in message


def test_missing_field_is_named():
    with pytest.raises(ValueError, match="hidden_size"):
        memory.param_count({"model_type": "llama", "num_hidden_layers": 2})


# ----------------------------------------------------------------------------- CLI

def _vram_parser():
    from inferlab.cli import build_parser
    return build_parser()


def test_cli_json_in_process(capsys):
    args = _vram_parser().parse_args(
        ["vram", "--config", "llama-3.1-8b", "--context", "4096", "--batch", "8", "--json"])
    assert args.func(args) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["params"] == 8_030_261_248
    assert est["kv_bytes"] == 131_072 * 4096 * 8


def test_cli_max_batched_tokens(capsys):
    parser = _vram_parser()
    for flag, step in [([], 8192), (["--max-batched-tokens", "2048"], 2048), (["--max-batched-tokens", "0"], None)]:
        args = parser.parse_args(["vram", "--config", "llama-3.1-8b", "--batch", "8", "--json", *flag])
        assert args.func(args) == 0
        est = json.loads(capsys.readouterr().out)
        assert est["max_batched_tokens"] == step
        assert est["activation_bytes"] == memory.activation_bytes("llama-3.1-8b", 8, 4096, max_batched_tokens=step)


def test_cli_table_accepts_a_directory(tmp_path, capsys):
    (tmp_path / "config.json").write_text(memory.shipped_configs()["mixtral-8x7b"].read_text())
    args = _vram_parser().parse_args(["vram", "--config", str(tmp_path), "--gpus", "h100,a100-80g"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "46,702,792,704" in out and "H100" in out and "A100-80GB" in out


def test_cli_bad_config_in_process(capsys):
    from inferlab.cli import main
    assert main(["vram", "--config", "/no/such/dir"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("inferlab vram: error: cannot read config")
    assert err.count("\n") == 1


def _run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "inferlab", "vram", *argv],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)


def test_cli_subprocess_json():
    result = _run_cli("--config", "llama-3.1-8b", "--dtype", "bf16", "--kv-dtype", "bf16",
                      "--context", "4096", "--batch", "8", "--json")
    assert result.returncode == 0, result.stderr
    est = json.loads(result.stdout)
    assert est["params"] == 8_030_261_248
    assert ESTIMATE_KEYS <= set(est)


def test_cli_subprocess_bad_config():
    result = _run_cli("--config", "/no/such/config.json")
    assert result.returncode == 2
    assert result.stderr.startswith("inferlab vram: error: ")
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


# ----------------------------------------------------------------------------- measuring tensors

def test_tensor_bytes_counts_a_shared_tensor_once():
    torch = pytest.importorskip("torch")
    emb = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied
    model = torch.nn.ModuleDict({"emb": emb, "head": head}).to(torch.bfloat16)
    model.register_buffer("table", torch.zeros(3, dtype=torch.float32), persistent=False)
    assert memory.tensor_bytes(model, buffers=False) == 10 * 4 * 2
    assert memory.tensor_bytes(model) == 10 * 4 * 2 + 3 * 4


def test_kv_cache_bytes_of_a_dynamic_cache_and_of_legacy_tuples():
    torch = pytest.importorskip("torch")
    cache_utils = pytest.importorskip("transformers.cache_utils")
    cache = cache_utils.DynamicCache()
    for layer in range(3):
        k = torch.zeros(1, 2, 5, 8, dtype=torch.float16)
        cache.update(k, k.clone(), layer)
    assert memory.kv_cache_bytes(cache) == 3 * 2 * (2 * 5 * 8) * 2
    legacy = [(torch.zeros(1, 2, 5, 8), torch.zeros(1, 2, 5, 8)) for _ in range(2)]
    assert memory.kv_cache_bytes(legacy) == 2 * 2 * 80 * 4


def test_measure_gpu_peak_says_it_needs_cuda():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        run = memory.measure_gpu_peak(lambda: torch.ones(1024, device="cuda").sum().item())
        assert run["peak_bytes"] >= run["before_bytes"] and run["result"] == 1024
    else:
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            memory.measure_gpu_peak(lambda: None)
