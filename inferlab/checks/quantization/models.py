"""Graded checks of lab 03, part 2: perplexity and the inputs of linear layers, on tiny models.

A tiny randomly initialised Llama and a model that predicts a uniform distribution (whose
perplexity is exactly its vocabulary size) stand in for the lab's model.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn

from inferlab import quant
from inferlab.checks import CheckFailed, expect, graded
from inferlab.checks.quantization.tensors import tensor_of, seeded_ids

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
    got = perplexity(uniform, seeded_ids(30, vocab, 40), 8, 4)
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
        ids = seeded_ids(n, vocab, seed)
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
    window_ppls, weighted_nll, weighted_count = [], 0.0, 0
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
        if scored.numel():
            weighted_nll += scored.mean().item() * (end - begin)
            weighted_count += end - begin
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
        "each window's mean NLL weighted by the window's length (count the tokens each window scores)":
            math.exp(weighted_nll / max(weighted_count, 1)),
    }


@torch.no_grad()
def _perplexity_diagnosis(model, ids, window, stride, value) -> str:
    for mistake, wrong in _perplexity_variants(model, ids, window, stride).items():
        if math.isclose(value, wrong, rel_tol=1e-4):
            return f" -- that is what {mistake} gives"
    if stride < window and math.isclose(value, quant.perplexity(model, ids, window, window), rel_tol=1e-4):
        return " -- that is what windows placed back to back give: the next window starts stride tokens later"
    return ""


# ============================================================================ outliers

@graded(hint="register_forward_pre_hook on every nn.Linear (a pre-hook sees the module's input args[0]); "
             "per channel (last dim) take x.abs().amax over all other dims; keep the running max over prompts; "
             "remove every hook at the end")
def check_linear_input_absmax(linear_input_absmax):
    """linear_input_absmax(model, prompts) -> {name: (in_features,) tensor} on a tiny random Llama."""
    model = tiny_llama(seed=3, vocab=71)
    prompts = [seeded_ids(n, 71, 50 + i) for i, n in enumerate((9, 23, 14))]
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
        value = tensor_of(got[name], name).double().reshape(-1)
        if value.numel() != ref.numel():
            raise CheckFailed(f"{name}: {value.numel()} values, expected {ref.numel()} (one per input channel)")
        if not torch.allclose(value, ref.double(), rtol=1e-5, atol=1e-7):
            last = quant.linear_input_absmax(model, prompts[-1:])[name].double()
            if torch.allclose(value, last, rtol=1e-5, atol=1e-7):
                raise CheckFailed(f"{name}: these are the values of the last prompt only: keep the maximum over "
                                  "all prompts (torch.maximum with what you had)")
            outputs = _output_absmax(model, prompts).get(name)
            if outputs is not None and outputs.numel() == value.numel() and torch.allclose(value, outputs, rtol=1e-5):
                raise CheckFailed(f"{name}: these are the layer's outputs; the input is what a forward pre-hook "
                                  "receives (args[0])")
            raise CheckFailed(f"{name}: differs from the per-channel max |x| over all tokens of all prompts "
                              f"(max abs difference {(value - ref.double()).abs().max().item():.3g}); "
                              "take |x| before the max, over every dim except the last")
    return f"per-channel input max |x| of all {len(expected)} linear layers over 3 unseen prompts; hooks removed"


@torch.no_grad()
def _output_absmax(model, prompts) -> dict[str, torch.Tensor]:
    """Per-channel max |y| of every linear layer's output: what a forward hook in place of a pre-hook sees."""
    seen, handles = {}, []

    def record(name):
        def hook(module, args, out):
            y = out.detach().reshape(-1, out.shape[-1]).abs().amax(0).double()
            seen[name] = y if name not in seen else torch.maximum(seen[name], y)
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(record(name)))
    try:
        for ids in prompts:
            model(torch.as_tensor(ids)[None])
    finally:
        for handle in handles:
            handle.remove()
    return seen
