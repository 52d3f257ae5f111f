"""Acceptance point of lab 02: for the embedded model on the CPU, the predicted weight and
KV-cache bytes equal the bytes of the tensors really held, exactly."""
import pytest
import torch

from inferlab import memory, models, profiles


@pytest.fixture(scope="module")
def embedded():
    profile = profiles.resolve("cpu")
    model, tokenizer = models.load(profile)
    return profile, model, tokenizer


def test_predicted_weight_bytes_equal_the_parameter_tensors(embedded):
    profile, model, _ = embedded
    cfg = model.config.to_dict()
    assert profile.dtype == "float32"
    assert memory.param_count(cfg) == memory.param_count("smollm2-135m-instruct") == 134_515_008
    assert memory.weight_bytes(cfg, profile.dtype) == memory.tensor_bytes(model, buffers=False) == 538_060_032
    # buffers (rotary frequency tables) are the only other tensors the model holds
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert memory.tensor_bytes(model) == 538_060_032 + buffers


@pytest.mark.parametrize("tokens", [1, 17, 200])
def test_predicted_kv_bytes_equal_the_cache_after_a_prefill(embedded, tokens):
    profile, model, tokenizer = embedded
    cfg = model.config.to_dict()
    ids = tokenizer(" memory" * tokens, return_tensors="pt").input_ids[:, :tokens]
    assert ids.shape[1] == tokens
    with torch.no_grad():
        cache = model(ids, use_cache=True, logits_to_keep=1).past_key_values
    per_token = memory.kv_bytes_per_token(cfg, profile.dtype)
    assert per_token == 46_080
    assert memory.kv_cache_bytes(cache) == per_token * tokens
