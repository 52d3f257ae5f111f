"""Graded checks of lab 03, quantization.

Each check calls the learner's function on inputs the notebook never shows -- seeded random
tensors of odd shapes, all-zero and constant rows and groups, an outlier, a clipped range,
a tiny randomly initialised Llama and a model that predicts a uniform distribution -- and
compares the result with the reference in :mod:`inferlab.quant`. When an answer is wrong the
message names the case and, where it can tell, the usual mistake behind it.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from inferlab import quant
from inferlab.checks import CheckFailed, as_tensor, expect, graded


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int, std: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed)) * std


def _tensor(x, what: str) -> torch.Tensor:
    return as_tensor(x, what).detach().cpu()


def _finite(x: torch.Tensor, what: str, case: str) -> None:
    if not torch.isfinite(x.float()).all():
        raise CheckFailed(f"{case}: {what} holds NaN or inf -- an all-zero tensor, row or group has "
                          "max |w| = 0; give it a positive scale (e.g. 1) instead of dividing by 0")
    if what == "the scale" and (x.float() == 0).any():
        raise CheckFailed(f"{case}: a scale is 0 (an all-zero tensor, row or group), so w / scale gives NaN "
                          "codes; give it a positive scale (e.g. 1) instead")


def _same_codes(got: torch.Tensor, expected: torch.Tensor, case: str, lo: int, hi: int) -> None:
    """Codes must match the reference exactly (compared as numbers, any integer dtype)."""
    if got.shape != expected.shape:
        raise CheckFailed(f"{case}: q has shape {tuple(got.shape)}, expected {tuple(expected.shape)} "
                          "(one code per weight)")
    g = got.double()
    if not torch.isfinite(g).all():
        raise CheckFailed(f"{case}: q holds NaN or inf -- an all-zero row or group needs a positive scale")
    if (g != g.round()).any():
        raise CheckFailed(f"{case}: q holds non-integer values; round to the nearest integer")
    if g.min() < lo or g.max() > hi:
        raise CheckFailed(f"{case}: q ranges over [{g.min():.0f}, {g.max():.0f}], outside [{lo}, {hi}]: "
                          "clamp the codes (values beyond a clipped range must saturate)")
    wrong = (g != expected.double())
    if wrong.any():
        share = wrong.double().mean().item()
        raise CheckFailed(f"{case}: {int(wrong.sum())} of {wrong.numel()} codes ({share:.1%}) differ from "
                          "the reference" + _code_diagnosis(g, expected.double()))


def _code_diagnosis(got: torch.Tensor, expected: torch.Tensor) -> str:
    diff = got - expected
    if (diff <= 0).all() and (diff < 0).any():
        return "; every wrong code is one below: round to nearest (torch.round), do not floor or truncate"
    if (diff.abs() <= 1).all():
        return "; they are off by one: check the scale and the rounding"
    return ""


def _close(got, expected, what: str, case: str, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    got, expected = _tensor(got, what).double(), expected.double()
    if got.numel() != expected.numel():
        raise CheckFailed(f"{case}: {what} has {got.numel()} values, expected {expected.numel()} "
                          f"(shape {tuple(expected.shape)})")
    got = got.reshape(expected.shape)
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        worst = (got - expected).abs().max().item()
        raise CheckFailed(f"{case}: {what} differs from the reference (max abs difference {worst:.3g})")


# ============================================================================ INT8

def _int8_cases(per_channel: bool) -> list[tuple[str, torch.Tensor, float]]:
    if not per_channel:
        spiky = _randn(23, 31, seed=11, std=0.02)
        spiky[4, 17] = 0.9                                  # one outlier sets the scale
        return [
            ("a random (37, 53) tensor", _randn(37, 53, seed=1, std=0.05), 1.0),
            ("a (23, 31) tensor with one outlier", spiky, 1.0),
            ("a 1-D tensor of 11 values", _randn(11, seed=3), 1.0),
            ("a (2, 3, 5) tensor", _randn(2, 3, 5, seed=4, std=3.0), 1.0),
            ("a constant (3, 4) tensor of -0.8", torch.full((3, 4), -0.8), 1.0),
            ("an all-zero (5, 7) tensor", torch.zeros(5, 7), 1.0),
            ("a (19, 13) tensor with clip_ratio=0.5", _randn(19, 13, seed=5), 0.5),
        ]
    rows = _randn(6, 40, seed=21)
    rows[1] = 0.0
    rows[3] = 0.25
    rows[4] *= 40.0                                         # one row much larger than the others
    return [
        ("a random (13, 29) weight", _randn(13, 29, seed=22, std=0.05), 1.0),
        ("a (6, 40) weight with an all-zero row, a constant row and one large row", rows, 1.0),
        ("a (1, 40) weight (one output channel)", _randn(1, 40, seed=23), 1.0),
        ("a (40, 1) weight (one input feature)", _randn(40, 1, seed=24), 1.0),
        ("a (17, 9) weight with clip_ratio=0.6", _randn(17, 9, seed=25), 0.6),
    ]


def _int8_scale_diagnosis(w: torch.Tensor, scale: torch.Tensor, expected: torch.Tensor, per_channel: bool) -> str:
    s = scale.double().reshape(-1)
    e = expected.double().reshape(-1)
    if s.numel() == e.numel() and torch.allclose(s * 128, e * 127, rtol=1e-5):
        return "; your scale is max|w| / 128: symmetric INT8 uses -127..127, so divide by 127"
    if per_channel and w.dim() == 2:
        per_column = w.abs().amax(dim=0).double() / 127
        if s.numel() == per_column.numel() and torch.allclose(s, per_column, rtol=1e-5):
            return ("; you took one scale per column (input channel, amax over dim 0): an nn.Linear weight is "
                    "(out_features, in_features), so an output channel is a row (amax over dim 1)")
    unclipped = quant.quantize_int8(w, per_channel=per_channel)[1].double().reshape(-1)
    if s.numel() == e.numel() and not torch.allclose(unclipped, e) and torch.allclose(s, unclipped, rtol=1e-5):
        return "; did you ignore clip_ratio? the scale is clip_ratio * max|w| / 127"
    return ""


def _check_int8(quantize_int8, dequantize_int8, per_channel: bool) -> str:
    for case, w, clip in _int8_cases(per_channel):
        kwargs = {"per_channel": per_channel} if clip == 1.0 else {"per_channel": per_channel, "clip_ratio": clip}
        ref_q, ref_scale = quant.quantize_int8(w, **kwargs)
        out = quantize_int8(w.clone(), **kwargs)
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               f"{case}: quantize_int8 must return (q, scale), got {type(out).__name__}")
        q, scale = _tensor(out[0], "q"), _tensor(out[1], "scale")
        _finite(scale, "the scale", case)
        if scale.numel() != ref_scale.numel():
            raise CheckFailed(f"{case}: {scale.numel()} scale(s), expected {ref_scale.numel()} "
                              + ("(one per output channel = per row)" if per_channel else "(one for the whole tensor)")
                              + _int8_scale_diagnosis(w, scale, ref_scale, per_channel))
        if not torch.allclose(scale.double().reshape(-1), ref_scale.double().reshape(-1), rtol=1e-5, atol=0):
            raise CheckFailed(f"{case}: the scale differs from clip_ratio * max|w| / 127"
                              + _int8_scale_diagnosis(w, scale, ref_scale, per_channel))
        _same_codes(q, ref_q, case, -127, 127)
        _close(dequantize_int8(ref_q.clone(), ref_scale.clone()), quant.dequantize_int8(ref_q, ref_scale),
               "dequantize_int8(q, scale)", case)
    kind = "per output channel" if per_channel else "per tensor"
    return (f"codes and scales {kind} match the reference on {len(_int8_cases(per_channel))} unseen tensors "
            "(odd shapes, all-zero and constant, clipped)")


@graded(hint="scale = clip_ratio * max|w| / 127 (a positive value such as 1 when max|w| is 0); "
             "q = clamp(round(w / scale), -127, 127) as int8; dequantize: q * scale")
def check_int8_absmax(quantize_int8, dequantize_int8):
    """Per-tensor symmetric INT8: quantize_int8(w, per_channel=False, clip_ratio=1.0) -> (q, scale)."""
    return _check_int8(quantize_int8, dequantize_int8, per_channel=False)


@graded(hint="per_channel=True: one scale per output channel, i.e. per ROW of the (out, in) weight: "
             "w.abs().amax(dim=1, keepdim=True) * clip_ratio / 127, shape (out, 1)")
def check_int8_per_channel(quantize_int8, dequantize_int8):
    """Per-output-channel symmetric INT8 on 2-D weights."""
    return _check_int8(quantize_int8, dequantize_int8, per_channel=True)


# ============================================================================ INT4

def _int4_cases() -> list[tuple[str, torch.Tensor, int, float]]:
    special = _randn(4, 64, seed=31, std=0.1)
    special[0, :32] = 0.0                                   # an all-zero group
    special[1, 32:] = 0.37                                  # a constant positive group
    special[2, :32] = -2.5                                  # a constant negative group
    special[3, :32] = special[3, :32].abs() + 0.5           # a group of only positive values
    return [
        ("a random (13, 70) weight, group 16 (70 is not a multiple of 16)", _randn(13, 70, seed=32, std=0.05), 16, 1.0),
        ("a (4, 64) weight with an all-zero, a constant 0.37, a constant -2.5 and an all-positive group, group 32",
         special, 32, 1.0),
        ("a (3, 5, 40) tensor, group 8", _randn(3, 5, 40, seed=33), 8, 1.0),
        ("a (1, 7) weight, group 128 (one short group)", _randn(1, 7, seed=34), 128, 1.0),
        ("a (9, 48) weight, group 48 (one group per row)", _randn(9, 48, seed=35), 48, 1.0),
        ("a (6, 96) weight with clip_ratio=0.6, group 32", _randn(6, 96, seed=36), 32, 0.6),
    ]


def _int4_diagnosis(w, group_size, clip, scale, zero) -> str:
    s = scale.double().reshape(-1)
    hints = []
    for g in (group_size - 1, group_size + 1):
        if g >= 1:
            _, rs, _ = quant.quantize_int4(w, g, clip)
            if rs.numel() == s.numel() and torch.allclose(rs.double().reshape(-1), s, rtol=1e-5):
                hints.append(f"your groups hold {g} weights, not {group_size} (group size off by one)")
    grouped, _ = quant.formats._grouped(w.float(), group_size)
    lo, hi = grouped.amin(-1).double() * clip, grouped.amax(-1).double() * clip
    no_zero = ((hi - lo) / 15).reshape(-1)
    if no_zero.numel() == s.numel() and torch.allclose(s, no_zero, rtol=1e-5) and not torch.allclose(
            s, quant.quantize_int4(w, group_size, clip)[1].double().reshape(-1), rtol=1e-5):
        hints.append("the range must include 0: lo = min(min(group), 0), hi = max(max(group), 0)")
    ref_s = quant.quantize_int4(w, group_size, clip)[1].double().reshape(-1)
    if ref_s.numel() == s.numel() and torch.allclose(s * 16, ref_s * 15, rtol=1e-5):
        hints.append("codes 0..15 are 15 steps apart: scale = (hi - lo) / 15, not / 16")
    if zero is not None and zero.numel() == s.numel() and (zero.double() == 0).all():
        hints.append("the zero point is 0 everywhere: z = round(-lo / scale) shifts the codes so that lo maps to 0")
    return ("; " + "; ".join(hints)) if hints else ""


@graded(hint="per group of group_size weights along the last dim (pad the last group with copies of the row's "
             "last value): lo = min(min, 0), hi = max(max, 0) (times clip_ratio); s = (hi - lo) / 15 (1 if 0); "
             "z = clamp(round(-lo / s), 0, 15); q = clamp(round(w / s) + z, 0, 15); dequantize: (q - z) * s")
def check_int4_groupwise(quantize_int4, dequantize_int4):
    """quantize_int4(w, group_size, clip_ratio=1.0) -> (q, scale, zero); dequantize_int4(q, scale, zero, group_size)."""
    cases = _int4_cases()
    for case, w, g, clip in cases:
        kwargs = {} if clip == 1.0 else {"clip_ratio": clip}
        ref_q, ref_s, ref_z = quant.quantize_int4(w, g, **kwargs)
        out = quantize_int4(w.clone(), g, **kwargs)
        expect(isinstance(out, (tuple, list)) and len(out) == 3,
               f"{case}: quantize_int4 must return (q, scale, zero), got {type(out).__name__}")
        q, s, z = (_tensor(x, name) for x, name in zip(out, ("q", "scale", "zero")))
        _finite(s, "the scale", case)
        if s.numel() != ref_s.numel():
            raise CheckFailed(f"{case}: {s.numel()} scales, expected {ref_s.numel()} "
                              f"(shape {tuple(ref_s.shape)}: one per group, ceil(K / group_size) per row)"
                              + _int4_diagnosis(w, g, clip, s, z))
        if not torch.allclose(s.double().reshape(-1), ref_s.double().reshape(-1), rtol=1e-5, atol=0):
            raise CheckFailed(f"{case}: the scales differ from the reference" + _int4_diagnosis(w, g, clip, s, z))
        if z.numel() != ref_z.numel() or not torch.equal(z.double().reshape(-1), ref_z.double().reshape(-1)):
            raise CheckFailed(f"{case}: the zero points differ from round(-lo / scale) clamped to 0..15"
                              + _int4_diagnosis(w, g, clip, s, z))
        _same_codes(q, ref_q, case, 0, 15)
        expected = quant.dequantize_int4(ref_q, ref_s, ref_z, g)
        got = dequantize_int4(ref_q.clone(), ref_s.clone(), ref_z.clone(), g)
        _finite(_tensor(got, "w_hat"), "dequantize_int4's output", case)
        try:
            _close(got, expected, "dequantize_int4(q, scale, zero, group_size)", case)
        except CheckFailed as exc:
            forgot = ref_q.double() * quant.dequantize_int4(torch.ones_like(ref_q), ref_s, torch.zeros_like(ref_z), g).double()
            got_t = _tensor(got, "w_hat").double()
            if got_t.numel() == forgot.numel() and torch.allclose(got_t.reshape(forgot.shape), forgot, rtol=1e-5):
                raise CheckFailed(f"{exc}; you forgot the zero point: w_hat = (q - zero) * scale") from None
            raise
    return (f"codes, scales and zero points match the reference on {len(cases)} unseen tensors "
            "(partial groups, all-zero and constant groups, 3-D, clipped); dequantization exact")


# ============================================================================ bits per weight

_BPW_CASES = [
    # (bits, group_size, scale_bits, zero_bits, what)
    (4, 128, 16, 4, "INT4, group 128, FP16 scale, 4-bit zero point"),
    (4, 64, 32, 0, "NF4-like: 4 bits, block 64, FP32 absmax, no zero point"),
    (8, 4096, 32, 0, "INT8 per channel of a 4096-wide row, FP32 scale"),
    (3, 96, 16, 3, "INT3, group 96, FP16 scale, 3-bit zero"),
    (2, 16, 16, 16, "INT2, group 16, FP16 scale and FP16 zero"),
    (4, 32, 16, 16, "Q4_1-like: 4 bits, block 32, FP16 scale and FP16 min"),
]


@graded(hint="bits + (scale_bits + zero_bits) / group_size: each group of group_size weights shares one scale "
             "and one zero point")
def check_bits_per_weight(bits_per_weight):
    """bits_per_weight(bits, group_size, scale_bits=16, zero_bits=0) -> float bits per weight."""
    for bits, g, sb, zb, what in _BPW_CASES:
        expected = quant.bits_per_weight(bits, g, sb, zb)
        got = bits_per_weight(bits, g, scale_bits=sb, zero_bits=zb)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise CheckFailed(f"{what}: returned {got!r}, not a number") from None
        if not math.isclose(value, expected, rel_tol=1e-9):
            hint = ""
            if math.isclose(value, bits + (sb + zb) / (g - 1), rel_tol=1e-9) or math.isclose(
                    value, bits + (sb + zb) / (g + 1), rel_tol=1e-9):
                hint = "; divide the overhead by group_size itself (off by one)"
            elif math.isclose(value, bits + sb / g, rel_tol=1e-9):
                hint = "; the zero point costs zero_bits per group too"
            elif math.isclose(value, expected / 8, rel_tol=1e-9):
                hint = "; that is bytes, the function returns bits"
            elif math.isclose(value, bits, rel_tol=1e-9):
                hint = "; the scale (and zero point) of each group add to the storage"
            raise CheckFailed(f"{what}: you returned {value:.6g}, expected {expected:.6g}{hint}")
    # the defaults: FP16 scale, no zero point
    expect(math.isclose(float(bits_per_weight(4, 128)), 4.125, rel_tol=1e-9),
           "bits_per_weight(4, 128) with the defaults (scale_bits=16, zero_bits=0) must be 4.125")
    return f"exact on {len(_BPW_CASES) + 1} formats (INT2-INT8, groups 16-4096, with and without zero points)"


# ============================================================================ models for the checks

def tiny_llama(seed: int = 0, vocab: int = 67):
    """A 2-layer Llama with random weights (init std 0.3, so its predictions are far from uniform)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.3, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return model


class UniformModel(nn.Module):
    """Predicts the same logit for every token, so its perplexity is exactly the vocabulary size."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.anchor = nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.anchor.device

    def forward(self, input_ids=None, **kwargs):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab) + self.anchor)


def _ids(n: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=_gen(seed))


def _perplexity_cases():
    return [
        ("60 tokens, window 16, stride 8", 60, 16, 8, 41),
        ("37 tokens, window 16, stride 16 (no overlap)", 37, 16, 16, 42),
        ("41 tokens, window 12, stride 5 (text not a multiple of the stride)", 41, 12, 5, 43),
        ("10 tokens, window 32, stride 16 (text shorter than the window)", 10, 32, 16, 44),
    ]


@graded(hint="windows start at 0, stride, 2*stride, ... and end at min(begin + window, N); a window scores the "
             "tokens t with max(prev_end, begin + 1) <= t < end; token t is scored by log_softmax(logits[t-1]); "
             "ppl = exp(total NLL / number of scored tokens); stop once a window reaches N")
def check_perplexity(perplexity):
    """perplexity(model, token_ids, window, stride) -> float, on a tiny random Llama and a uniform model."""
    vocab = 53
    uniform = UniformModel(vocab)
    got = perplexity(uniform, _ids(30, vocab, 40), 8, 4)
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise CheckFailed(f"returned {got!r}, not a number") from None
    if not math.isclose(value, vocab, rel_tol=1e-5):
        extra = ""
        if value > vocab * 10:
            extra = " -- exp of the summed NLL? perplexity is exp of the MEAN NLL per scored token"
        raise CheckFailed(f"a model that predicts all {vocab} tokens with equal probability must have perplexity "
                          f"{vocab}; you returned {value:.6g}{extra}")
    model = tiny_llama(seed=7, vocab=vocab)
    for case, n, window, stride, seed in _perplexity_cases():
        ids = _ids(n, vocab, seed)
        expected = quant.perplexity(model, ids, window, stride)
        got = perplexity(model, ids.clone(), window, stride)
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise CheckFailed(f"{case}: returned {got!r}, not a number") from None
        if not math.isclose(value, expected, rel_tol=1e-4):
            raise CheckFailed(f"{case}: you returned {value:.6g}, expected {expected:.6g}"
                              + _perplexity_diagnosis(model, ids, window, stride, value))
    return (f"matches the reference on {len(_perplexity_cases())} unseen texts and window/stride settings "
            f"of a tiny random Llama, and gives exactly {vocab} for a uniform model")


def _perplexity_variants(model, ids, window, stride) -> dict[str, float]:
    """What the usual mistakes compute, to name the one behind a wrong answer."""
    n = ids.numel()
    all_nll, all_count, shift_nll, shift_count, prev_end = 0.0, 0, 0.0, 0, 0
    window_ppls = []
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        logp = model(ids[begin:end][None]).logits[0].float().log_softmax(-1)
        tokens = ids[begin:end]
        nll = -logp[:-1].gather(1, tokens[1:, None]).squeeze(1)
        all_nll += nll.sum().item()
        all_count += nll.numel()
        first = max(prev_end, begin + 1)
        scored = -logp[first - begin - 1:end - begin - 1].gather(1, ids[first:end, None]).squeeze(1)
        window_ppls.append(math.exp(scored.mean().item()) if scored.numel() else float("nan"))
        unshifted = -logp[first - begin:end - begin].gather(1, ids[first:end, None]).squeeze(1)
        shift_nll += unshifted.sum().item()
        shift_count += unshifted.numel()
        prev_end = end
        if end == n:
            break
    return {
        "every token of every window scored (overlapping tokens counted twice)": math.exp(all_nll / all_count),
        "no label shift (logits at t scored against token t)": math.exp(shift_nll / max(shift_count, 1)),
        "mean of the windows' perplexities": sum(window_ppls) / len(window_ppls),
    }


@torch.no_grad()
def _perplexity_diagnosis(model, ids, window, stride, value) -> str:
    for mistake, wrong in _perplexity_variants(model, ids, window, stride).items():
        if math.isclose(value, wrong, rel_tol=1e-4):
            return f" -- that is what {mistake} gives"
    return ""


# ============================================================================ outliers

@graded(hint="register_forward_pre_hook on every nn.Linear (a pre-hook sees the module's input args[0]); "
             "per channel (last dim) take x.abs().amax over all other dims; keep the running max over prompts; "
             "remove every hook at the end")
def check_linear_input_absmax(linear_input_absmax):
    """linear_input_absmax(model, prompts) -> {name: (in_features,) tensor} on a tiny random Llama."""
    model = tiny_llama(seed=3, vocab=71)
    prompts = [_ids(n, 71, 50 + i) for i, n in enumerate((9, 23, 14))]
    expected = quant.linear_input_absmax(model, prompts)
    got = linear_input_absmax(model, [p.clone() for p in prompts])
    expect(isinstance(got, dict), f"expected a dict {{layer name: tensor}}, got {type(got).__name__}")
    leftover = [name for name, m in model.named_modules() if m._forward_pre_hooks or m._forward_hooks]
    expect(not leftover, f"hooks are still registered on {leftover[:3]}: remove them (handle.remove()) when done")
    missing = sorted(set(expected) - set(got))
    expect(not missing, f"no entry for {len(missing)} linear layers, e.g. {missing[:3]} "
                        "(every nn.Linear in model.named_modules(), keyed by its name)")
    extra = sorted(set(got) - set(expected))
    expect(not extra, f"entries for modules that are not nn.Linear layers: {extra[:3]}")
    for name, ref in expected.items():
        value = _tensor(got[name], name).double().reshape(-1)
        if value.numel() != ref.numel():
            raise CheckFailed(f"{name}: {value.numel()} values, expected {ref.numel()} (one per input channel)")
        if not torch.allclose(value, ref.double(), rtol=1e-5, atol=1e-7):
            last = quant.linear_input_absmax(model, prompts[-1:])[name].double()
            if torch.allclose(value, last, rtol=1e-5, atol=1e-7):
                raise CheckFailed(f"{name}: these are the values of the last prompt only: keep the maximum over "
                                  "all prompts (torch.maximum with what you had)")
            raise CheckFailed(f"{name}: differs from the per-channel max |x| over all tokens of all prompts "
                              f"(max abs difference {(value - ref.double()).abs().max().item():.3g}); "
                              "take |x| before the max, over every dim except the last")
    return f"per-channel input max |x| of all {len(expected)} linear layers over 3 unseen prompts; hooks removed"
