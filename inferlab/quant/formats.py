"""Weight formats by hand: symmetric INT8 (per tensor or per output channel), asymmetric group-wise INT4,
llama.cpp's Q4_1, their bits per weight, and the format names lab 03 uses ("int8-channel", "int4-g128")."""
from __future__ import annotations

import re

import torch


INT8_QMAX = 127          # symmetric INT8 uses -127..127 (-128 is left out so the grid is symmetric)


INT4_LEVELS = 15         # asymmetric INT4 codes are 0..15: 15 steps between the lowest and highest code


def quantize_int8(w: torch.Tensor, per_channel: bool = False, clip_ratio: float = 1.0):
    """Symmetric absmax INT8: ``q = clamp(round(w / s), -127, 127)``, ``s = clip_ratio * max|w| / 127``.

    per_channel=False: one scale for the whole tensor (a 0-d tensor).
    per_channel=True: one scale per output channel, i.e. per row of a 2-D ``(out, in)``
    weight; the scale has shape ``(out, 1)`` so that ``q * scale`` broadcasts.
    clip_ratio < 1 shrinks the range: values beyond it saturate at +-127 (clipping trades
    error on the few largest values for a finer grid everywhere else).

    A tensor or row that is all zeros has max|w| = 0; its scale is set to 1 (any positive
    number works: every q is 0 and dequantizes to exactly 0), so no NaN or inf appears.
    Returns ``(q, scale)``: q is int8 with w's shape, scale is float32.
    """
    w = w.detach().float()
    if per_channel:
        if w.dim() != 2:
            raise ValueError(f"per-channel INT8 expects a 2-D (out, in) weight, got shape {tuple(w.shape)}")
        absmax = w.abs().amax(dim=1, keepdim=True)
    else:
        absmax = w.abs().amax()
    scale = clip_ratio * absmax / INT8_QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale), -INT8_QMAX, INT8_QMAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``q * scale`` in float32 (scale broadcasts: a 0-d tensor or ``(out, 1)``)."""
    return q.float() * scale.float()


def _grouped(x: torch.Tensor, group_size: int) -> tuple[torch.Tensor, int]:
    """View the last dimension of ``x`` as groups: shape ``(*lead, n_groups, group_size)``.

    Padding rule: when the last dimension K is not a multiple of ``group_size``, the last
    group of each row is padded with copies of the row's last element. Copies never change a
    group's min or max, so the partial group's scale and zero point come from its real
    elements only; the padding is cut off again after dequantization. A group size larger
    than K gives one (partial) group per row: per-channel quantization.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size}")
    k = x.shape[-1]
    n_groups = -(-k // group_size)
    pad = n_groups * group_size - k
    if pad:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], pad)], dim=-1)
    return x.reshape(*x.shape[:-1], n_groups, group_size), k


def quantize_int4(w: torch.Tensor, group_size: int = 128, clip_ratio: float = 1.0):
    """Asymmetric group-wise INT4 with an integer zero point (GPTQ's rule).

    Per group of ``group_size`` consecutive weights along the last dimension:

        lo = clip_ratio * min(min(group), 0)      hi = clip_ratio * max(max(group), 0)
        s  = (hi - lo) / 15                       z  = clamp(round(-lo / s), 0, 15)
        q  = clamp(round(w / s) + z, 0, 15)       w_hat = (q - z) * s

    The range always contains 0, so 0 is exactly representable (it dequantizes to 0), a
    constant group c reconstructs exactly (range [0, c] or [c, 0]), and an all-zero group has
    s = 0, which is replaced by s = 1 (then z = 0, q = 0, w_hat = 0): no NaN, no inf.
    Shapes whose last dimension is not a multiple of group_size: see :func:`_grouped`.

    Returns ``(q, scale, zero)``: q uint8 codes 0..15 with w's shape (one code per byte,
    unpacked), scale float32 and zero uint8, both of shape ``(*w.shape[:-1], n_groups)``.
    """
    w = w.detach().float()
    grouped, k = _grouped(w, group_size)
    lo = grouped.amin(dim=-1).clamp(max=0) * clip_ratio
    hi = grouped.amax(dim=-1).clamp(min=0) * clip_ratio
    scale = (hi - lo) / INT4_LEVELS
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-lo / scale), 0, INT4_LEVELS)
    q = torch.clamp(torch.round(grouped / scale[..., None]) + zero[..., None], 0, INT4_LEVELS)
    q = q.reshape(*w.shape[:-1], -1)[..., :k]
    return q.to(torch.uint8), scale, zero.to(torch.uint8)


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """``(q - zero) * scale`` per group, float32, with q's shape."""
    grouped, k = _grouped(q.float(), group_size)
    w = (grouped - zero.float()[..., None]) * scale.float()[..., None]
    return w.reshape(*q.shape[:-1], -1)[..., :k]


def bits_per_weight(bits: int, group_size: int, scale_bits: int = 16, zero_bits: int = 0) -> float:
    """Storage per weight, scale overhead included: ``bits + (scale_bits + zero_bits) / group_size``.

    Every group of ``group_size`` weights carries one scale (and, for an asymmetric format,
    one zero point). Examples: INT4 with an FP16 scale and a 4-bit zero point per 128 weights
    is 4 + 20/128 = 4.156 bits; INT8 per channel of a 4096-wide row with an FP32 scale is
    8 + 32/4096 = 8.008 bits. Rows whose length is not a multiple of group_size need a padded
    last group, which costs a little more than this formula says (see :func:`linear_bits`).
    """
    return bits + (scale_bits + zero_bits) / group_size


def relative_error(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """``||w - w_hat|| / ||w||`` (Frobenius norms); 0 for an all-zero w reconstructed exactly."""
    w, w_hat = w.detach().float(), w_hat.detach().float()
    norm = torch.linalg.vector_norm(w).item()
    diff = torch.linalg.vector_norm(w - w_hat).item()
    return diff / norm if norm > 0 else diff


def q4_1_roundtrip(w: torch.Tensor, block: int = 32) -> torch.Tensor:
    """llama.cpp's Q4_1 rule on blocks of ``block`` weights along each row: ``w_hat = m + q * d``
    with m = min(block), d = (max - min) / 15, q = round((w - m) / d). Unlike
    :func:`quantize_int4` the grid has a float offset and need not contain 0. Used by lab 03 to
    show that the embedded model's weights already sit on such a grid."""
    grouped, k = _grouped(w.detach().float(), block)
    m = grouped.amin(dim=-1, keepdim=True)
    d = (grouped.amax(dim=-1, keepdim=True) - m) / INT4_LEVELS
    d = torch.where(d > 0, d, torch.ones_like(d))
    w_hat = m + torch.clamp(torch.round((grouped - m) / d), 0, INT4_LEVELS) * d
    return w_hat.reshape(*w.shape[:-1], -1)[..., :k]


FORMAT = re.compile(r"^(int8)-(tensor|channel)$|^(int4)-g(\d+)$")


def parse_format(fmt: str) -> dict:
    """``"int8-tensor"``, ``"int8-channel"`` or ``"int4-g<N>"`` -> {"bits", "per_channel", "group_size"}."""
    match = FORMAT.match(fmt)
    if not match:
        raise ValueError(f"unknown format {fmt!r}: use 'int8-tensor', 'int8-channel' or 'int4-g<group size>'")
    if match.group(1):
        return {"bits": 8, "per_channel": match.group(2) == "channel", "group_size": None}
    return {"bits": 4, "per_channel": False, "group_size": int(match.group(4))}


def fake_quantize(w: torch.Tensor, fmt: str) -> torch.Tensor:
    """Quantize then dequantize ``w`` in a format of :func:`parse_format`; float32 result."""
    spec = parse_format(fmt)
    if spec["bits"] == 8:
        return dequantize_int8(*quantize_int8(w, per_channel=spec["per_channel"]))
    return dequantize_int4(*quantize_int4(w, spec["group_size"]), spec["group_size"])
