"""inferlab.quant: quantizers, perplexity, footprint and the bitsandbytes loader.

The footprint tests load the embedded model in every format the lab's table shows and
hold footprint_bytes() against the parameter and buffer bytes, in the way that is true for
each format (see test_footprint_* below).
"""
import math

import pytest
import torch
from torch import nn

from inferlab import memory, models, quant
from inferlab.checks.quantization.models import UniformModel, tiny_llama


def _randn(*shape, seed=0, std=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * std


# ============================================================================ INT8

def test_int8_per_tensor_round_trip_is_within_half_a_step():
    w = _randn(33, 47, seed=1, std=0.1)
    q, scale = quant.quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == ()
    assert int(q.abs().max()) == 127                       # the largest |w| maps to +-127
    assert torch.isclose(scale, w.abs().max() / 127)
    err = (quant.dequantize_int8(q, scale) - w).abs().max()
    assert err <= scale / 2 + 1e-7


def test_int8_per_channel_has_one_scale_per_row():
    w = _randn(5, 8, seed=2)
    w[3] *= 100                                             # a loud row must not coarsen the others
    q, scale = quant.quantize_int8(w, per_channel=True)
    assert scale.shape == (5, 1)
    assert torch.allclose(scale[:, 0], w.abs().amax(dim=1) / 127)
    assert (q.abs().amax(dim=1) == 127).all()
    per_tensor_err = quant.relative_error(w[0], quant.dequantize_int8(*quant.quantize_int8(w))[0])
    per_channel_err = quant.relative_error(w[0], quant.dequantize_int8(q, scale)[0])
    assert per_channel_err < per_tensor_err / 10


def test_int8_per_channel_needs_a_matrix():
    with pytest.raises(ValueError, match="2-D"):
        quant.quantize_int8(torch.ones(3, 4, 5), per_channel=True)


def test_int8_all_zero_and_constant_tensors_are_exact_and_finite():
    for w in (torch.zeros(4, 6), torch.full((3, 3), -0.8)):
        for per_channel in (False, True):
            q, scale = quant.quantize_int8(w, per_channel=per_channel)
            assert torch.isfinite(scale).all() and (scale > 0).all()
            assert torch.allclose(quant.dequantize_int8(q, scale), w, atol=1e-7)


def test_int8_clip_ratio_saturates():
    w = torch.linspace(-1, 1, 101)
    q, scale = quant.quantize_int8(w, clip_ratio=0.5)
    assert torch.isclose(scale, torch.tensor(0.5 / 127))
    assert int(q.max()) == 127 and int(q.min()) == -127
    assert (q[w > 0.5] == 127).all()


# ============================================================================ INT4

def test_int4_shapes_and_codes():
    w = _randn(7, 45, seed=3)
    q, scale, zero = quant.quantize_int4(w, 16)
    assert q.shape == w.shape and q.dtype == torch.uint8
    assert scale.shape == zero.shape == (7, 3)              # ceil(45 / 16) groups per row
    assert int(q.max()) <= 15 and int(zero.max()) <= 15


def test_int4_round_trip_is_within_half_a_step_per_group():
    w = _randn(6, 64, seed=4)
    q, scale, zero = quant.quantize_int4(w, 32)
    w_hat = quant.dequantize_int4(q, scale, zero, 32)
    step = scale.repeat_interleave(32, dim=1)
    assert ((w_hat - w).abs() <= step * 0.5 + 1e-6).all()


def test_int4_zero_is_exact_and_constant_or_zero_groups_reconstruct_exactly():
    w = _randn(4, 64, seed=5)
    w[0, :32] = 0.0
    w[1, 32:] = 0.37
    w[2, :32] = -2.5
    w[3, 5] = 0.0
    q, scale, zero = quant.quantize_int4(w, 32)
    w_hat = quant.dequantize_int4(q, scale, zero, 32)
    assert torch.isfinite(scale).all()
    assert (w_hat[0, :32] == 0).all() and w_hat[3, 5] == 0
    assert torch.allclose(w_hat[1, 32:], torch.full((32,), 0.37))
    assert torch.allclose(w_hat[2, :32], torch.full((32,), -2.5))


def test_int4_padding_rule_partial_group_uses_its_own_elements():
    w = _randn(3, 70, seed=6)
    q, scale, zero = quant.quantize_int4(w, 32)
    _, tail_scale, tail_zero = quant.quantize_int4(w[:, 64:], 32)   # the 6 leftover values alone
    assert torch.equal(scale[:, 2:], tail_scale) and torch.equal(zero[:, 2:], tail_zero)
    w_hat = quant.dequantize_int4(q, scale, zero, 32)
    assert w_hat.shape == w.shape


def test_int4_group_larger_than_the_row_is_per_channel_and_3d_works():
    w = _randn(5, 20, seed=7)
    _, scale, _ = quant.quantize_int4(w, 128)
    assert scale.shape == (5, 1)
    x = _randn(2, 3, 24, seed=8)
    q, s, z = quant.quantize_int4(x, 8)
    assert s.shape == (2, 3, 3) and quant.dequantize_int4(q, s, z, 8).shape == x.shape


def test_int4_smaller_groups_reconstruct_better():
    w = _randn(64, 512, seed=9, std=0.02)
    errs = [quant.relative_error(w, quant.fake_quantize(w, f"int4-g{g}")) for g in (16, 64, 256)]
    assert errs[0] < errs[1] < errs[2]


def test_int4_clip_ratio_saturates_codes():
    w = torch.linspace(-1, 1, 64)[None]
    q, scale, zero = quant.quantize_int4(w, 64, clip_ratio=0.5)
    assert int(q.min()) == 0 and int(q.max()) == 15
    assert torch.isclose(scale[0, 0], torch.tensor(1.0 / 15))


def test_q4_1_roundtrip_is_exact_on_a_q4_1_grid():
    g = torch.Generator().manual_seed(10)
    codes = torch.randint(0, 16, (4, 64), generator=g).float()
    codes[:, ::32] = 0
    codes[:, 1::32] = 15                                   # every block uses its whole range
    d = torch.rand(4, 2, generator=g).repeat_interleave(32, dim=1) * 0.01 + 0.001
    m = -torch.rand(4, 2, generator=g).repeat_interleave(32, dim=1) * 0.05
    w = m + codes * d
    assert quant.relative_error(w, quant.q4_1_roundtrip(w, 32)) < 1e-6
    assert quant.relative_error(w, quant.fake_quantize(w, "int4-g32")) > 1e-3   # integer zero point moves the grid


def test_embedded_model_weights_sit_on_a_q4_1_grid(model):
    w = model.model.layers[3].mlp.down_proj.weight
    assert quant.relative_error(w, quant.q4_1_roundtrip(w, 32)) < 1e-6


# ============================================================================ bits per weight

@pytest.mark.parametrize("args, expected", [
    ((4, 128, 16, 4), 4.15625), ((4, 64, 32), 4.5), ((8, 4096, 32), 8 + 32 / 4096), ((4, 128), 4.125),
])
def test_bits_per_weight(args, expected):
    assert math.isclose(quant.bits_per_weight(*args), expected)


# ============================================================================ formats on a model

def test_parse_format():
    assert quant.parse_format("int8-channel") == {"bits": 8, "per_channel": True, "group_size": None}
    assert quant.parse_format("int4-g64")["group_size"] == 64
    with pytest.raises(ValueError, match="unknown format"):
        quant.parse_format("int3-g64")


def test_pack_nibbles_round_trip_odd_length():
    q = torch.randint(0, 16, (3, 7), generator=torch.Generator().manual_seed(11)).to(torch.uint8)
    packed = quant.pack_nibbles(q)
    assert packed.shape == (3, 4)
    assert torch.equal(quant.unpack_nibbles(packed, 7), q)


def test_quantizable_linears_leave_the_head_out():
    m = tiny_llama(seed=1)
    names = [n for n, _ in quant.quantizable_linears(m)]
    assert "lm_head" not in names and len(names) == 2 * 7


def test_fake_quantized_restores_the_weights():
    m = tiny_llama(seed=2)
    before = {n: p.clone() for n, p in m.named_parameters()}
    with quant.fake_quantized(m, "int4-g16") as errors:
        assert all(e > 0 for e in errors.values())
        assert not torch.equal(m.model.layers[0].mlp.up_proj.weight, before["model.layers.0.mlp.up_proj.weight"])
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())


@pytest.mark.parametrize("fmt", ["int8-tensor", "int8-channel", "int4-g16", "int4-g20"])
def test_packed_model_computes_what_the_fake_quantized_one_does(fmt):
    ids = torch.randint(0, 67, (1, 12), generator=torch.Generator().manual_seed(12))
    reference = tiny_llama(seed=3)
    with torch.no_grad(), quant.fake_quantized(reference, fmt):
        expected = reference(ids).logits
    packed = quant.pack_linears(tiny_llama(seed=3), fmt)
    assert sum(isinstance(mod, quant.PackedLinear) for mod in packed.modules()) == 14
    with torch.no_grad():
        assert torch.equal(packed(ids).logits, expected)
    assert quant.footprint_bytes(packed) == memory.tensor_bytes(packed)   # codes and scales are buffers


def test_linear_bits_counts_codes_scales_zero_points_and_padding():
    m = quant.pack_linears(tiny_llama(seed=4), "int8-channel")
    linears = [mod for mod in m.modules() if isinstance(mod, quant.PackedLinear)]
    weights = sum(l.in_features * l.out_features for l in linears)
    expected = 8 * sum(l.in_features * l.out_features + 4 * l.out_features for l in linears) / weights
    assert math.isclose(quant.linear_bits(m), expected)
    m4 = quant.pack_linears(tiny_llama(seed=4), "int4-g20")   # 32- and 48-wide rows: padded last groups
    expected4 = 8 * sum(l.out_features * (-(-l.in_features // 2) + 5 * -(-l.in_features // 20)) for l in linears) / weights
    assert math.isclose(quant.linear_bits(m4), expected4)
    assert math.isclose(quant.linear_bits(tiny_llama(seed=4)), 32.0)


# ============================================================================ outliers

def test_linear_input_absmax_matches_a_manual_capture_and_removes_its_hooks():
    m = tiny_llama(seed=5)
    prompts = [torch.randint(0, 67, (n,), generator=torch.Generator().manual_seed(n)) for n in (5, 9)]
    stats = quant.linear_input_absmax(m, prompts)
    assert set(stats) == {n for n, mod in m.named_modules() if isinstance(mod, nn.Linear)}
    assert not any(mod._forward_pre_hooks for mod in m.modules())
    name = "model.layers.1.self_attn.o_proj"
    captured = torch.cat([quant.capture_linear_input(m, name, p) for p in prompts])
    assert torch.allclose(stats[name], captured.abs().amax(dim=0))


# ============================================================================ perplexity

def test_evaluation_text_is_fixed_and_long_enough(tokenizer):
    text = quant.evaluation_text()
    assert text.startswith("Objects, values and types")
    assert quant.text_fingerprint(text) == quant.text_fingerprint(quant.evaluation_text())
    ids = quant.evaluation_ids(tokenizer, 4096)
    assert ids.shape == (4096,)
    with pytest.raises(ValueError, match="fewer than"):
        quant.evaluation_ids(tokenizer, 10**7)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    ids = torch.randint(0, 41, (50,), generator=torch.Generator().manual_seed(13))
    assert math.isclose(quant.perplexity(UniformModel(41), ids, 16, 8), 41, rel_tol=1e-6)


class _Recorder(UniformModel):
    """Uniform, and records the length of every window it is shown."""

    def __init__(self, vocab):
        super().__init__(vocab)
        self.lengths = []

    def forward(self, input_ids=None, **kwargs):
        self.lengths.append(input_ids.shape[1])
        return super().forward(input_ids)


@pytest.mark.parametrize("n, window, stride, lengths", [
    (20, 8, 4, [8, 8, 8, 8]),           # windows [0,8) [4,12) [8,16) [12,20)
    (21, 8, 4, [8, 8, 8, 8, 5]),        # ... then [16,21)
    (10, 16, 8, [10]),                  # text shorter than the window: one pass
    (24, 8, 8, [8, 8, 8]),              # no overlap
])
def test_perplexity_windows(n, window, stride, lengths):
    model = _Recorder(5)
    quant.perplexity(model, torch.zeros(n, dtype=torch.long), window, stride)
    assert model.lengths == lengths


def test_perplexity_scores_each_token_once_and_sees_context():
    model = tiny_llama(seed=6)
    ids = torch.randint(0, 67, (40,), generator=torch.Generator().manual_seed(14))
    full = quant.perplexity(model, ids, 64, 32)               # one window holds everything
    with torch.no_grad():
        logits = model(ids[None]).logits[0]
    nll = torch.nn.functional.cross_entropy(logits[:-1], ids[1:])
    assert math.isclose(full, math.exp(nll.item()), rel_tol=1e-5)
    strided = quant.perplexity(model, ids, 16, 8)
    assert strided != full                                    # shorter context, different number


def test_perplexity_rejects_bad_arguments():
    with pytest.raises(ValueError):
        quant.perplexity(UniformModel(3), torch.zeros(1, dtype=torch.long), 4, 2)
    with pytest.raises(ValueError):
        quant.perplexity(UniformModel(3), torch.zeros(9, dtype=torch.long), 4, 8)


def test_decode_steps_repeat_the_same_work_from_the_same_cache(tokenizer):
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(models.prepare_embedded(), dtype=torch.float32).eval()
    calls = []
    original = m.forward

    def counting(*args, **kwargs):
        calls.append(kwargs.get("past_key_values").get_seq_length() if kwargs.get("past_key_values") is not None else None)
        return original(*args, **kwargs)
    m.forward = counting
    run = quant.decode_steps(m, tokenizer, prompt="One two three", new_tokens=3)
    prompt_len = len(tokenizer("One two three").input_ids)
    run()
    run()
    # prefill once (no cache), then per call 3 steps starting from the prompt's length again
    assert calls == [None] + [prompt_len, prompt_len + 1, prompt_len + 2] * 2


# ============================================================================ footprint of real formats

FORMATS = ["float32", "bfloat16", "bnb-int8", "bnb-nf4", "bnb-nf4-dq", "bnb-fp4", "bnb-fp4-dq"]


def _load(fmt):
    if fmt in ("float32", "bfloat16"):
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM.from_pretrained(models.prepare_embedded(), dtype=getattr(torch, fmt)).eval()
    return quant.load_bnb(str(models.prepare_embedded()), fmt)


def _unique_bytes(tensors):
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += key[1]
    return total


def _state_dict_bytes(model):
    """Bytes of the checkpoint transformers would save, corrected for the differences between a
    checkpoint and memory: minus bitsandbytes' JSON metadata blob (quant_state.bitsandbytes__nf4
    /fp4) and LLM.int8's weight_format marker, both made at save time; plus the double-
    quantization offsets, held as 0-d tensors but saved inside that JSON blob, and the
    non-persistent buffers (the rotary inv_freq tables), held but never saved."""
    sd = model.state_dict()
    kept = [t for k, t in sd.items() if ".quant_state.bitsandbytes__" not in k and not k.endswith("weight_format")]
    offsets = [p.quant_state.offset for p in model.parameters()
               if getattr(p, "quant_state", None) is not None and p.quant_state.offset is not None]
    unsaved = [b for name, b in model.named_buffers() if name not in sd]
    return _unique_bytes(kept) + _unique_bytes(offsets) + _unique_bytes(unsaved)


@pytest.fixture(scope="module", params=FORMATS)
def loaded(request):
    return request.param, _load(request.param)


def test_footprint_equals_parameter_and_buffer_bytes_plus_quantization_state(loaded):
    fmt, m = loaded
    params_and_buffers = memory.tensor_bytes(m)                  # unique storages of parameters + buffers
    parts = quant.footprint_breakdown(m)
    assert parts["parameters"] + parts["buffers"] == params_and_buffers
    if fmt in ("float32", "bfloat16"):
        # A plain model holds nothing else: footprint == parameter + buffer bytes, exactly.
        assert parts["quantization state"] == 0
        assert quant.footprint_bytes(m) == params_and_buffers == m.get_memory_footprint()
        bytes_per = {"float32": 4, "bfloat16": 2}[fmt]
        buffers = sum(b.numel() * b.element_size() for b in m.buffers())     # rotary inv_freq tables
        assert quant.footprint_bytes(m) == bytes_per * sum(p.numel() for p in m.parameters()) + buffers
    elif fmt == "bnb-int8":
        # LLM.int8 keeps one float32 scale per output row (SCB) as an attribute of the weight,
        # not as a parameter or buffer: footprint == parameter + buffer bytes + SCB bytes.
        scb = sum(4 * mod.out_features for mod in m.modules() if type(mod).__name__ == "Linear8bitLt")
        assert parts["quantization state"] == scb > 0
        assert quant.footprint_bytes(m) == params_and_buffers + scb
    else:
        # 4-bit: absmax, value tables (and nested statistics) live in weight.quant_state:
        # footprint == parameter + buffer bytes + the bytes of those tensors.
        qs = [t for p in m.parameters() if getattr(p, "quant_state", None) is not None
              for t in quant.cost._quant_state_tensors(p.quant_state)]
        assert parts["quantization state"] == _unique_bytes(qs) > 0
        assert quant.footprint_bytes(m) == params_and_buffers + _unique_bytes(qs)
        assert all(type(mod).__name__ == "Linear4bit" for _, mod in quant.quantizable_linears(m))
    # Independent of our walk over the modules: what a checkpoint of this model holds.
    assert quant.footprint_bytes(m) == _state_dict_bytes(m)
    if fmt.startswith("bnb"):
        assert m.get_memory_footprint() == params_and_buffers < quant.footprint_bytes(m)


def test_quantized_formats_are_smaller_and_double_quant_smaller_still():
    sizes = {fmt: quant.footprint_bytes(_load(fmt)) for fmt in ("float32", "bnb-int8", "bnb-nf4", "bnb-nf4-dq")}
    assert sizes["float32"] > sizes["bnb-int8"] > sizes["bnb-nf4"] > sizes["bnb-nf4-dq"]


def test_footprint_stays_consistent_after_a_forward_pass(loaded):
    fmt, m = loaded
    with torch.no_grad():
        m(torch.tensor([[1, 2, 3, 4]]))
    parts = quant.footprint_breakdown(m)
    assert quant.footprint_bytes(m) == memory.tensor_bytes(m) + parts["quantization state"]
    if fmt == "bnb-int8":
        # After the first call LLM.int8 moves CB/SCB from the weight to the module's state, where
        # it also keeps idx, the indices of the outlier columns it found in the last input.
        int8 = [mod for mod in m.modules() if type(mod).__name__ == "Linear8bitLt"]
        scb = sum(4 * mod.out_features for mod in int8)
        idx = sum(mod.state.idx.numel() * mod.state.idx.element_size() for mod in int8 if mod.state.idx is not None)
        assert parts["quantization state"] == scb + idx


def test_bnb_linear_bits_match_the_format():
    m = quant.load_bnb(str(models.prepare_embedded()), "bnb-nf4")
    # 4 bits, one float32 absmax per 64 weights, a 16-entry float32 table per layer
    linears = quant.quantizable_linears(m)
    weights = sum(l.in_features * l.out_features for _, l in linears)
    expected = 4 + 32 / 64 + 8 * 64 * len(linears) / weights
    assert math.isclose(quant.linear_bits(m), expected, rel_tol=1e-9)


def test_load_bnb_rejects_unknown_formats():
    with pytest.raises(ValueError, match="unknown bitsandbytes format"):
        quant.load_bnb("unused", "bnb-int3")
