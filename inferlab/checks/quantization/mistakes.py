"""Lab 03's catalogue: answers a learner could write, and what the checks must say to each.

Wrong answers are the reference of :mod:`inferlab.quant` with one thing changed.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from inferlab import quant
from inferlab.checks import right, wrong
from inferlab.checks.quantization import (check_bits_per_weight, check_int4_groupwise, check_int8_absmax,
                                          check_int8_per_channel, check_linear_input_absmax, check_perplexity)
from inferlab.quant.formats import _grouped


def denominator_128(w, per_channel=False, clip_ratio=1.0):
    w = w.float()
    absmax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
    scale = clip_ratio * absmax / 128
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale


def floor_not_round(w, per_channel=False, clip_ratio=1.0):
    q, scale = quant.quantize_int8(w, per_channel, clip_ratio)
    return torch.clamp(torch.floor(w.float() / scale), -127, 127).to(torch.int8), scale


def truncates(w, per_channel=False, clip_ratio=1.0):          # .to(int8) without rounding
    q, scale = quant.quantize_int8(w, per_channel, clip_ratio)
    return torch.clamp(w.float() / scale, -127, 127).to(torch.int8), scale


def no_clamp(w, per_channel=False, clip_ratio=1.0):
    q, scale = quant.quantize_int8(w, per_channel, clip_ratio)
    return torch.round(w.float() / scale).to(torch.int16), scale


def nan_on_all_zero(w, per_channel=False, clip_ratio=1.0):
    w = w.float()
    absmax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
    scale = clip_ratio * absmax / 127
    return torch.clamp(torch.round(w / scale), -127, 127), scale


def ignores_clip_ratio(w, per_channel=False, clip_ratio=1.0):
    return quant.quantize_int8(w, per_channel, 1.0)


def dequantize_divides(q, scale):
    return q.float() / scale


def per_column(w, per_channel=False, clip_ratio=1.0):
    if not per_channel:
        return quant.quantize_int8(w, False, clip_ratio)
    w = w.float()
    scale = clip_ratio * w.abs().amax(dim=0, keepdim=True) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale


def always_per_tensor(w, per_channel=False, clip_ratio=1.0):
    return quant.quantize_int8(w, False, clip_ratio)


def nan_on_zero_row(w, per_channel=False, clip_ratio=1.0):
    w = w.float()
    scale = clip_ratio * w.abs().amax(dim=1, keepdim=True) / 127
    return torch.clamp(torch.round(w / scale), -127, 127), scale


def per_channel_denominator_128(w, per_channel=False, clip_ratio=1.0):
    q, scale = quant.quantize_int8(w, per_channel, clip_ratio)
    scale = scale * 127 / 128
    return torch.clamp(torch.round(w.float() / scale), -127, 127).to(torch.int8), scale


def per_channel_no_clamp(w, per_channel=False, clip_ratio=1.0):
    q, scale = quant.quantize_int8(w, per_channel, clip_ratio)
    return torch.round(w.float() / scale), scale


def _int4(w, group_size, clip_ratio, *, levels=15, include_zero=True, rounding=torch.round, clamp=True,
            guard=True, use_zero=True, group_shift=0):
    g = group_size + group_shift
    grouped, k = _grouped(w.float(), g)
    lo, hi = grouped.amin(-1), grouped.amax(-1)
    if include_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    lo, hi = lo * clip_ratio, hi * clip_ratio
    scale = (hi - lo) / levels
    if guard:
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-lo / scale), 0, 15) if use_zero else torch.zeros_like(scale)
    q = rounding(grouped / scale[..., None]) + zero[..., None]
    if clamp:
        q = torch.clamp(q, 0, 15)
    q = q.reshape(*w.shape[:-1], -1)[..., :k]
    return q, scale, zero


def forgets_zero_point(w, group_size=128, clip_ratio=1.0):       # codes are round(w / s), clamped at 0
    return _int4(w, group_size, clip_ratio, use_zero=False)


def group_size_plus_one(w, group_size=128, clip_ratio=1.0):
    return _int4(w, group_size, clip_ratio, group_shift=1)


def group_size_minus_one(w, group_size=128, clip_ratio=1.0):
    return _int4(w, group_size, clip_ratio, group_shift=-1)


def int4_floor_not_round(w, group_size=128, clip_ratio=1.0):
    return _int4(w, group_size, clip_ratio, rounding=torch.floor)


def int4_no_clamp(w, group_size=128, clip_ratio=1.0):
    return _int4(w, group_size, clip_ratio, clamp=False)


def sixteen_levels(w, group_size=128, clip_ratio=1.0):
    return _int4(w, group_size, clip_ratio, levels=16)


def nan_on_all_zero_group(w, group_size=128, clip_ratio=1.0):
    return _int4(w, group_size, clip_ratio, guard=False)


def range_without_zero(w, group_size=128, clip_ratio=1.0):       # AWQ-style min/max
    return _int4(w, group_size, clip_ratio, include_zero=False)


def one_scale_per_row(w, group_size=128, clip_ratio=1.0):        # ignores group_size
    q, s, z = _int4(w, w.shape[-1], clip_ratio)
    return q, s, z


def dequantize_forgets_zero(q, scale, zero, group_size=128):
    grouped, k = _grouped(q.float(), group_size)
    return (grouped * scale[..., None]).reshape(*q.shape[:-1], -1)[..., :k]


def dequantize_wrong_group(q, scale, zero, group_size=128):
    return quant.dequantize_int4(q, scale, zero, group_size) if q.shape[-1] <= group_size else \
        quant.dequantize_int4(q[..., :-1], scale, zero, group_size)


def group_off_by_one(bits, group_size, scale_bits=16, zero_bits=0):
    return bits + (scale_bits + zero_bits) / (group_size - 1)


def forgets_zero_bits(bits, group_size, scale_bits=16, zero_bits=0):
    return bits + scale_bits / group_size


def bytes_not_bits(bits, group_size, scale_bits=16, zero_bits=0):
    return (bits + (scale_bits + zero_bits) / group_size) / 8


def no_overhead(bits, group_size, scale_bits=16, zero_bits=0):
    return bits


def overhead_per_bit(bits, group_size, scale_bits=16, zero_bits=0):
    return bits * (1 + (scale_bits + zero_bits) / group_size)


def wrong_defaults(bits, group_size, scale_bits=32, zero_bits=0):
    return bits + (scale_bits + zero_bits) / group_size


def _windows(n, window, stride):
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        yield begin, end, prev_end
        prev_end = end
        if end == n:
            return


def _logp(model, ids):
    with torch.no_grad():
        return model(ids[None]).logits[0].float().log_softmax(-1)


def scores_overlap_twice(model, token_ids, window, stride):
    ids = torch.as_tensor(token_ids)
    nll, count = 0.0, 0
    for begin, end, _ in _windows(len(ids), window, stride):
        logp = _logp(model, ids[begin:end])
        nll -= logp[:-1].gather(1, ids[begin + 1:end, None]).sum().item()
        count += end - begin - 1
    return math.exp(nll / count)


def exp_of_sum(model, token_ids, window, stride):
    ids = torch.as_tensor(token_ids)
    nll = 0.0
    for begin, end, prev_end in _windows(len(ids), window, stride):
        first = max(prev_end, begin + 1)
        logp = _logp(model, ids[begin:end])
        nll -= logp[first - begin - 1:end - begin - 1].gather(1, ids[first:end, None]).sum().item()
    return math.exp(min(nll, 700))


def no_label_shift(model, token_ids, window, stride):
    ids = torch.as_tensor(token_ids)
    nll, count = 0.0, 0
    for begin, end, prev_end in _windows(len(ids), window, stride):
        first = max(prev_end, begin + 1)
        logp = _logp(model, ids[begin:end])
        nll -= logp[first - begin:end - begin].gather(1, ids[first:end, None]).sum().item()
        count += end - first
    return math.exp(nll / count)


def mean_of_window_perplexities(model, token_ids, window, stride):
    ids = torch.as_tensor(token_ids)
    values = []
    for begin, end, prev_end in _windows(len(ids), window, stride):
        first = max(prev_end, begin + 1)
        logp = _logp(model, ids[begin:end])
        nll = -logp[first - begin - 1:end - begin - 1].gather(1, ids[first:end, None]).mean().item()
        values.append(math.exp(nll))
    return sum(values) / len(values)


def weights_windows_by_length(model, token_ids, window, stride):   # mean NLL x window length, HF-docs style
    ids = torch.as_tensor(token_ids)
    nll, count = 0.0, 0
    for begin, end, prev_end in _windows(len(ids), window, stride):
        first = max(prev_end, begin + 1)
        logp = _logp(model, ids[begin:end])
        mean = -logp[first - begin - 1:end - begin - 1].gather(1, ids[first:end, None]).mean().item()
        nll += mean * (end - begin)
        count += end - begin
    return math.exp(nll / count)


def ignores_stride(model, token_ids, window, stride):            # back-to-back windows, no overlap
    ids = torch.as_tensor(token_ids)
    nll, count = 0.0, 0
    for begin, end, prev_end in _windows(len(ids), window, window):
        first = max(prev_end, begin + 1)
        logp = _logp(model, ids[begin:end])
        nll -= logp[first - begin - 1:end - begin - 1].gather(1, ids[first:end, None]).sum().item()
        count += end - first
    return math.exp(nll / count)


def _collect(model, prompts, hook_kind="pre", reduce="absmax", keep="max", remove=True, only_decoder=False):
    stats, handles = {}, []

    def make(name):
        def record(x):
            x = x.detach().reshape(-1, x.shape[-1]).float()
            value = {"absmax": x.abs().amax(0), "signed": x.amax(0), "mean": x.abs().mean(0)}[reduce]
            stats[name] = value if (name not in stats or keep == "last") else torch.maximum(stats[name], value)
        if hook_kind == "pre":
            return lambda m, args: record(args[0])
        return lambda m, args, out: record(out)

    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and not (only_decoder and name == "lm_head"):
            register = m.register_forward_pre_hook if hook_kind == "pre" else m.register_forward_hook
            handles.append(register(make(name)))
    with torch.no_grad():
        for ids in prompts:
            model(torch.as_tensor(ids)[None])
    if remove:
        for h in handles:
            h.remove()
    return stats


def output_not_input(model, prompts):
    return _collect(model, prompts, hook_kind="post")


def signed_max(model, prompts):
    return _collect(model, prompts, reduce="signed")


def mean_not_max(model, prompts):
    return _collect(model, prompts, reduce="mean")


def last_prompt_only(model, prompts):
    return _collect(model, prompts, keep="last")


def leaves_hooks(model, prompts):
    return _collect(model, prompts, remove=False)


def skips_lm_head(model, prompts):
    return _collect(model, prompts, only_decoder=True)


CATALOGUE = [
    wrong(check_int8_absmax, "so divide by 127", denominator_128),
    wrong(check_int8_absmax, "round to nearest (torch.round)", floor_not_round),
    wrong(check_int8_absmax, "they are off by one", truncates),
    wrong(check_int8_absmax, "clamp the codes", no_clamp),
    wrong(check_int8_absmax, "give it a positive scale", nan_on_all_zero),
    wrong(check_int8_absmax, "did you ignore clip_ratio?", ignores_clip_ratio),
    wrong(check_int8_absmax, "multiply the codes by the scale", dequantize_int8=dequantize_divides),
    right(check_int8_absmax, quant.quantize_int8, quant.dequantize_int8, label="library-reference"),
    wrong(check_int8_per_channel, "you took one scale per column", per_column),
    wrong(check_int8_per_channel, "1 scale(s), expected 13", always_per_tensor),
    wrong(check_int8_per_channel, "give it a positive scale", nan_on_zero_row),
    wrong(check_int8_per_channel, "so divide by 127", per_channel_denominator_128),
    wrong(check_int8_per_channel, "clamp the codes", per_channel_no_clamp),
    wrong(check_int4_groupwise, "the zero point is 0 everywhere", forgets_zero_point),
    wrong(check_int4_groupwise, "(group size off by one)", group_size_plus_one),
    wrong(check_int4_groupwise, "(group size off by one)", group_size_minus_one),
    wrong(check_int4_groupwise, "round to nearest (torch.round)", int4_floor_not_round),
    wrong(check_int4_groupwise, "clamp the codes", int4_no_clamp),
    wrong(check_int4_groupwise, "not / 16", sixteen_levels),
    wrong(check_int4_groupwise, "give it a positive scale", nan_on_all_zero_group),
    wrong(check_int4_groupwise, "the range must include 0", range_without_zero),
    wrong(check_int4_groupwise, "one per group", one_scale_per_row),
    wrong(check_int4_groupwise, "you forgot the zero point", dequantize_int4=dequantize_forgets_zero),
    wrong(check_int4_groupwise, "has 897 values, expected 910", dequantize_int4=dequantize_wrong_group),
    right(check_int4_groupwise, quant.quantize_int4, quant.dequantize_int4, label="library-reference"),
    wrong(check_bits_per_weight, "(off by one)", group_off_by_one),
    wrong(check_bits_per_weight, "the zero point costs zero_bits per group too", forgets_zero_bits),
    wrong(check_bits_per_weight, "that is bytes", bytes_not_bits),
    wrong(check_bits_per_weight, "the scale (and zero point) of each group add to the storage", no_overhead),
    wrong(check_bits_per_weight, "you returned 4.625, expected 4.15625", overhead_per_bit),
    wrong(check_bits_per_weight, "with the defaults (scale_bits=16, zero_bits=0)", wrong_defaults),
    right(check_bits_per_weight, quant.bits_per_weight, label="library-reference"),
    wrong(check_perplexity, "counted twice", scores_overlap_twice),
    wrong(check_perplexity, "exp of the summed NLL", exp_of_sum),
    wrong(check_perplexity, "no label shift", no_label_shift),
    wrong(check_perplexity, "mean of the windows' perplexities", mean_of_window_perplexities),
    wrong(check_perplexity, "weighted by the window's length", weights_windows_by_length),
    wrong(check_perplexity, "windows placed back to back", ignores_stride),
    right(check_perplexity, quant.perplexity, label="library-reference"),
    wrong(check_linear_input_absmax, "these are the layer's outputs", output_not_input),
    wrong(check_linear_input_absmax, "take |x| before the max", signed_max),
    wrong(check_linear_input_absmax, "differs from the per-channel max |x|", mean_not_max),
    wrong(check_linear_input_absmax, "the last prompt only", last_prompt_only),
    wrong(check_linear_input_absmax, "hooks are still registered", leaves_hooks),
    wrong(check_linear_input_absmax, "no entry for 1 linear layers", skips_lm_head),
    right(check_linear_input_absmax, quant.linear_input_absmax, label="library-reference"),
]
