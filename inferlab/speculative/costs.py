"""The two numbers that predict a speed-up, measured: what a forward pass costs (a draft pass, a
target pass over the k + 1 tokens it verifies) and how often a draft's greedy token is the target's."""
from __future__ import annotations

import statistics
from typing import Sequence

import torch

from inferlab import timing


@torch.inference_mode()
def forward_costs(model, context: Sequence[int], sizes: Sequence[int], repeats: int = 5) -> dict[int, float]:
    """{n: median seconds of one forward pass of n new tokens over a KV cache holding ``context``}: a
    decode step for n = 1, a verification of k drafts for n = k + 1. The sizes are timed in turn, round
    by round (drift on a busy host hits them all alike), GPU work included; the cache is cut back after
    each pass, so every pass sees the same context."""
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive token counts, got {list(sizes)}")
    device = model.device
    cache = model(input_ids=torch.tensor([list(context)], device=device), use_cache=True).past_key_values

    def one_pass(n: int):
        feed = torch.full((1, n), int(context[-1]), device=device)     # the values do not change the time
        return lambda: (model(input_ids=feed, past_key_values=cache, use_cache=True), cache.crop(-n))

    samples = timing.interleaved({n: one_pass(n) for n in sizes}, repeats=repeats)
    return {n: statistics.median(samples[n]) for n in sizes}


def forward_seconds(model, context: Sequence[int], num_tokens: int, repeats: int = 5) -> float:
    """Median seconds of one forward pass of ``num_tokens`` new tokens (see ``forward_costs``)."""
    return forward_costs(model, context, [num_tokens], repeats)[num_tokens]


@torch.inference_mode()
def greedy_agreement(draft, prompt: Sequence[int], target_tokens: Sequence[int]) -> float:
    """Share of the target's greedy tokens that the draft's greedy choice matches, each given the
    target's text before it (one forward pass: the per-token acceptance a greedy verifier sees)."""
    ids = torch.tensor([list(prompt) + list(target_tokens)], device=draft.device)
    choices = draft(input_ids=ids).logits[0, len(prompt) - 1:-1].argmax(dim=-1)
    return float((choices == ids[0, len(prompt):]).float().mean())
