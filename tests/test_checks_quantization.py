"""Lab 03's graded checks: each fails on the learner's stub, fails on plausible wrong answers,
and passes on the reference solution."""
import math

import pytest
import torch
from torch import nn

from inferlab.checks import quantization as chk

LAB = "03-quantization"



def _run_all(ns):
    return [
        chk.check_int8_absmax(ns["quantize_int8"], ns["dequantize_int8"]),
        chk.check_int8_per_channel(ns["quantize_int8"], ns["dequantize_int8"]),
        chk.check_int4_groupwise(ns["quantize_int4"], ns["dequantize_int4"]),
        chk.check_bits_per_weight(ns["bits_per_weight"]),
        chk.check_linear_input_absmax(ns["linear_input_absmax"]),
        chk.check_perplexity(ns["perplexity"]),
    ]


def test_every_check_fails_on_the_stub(stub, capsys):
    verdicts = _run_all(stub)
    for verdict in verdicts:
        assert not verdict.passed, verdict.name
        assert "not implemented" in verdict.detail
    out = capsys.readouterr().out
    assert out.count("FAIL check_") == 6 and "hint:" in out


def test_every_check_passes_on_the_solution(solution, capsys):
    verdicts = _run_all(solution)
    assert all(v.passed for v in verdicts), [v.line() for v in verdicts]
    assert capsys.readouterr().out.count("PASS check_") == 6


def test_the_stub_keeps_the_given_helper_and_hides_the_answers(stub):
    assert callable(stub["to_groups"])                     # given to the learner, not an exercise
    grouped, k = stub["to_groups"](torch.arange(5.0)[None], 4)
    assert grouped.shape == (1, 2, 4) and k == 5


# ============================================================================ INT8

def _wrong_int8(sol_q, sol_dq):
    def denominator_128(w, per_channel=False, clip_ratio=1.0):
        w = w.float()
        absmax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
        scale = clip_ratio * absmax / 128
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale

    def floor_not_round(w, per_channel=False, clip_ratio=1.0):
        q, scale = sol_q(w, per_channel, clip_ratio)
        return torch.clamp(torch.floor(w.float() / scale), -127, 127).to(torch.int8), scale

    def truncates(w, per_channel=False, clip_ratio=1.0):          # .to(int8) without rounding
        q, scale = sol_q(w, per_channel, clip_ratio)
        return torch.clamp(w.float() / scale, -127, 127).to(torch.int8), scale

    def no_clamp(w, per_channel=False, clip_ratio=1.0):
        q, scale = sol_q(w, per_channel, clip_ratio)
        return torch.round(w.float() / scale).to(torch.int16), scale

    def nan_on_all_zero(w, per_channel=False, clip_ratio=1.0):
        w = w.float()
        absmax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
        scale = clip_ratio * absmax / 127
        return torch.clamp(torch.round(w / scale), -127, 127), scale

    def ignores_clip_ratio(w, per_channel=False, clip_ratio=1.0):
        return sol_q(w, per_channel, 1.0)

    def dequantize_divides(q, scale):
        return q.float() / scale

    return [(denominator_128, sol_dq), (floor_not_round, sol_dq), (truncates, sol_dq), (no_clamp, sol_dq),
            (nan_on_all_zero, sol_dq), (ignores_clip_ratio, sol_dq), (sol_q, dequantize_divides)]


@pytest.mark.parametrize("index", range(7))
def test_int8_absmax_rejects_wrong_answers(solution, index, capsys):
    q, dq = _wrong_int8(solution["quantize_int8"], solution["dequantize_int8"])[index]
    verdict = chk.check_int8_absmax(q, dq)
    assert not verdict.passed, (q.__name__, dq.__name__)


def _wrong_per_channel(sol_q):
    def per_column(w, per_channel=False, clip_ratio=1.0):
        if not per_channel:
            return sol_q(w, False, clip_ratio)
        w = w.float()
        scale = clip_ratio * w.abs().amax(dim=0, keepdim=True) / 127
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8), scale

    def always_per_tensor(w, per_channel=False, clip_ratio=1.0):
        return sol_q(w, False, clip_ratio)

    def nan_on_zero_row(w, per_channel=False, clip_ratio=1.0):
        w = w.float()
        scale = clip_ratio * w.abs().amax(dim=1, keepdim=True) / 127
        return torch.clamp(torch.round(w / scale), -127, 127), scale

    def denominator_128(w, per_channel=False, clip_ratio=1.0):
        q, scale = sol_q(w, per_channel, clip_ratio)
        scale = scale * 127 / 128
        return torch.clamp(torch.round(w.float() / scale), -127, 127).to(torch.int8), scale

    def no_clamp(w, per_channel=False, clip_ratio=1.0):
        q, scale = sol_q(w, per_channel, clip_ratio)
        return torch.round(w.float() / scale), scale

    return [per_column, always_per_tensor, nan_on_zero_row, denominator_128, no_clamp]


@pytest.mark.parametrize("index", range(5))
def test_int8_per_channel_rejects_wrong_answers(solution, index, capsys):
    wrong = _wrong_per_channel(solution["quantize_int8"])[index]
    verdict = chk.check_int8_per_channel(wrong, solution["dequantize_int8"])
    assert not verdict.passed, wrong.__name__


def test_int8_checks_name_the_usual_mistakes(solution, capsys):
    wrong = dict((f.__name__, f) for f in _wrong_per_channel(solution["quantize_int8"]))
    detail = chk.check_int8_per_channel(wrong["per_column"], solution["dequantize_int8"]).detail
    assert "row" in detail and "dim 1" in detail
    detail = chk.check_int8_per_channel(wrong["denominator_128"], solution["dequantize_int8"]).detail
    assert "127" in detail
    detail = chk.check_int8_per_channel(wrong["nan_on_zero_row"], solution["dequantize_int8"]).detail
    assert "NaN" in detail
    pairs = dict((q.__name__, q) for q, _ in _wrong_int8(solution["quantize_int8"], solution["dequantize_int8"]))
    assert "clamp" in chk.check_int8_absmax(pairs["no_clamp"], solution["dequantize_int8"]).detail
    assert "round" in chk.check_int8_absmax(pairs["floor_not_round"], solution["dequantize_int8"]).detail


# ============================================================================ INT4

def _wrong_int4(ns):
    sol_q, sol_dq, to_groups = ns["quantize_int4"], ns["dequantize_int4"], ns["to_groups"]

    def generic(w, group_size, clip_ratio, *, levels=15, include_zero=True, rounding=torch.round, clamp=True,
                guard=True, use_zero=True, group_shift=0):
        g = group_size + group_shift
        grouped, k = to_groups(w.float(), g)
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
        return generic(w, group_size, clip_ratio, use_zero=False)

    def group_size_plus_one(w, group_size=128, clip_ratio=1.0):
        return generic(w, group_size, clip_ratio, group_shift=1)

    def group_size_minus_one(w, group_size=128, clip_ratio=1.0):
        return generic(w, group_size, clip_ratio, group_shift=-1)

    def floor_not_round(w, group_size=128, clip_ratio=1.0):
        return generic(w, group_size, clip_ratio, rounding=torch.floor)

    def no_clamp(w, group_size=128, clip_ratio=1.0):
        return generic(w, group_size, clip_ratio, clamp=False)

    def sixteen_levels(w, group_size=128, clip_ratio=1.0):
        return generic(w, group_size, clip_ratio, levels=16)

    def nan_on_all_zero_group(w, group_size=128, clip_ratio=1.0):
        return generic(w, group_size, clip_ratio, guard=False)

    def range_without_zero(w, group_size=128, clip_ratio=1.0):       # AWQ-style min/max
        return generic(w, group_size, clip_ratio, include_zero=False)

    def one_scale_per_row(w, group_size=128, clip_ratio=1.0):        # ignores group_size
        q, s, z = generic(w, w.shape[-1], clip_ratio)
        return q, s, z

    def dequantize_forgets_zero(q, scale, zero, group_size=128):
        grouped, k = to_groups(q.float(), group_size)
        return (grouped * scale[..., None]).reshape(*q.shape[:-1], -1)[..., :k]

    def dequantize_wrong_group(q, scale, zero, group_size=128):
        return sol_dq(q, scale, zero, group_size) if q.shape[-1] <= group_size else \
            sol_dq(q[..., :-1], scale, zero, group_size)

    return [(forgets_zero_point, sol_dq), (group_size_plus_one, sol_dq), (group_size_minus_one, sol_dq),
            (floor_not_round, sol_dq), (no_clamp, sol_dq), (sixteen_levels, sol_dq),
            (nan_on_all_zero_group, sol_dq), (range_without_zero, sol_dq), (one_scale_per_row, sol_dq),
            (sol_q, dequantize_forgets_zero), (sol_q, dequantize_wrong_group)]


@pytest.mark.parametrize("index", range(11))
def test_int4_groupwise_rejects_wrong_answers(solution, index, capsys):
    q, dq = _wrong_int4(solution)[index]
    verdict = chk.check_int4_groupwise(q, dq)
    assert not verdict.passed, (q.__name__, dq.__name__)


def test_int4_check_names_the_usual_mistakes(solution, capsys):
    pairs = {(q.__name__ if q is not solution["quantize_int4"] else dq.__name__): (q, dq)
             for q, dq in _wrong_int4(solution)}
    assert "off by one" in chk.check_int4_groupwise(*pairs["group_size_plus_one"]).detail
    assert "off by one" in chk.check_int4_groupwise(*pairs["group_size_minus_one"]).detail
    assert "/ 15" in chk.check_int4_groupwise(*pairs["sixteen_levels"]).detail
    assert "NaN" in chk.check_int4_groupwise(*pairs["nan_on_all_zero_group"]).detail
    assert "include 0" in chk.check_int4_groupwise(*pairs["range_without_zero"]).detail
    assert "zero point" in chk.check_int4_groupwise(*pairs["forgets_zero_point"]).detail
    assert "zero point" in chk.check_int4_groupwise(*pairs["dequantize_forgets_zero"]).detail
    assert "clamp" in chk.check_int4_groupwise(*pairs["no_clamp"]).detail


# ============================================================================ bits per weight

def _wrong_bits():
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

    return [group_off_by_one, forgets_zero_bits, bytes_not_bits, no_overhead, overhead_per_bit, wrong_defaults]


@pytest.mark.parametrize("index", range(6))
def test_bits_per_weight_rejects_wrong_answers(index, capsys):
    wrong = _wrong_bits()[index]
    verdict = chk.check_bits_per_weight(wrong)
    assert not verdict.passed, wrong.__name__


def test_bits_per_weight_names_the_usual_mistakes(capsys):
    wrong = {f.__name__: f for f in _wrong_bits()}
    assert "off by one" in chk.check_bits_per_weight(wrong["group_off_by_one"]).detail
    assert "zero point" in chk.check_bits_per_weight(wrong["forgets_zero_bits"]).detail
    assert "bytes" in chk.check_bits_per_weight(wrong["bytes_not_bits"]).detail


# ============================================================================ perplexity

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


def _wrong_perplexity():
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

    return [scores_overlap_twice, exp_of_sum, no_label_shift, mean_of_window_perplexities,
            weights_windows_by_length, ignores_stride]


@pytest.mark.parametrize("index", range(6))
def test_perplexity_rejects_wrong_answers(index, capsys):
    wrong = _wrong_perplexity()[index]
    verdict = chk.check_perplexity(wrong)
    assert not verdict.passed, wrong.__name__


def test_perplexity_check_names_the_usual_mistakes(capsys):
    wrong = {f.__name__: f for f in _wrong_perplexity()}
    assert "exp of the summed NLL" in chk.check_perplexity(wrong["exp_of_sum"]).detail
    assert "counted twice" in chk.check_perplexity(wrong["scores_overlap_twice"]).detail
    assert "label shift" in chk.check_perplexity(wrong["no_label_shift"]).detail
    assert "mean of the windows" in chk.check_perplexity(wrong["mean_of_window_perplexities"]).detail


def test_perplexity_check_uses_settings_the_notebook_does_not(capsys):
    settings = {(w, s) for _, _, w, s, _ in chk._perplexity_cases()}
    assert (512, 256) not in settings
    assert any(n < w for _, n, w, _, _ in chk._perplexity_cases())        # a text shorter than the window
    assert any(w == s for _, _, w, s, _ in chk._perplexity_cases())       # windows without overlap


# ============================================================================ outliers

def _wrong_absmax(sol):
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

    return [output_not_input, signed_max, mean_not_max, last_prompt_only, leaves_hooks, skips_lm_head]


@pytest.mark.parametrize("index", range(6))
def test_linear_input_absmax_rejects_wrong_answers(solution, index, capsys):
    wrong = _wrong_absmax(solution["linear_input_absmax"])[index]
    verdict = chk.check_linear_input_absmax(wrong)
    assert not verdict.passed, wrong.__name__


def test_linear_input_absmax_names_the_usual_mistakes(solution, capsys):
    wrong = {f.__name__: f for f in _wrong_absmax(solution["linear_input_absmax"])}
    assert "last prompt" in chk.check_linear_input_absmax(wrong["last_prompt_only"]).detail
    assert "hooks are still registered" in chk.check_linear_input_absmax(wrong["leaves_hooks"]).detail
    assert "no entry" in chk.check_linear_input_absmax(wrong["skips_lm_head"]).detail


# ============================================================================ unseen inputs

def test_checks_use_inputs_the_notebook_does_not_show(solution):
    shapes = [tuple(w.shape) for _, w, _ in chk._int8_cases(False)] + [tuple(w.shape) for _, w, _ in chk._int8_cases(True)]
    assert any(len(s) == 1 for s in shapes) and any(len(s) == 3 for s in shapes)
    assert any((w == 0).all() for _, w, _ in chk._int8_cases(False))
    int4 = chk._int4_cases()
    assert any(w.shape[-1] % g for _, w, g, _ in int4)               # a partial last group
    assert any(g > w.shape[-1] for _, w, g, _ in int4)                # a group wider than the row
    assert any(c != 1.0 for _, _, _, c in int4)                       # a clipped range
    special = int4[1][1]
    assert (special[0, :32] == 0).all() and (special[1, 32:] == special[1, 32]).all()
    # the real model's widths (576, 1536) and the lab's group sizes are not among the cases
    assert not any(w.shape[-1] in (576, 1536) for _, w, _, _ in int4)
