"""Graded checks of lab 03, quantization.

Each check calls the learner's function on inputs the notebook never shows -- seeded random
tensors of odd shapes, all-zero and constant rows and groups, an outlier, a clipped range,
a tiny randomly initialised Llama and a model that predicts a uniform distribution -- and
compares the result with the reference in :mod:`inferlab.quant`. When an answer is wrong the
message names the case and, where it can tell, the usual mistake behind it.
"""
from __future__ import annotations

import math

import torch

from inferlab import quant
from inferlab.checks import CheckFailed, Exercise, expect, graded, seeded_randn
from inferlab.checks.quantization.models import check_linear_input_absmax, check_perplexity
from inferlab.checks.quantization.tensors import tensor_of

LAB = "03-quantization"


def _randn(*shape, seed: int, std: float = 1.0) -> torch.Tensor:
    return seeded_randn(*shape, seed=seed, scale=std)


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
    got, expected = tensor_of(got, what).double(), expected.double()
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
        q, scale = tensor_of(out[0], "q"), tensor_of(out[1], "scale")
        _finite(scale, "the scale", case)
        if scale.numel() != ref_scale.numel():
            raise CheckFailed(f"{case}: {scale.numel()} scale(s), expected {ref_scale.numel()} "
                              + ("(one per output channel = per row)" if per_channel else "(one for the whole tensor)")
                              + _int8_scale_diagnosis(w, scale, ref_scale, per_channel))
        if not torch.allclose(scale.double().reshape(-1), ref_scale.double().reshape(-1), rtol=1e-5, atol=0):
            raise CheckFailed(f"{case}: the scale differs from clip_ratio * max|w| / 127"
                              + _int8_scale_diagnosis(w, scale, ref_scale, per_channel))
        _same_codes(q, ref_q, case, -127, 127)
        w_hat = dequantize_int8(ref_q.clone(), ref_scale.clone())
        divided = (ref_q.double() / ref_scale.double())
        if torch.is_tensor(w_hat) and w_hat.numel() == divided.numel() and \
                torch.allclose(w_hat.double().reshape(divided.shape), divided, rtol=1e-5) and ref_q.any():
            raise CheckFailed(f"{case}: dequantize_int8 divided by the scale; the codes count steps of size "
                              "scale, so multiply the codes by the scale")
        _close(w_hat, quant.dequantize_int8(ref_q, ref_scale), "dequantize_int8(q, scale)", case)
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
        q, s, z = (tensor_of(x, name) for x, name in zip(out, ("q", "scale", "zero")))
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
        _finite(tensor_of(got, "w_hat"), "dequantize_int4's output", case)
        try:
            _close(got, expected, "dequantize_int4(q, scale, zero, group_size)", case)
        except CheckFailed as exc:
            forgot = ref_q.double() * quant.dequantize_int4(torch.ones_like(ref_q), ref_s, torch.zeros_like(ref_z), g).double()
            got_t = tensor_of(got, "w_hat").double()
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

EXERCISES = [
    Exercise(check_int8_absmax, ("quantize_int8", "dequantize_int8")),
    Exercise(check_int8_per_channel, ("quantize_int8", "dequantize_int8")),
    Exercise(check_int4_groupwise, ("quantize_int4", "dequantize_int4")),
    Exercise(check_bits_per_weight, ("bits_per_weight",)),
    Exercise(check_linear_input_absmax, ("linear_input_absmax",)),
    Exercise(check_perplexity, ("perplexity",)),
]
