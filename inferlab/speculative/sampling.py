"""Speculative sampling (Leviathan et al., 2023; Chen et al., 2023): the rule that lets a draft's
guesses be kept without changing the target's output distribution.

At draft position i the draft sampled x from q_i. Keep it with probability min(1, p_i(x) / q_i(x));
otherwise emit a token drawn from the normalised positive part of p_i - q_i and stop. If all k drafts
are kept, emit one more token from p_k (the bonus). Whatever the draft, each emitted token is
distributed exactly as the target's p.
"""
from __future__ import annotations

import torch


def speculative_sample(target_probs: torch.Tensor, draft_probs: torch.Tensor, draft_tokens,
                       generator: torch.Generator | None = None) -> list[int]:
    """Tokens emitted by one verification step (1 to k + 1 of them).

    target_probs: (k + 1, vocab), the target's distribution at each draft position and after the last;
    draft_probs: (k, vocab), the draft's; draft_tokens: the k tokens the draft sampled.
    """
    out = []
    for i, x in enumerate(int(t) for t in draft_tokens):
        p, q = target_probs[i], draft_probs[i]
        if torch.rand((), generator=generator, dtype=torch.float64) * q[x] < p[x]:
            out.append(x)
            continue
        residual = (p - q).clamp(min=0)
        out.append(int(torch.multinomial(residual / residual.sum(), 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(target_probs[len(out)], 1, generator=generator)))
    return out


def acceptance_probability(p: torch.Tensor, q: torch.Tensor) -> float:
    """Chance that one draft token drawn from q is kept: the sum of min(p, q), i.e. 1 - total variation."""
    return float(torch.minimum(p, q).sum())
