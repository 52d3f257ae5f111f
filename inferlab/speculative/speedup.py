"""How much speculation buys: the expected tokens per target pass and the speed-up over plain decoding.

With a per-token acceptance rate alpha (each draft token kept independently with probability alpha),
k drafted tokens give (1 - alpha^(k+1)) / (1 - alpha) tokens per target pass on average; a step costs
k draft passes (c each, in units of one target decode step) plus one verification pass. The formulas
are Leviathan et al. (2023), section 3; ``verify`` and ``draft_rate`` are this course's additions for
what a CPU and a prompt-lookup drafter show: verifying k + 1 tokens may cost more than one step, and a
lookup may find nothing to propose.
"""
from __future__ import annotations

from typing import Sequence


def expected_tokens(alpha: float, k: int) -> float:
    """Tokens one verification step emits on average: the accepted drafts plus the target's one."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def speedup(alpha: float, c: float, k: int, verify: float = 1.0, draft_rate: float = 1.0) -> float:
    """Speed-up over plain decoding. c: a draft pass / a target decode step; verify: a verification pass
    of k + 1 tokens / a target decode step; draft_rate: share of steps where the drafter proposes."""
    tokens = draft_rate * expected_tokens(alpha, k) + (1 - draft_rate)
    cost = draft_rate * (k * c + verify) + (1 - draft_rate)
    return tokens / cost


def best_k(alpha: float, c: float, k_max: int = 16) -> int:
    """The draft length with the highest predicted speed-up (0: do not speculate)."""
    return max(range(k_max + 1), key=lambda k: (speedup(alpha, c, k), -k))


def estimate_alpha(drafted: Sequence[int], accepted: Sequence[int]) -> float:
    """Per-token acceptance rate from verification steps: tokens kept / tokens compared.

    A step compares its draft tokens up to and including the first rejection, so a step that kept a of
    d tokens made a comparisons that succeeded and, if a < d, one that failed (the geometric model's
    maximum-likelihood estimate). Steps with an empty draft say nothing about alpha.
    """
    kept = sum(accepted)
    compared = kept + sum(1 for d, a in zip(drafted, accepted) if a < d)
    return kept / compared if compared else float("nan")
