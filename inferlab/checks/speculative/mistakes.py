"""Lab 09's catalogue: answers a learner could write, and what the checks must say to each."""
from __future__ import annotations

import torch

from inferlab.checks import right, wrong
from inferlab.checks.speculative import (check_prompt_lookup, check_speculative_greedy, check_speculative_sampling,
                                         check_speedup_model)
from inferlab.checks.speculative import attempts


# ----------------------------------------------------------------------------- prompt lookup

def _lookup(context, k, sizes, starts):
    for n in sizes:
        suffix = context[-n:]
        for start in starts(len(context), n):
            if context[start:start + n] == suffix:
                return context[start + n:start + n + k]
    return []


def lookup_latest(context, k, hi, lo):
    return _lookup(context, k, range(min(hi, len(context) - 1), lo - 1, -1), lambda L, n: range(L - n - 1, -1, -1))


def lookup_shortest_first(context, k, hi, lo):
    return _lookup(context, k, range(lo, min(hi, len(context) - 1) + 1), lambda L, n: range(L - n))


def lookup_no_overlap(context, k, hi, lo):
    return _lookup(context, k, range(min(hi, len(context) - 1), lo - 1, -1), lambda L, n: range(L - 2 * n + 1))


def lookup_ignores_min(context, k, hi, lo):
    return _lookup(context, k, range(min(hi, len(context) - 1), 0, -1), lambda L, n: range(L - n))


def lookup_ignores_max(context, k, hi, lo):
    return _lookup(context, k, range(len(context) - 1, lo - 1, -1), lambda L, n: range(L - n))


def lookup_returns_the_match(context, k, hi, lo):
    for n in range(min(hi, len(context) - 1), lo - 1, -1):
        for start in range(len(context) - n):
            if context[start:start + n] == context[-n:]:
                return context[start:start + k]
    return []


def lookup_by_index(context, k, hi, lo):
    """Right: index every n-gram's first position once, then look the suffixes up."""
    for n in range(min(hi, len(context) - 1), lo - 1, -1):
        first = {}
        for start in range(len(context) - n):
            first.setdefault(tuple(context[start:start + n]), start)
        found = first.get(tuple(context[-n:]))
        if found is not None:
            return context[found + n:found + n + k]
    return []


def lookup_with_tensors(context, k, hi, lo):
    """Right: compare windows with torch.unfold."""
    ids = torch.tensor(context)
    for n in range(min(hi, len(context) - 1), lo - 1, -1):
        windows = ids[:-1].unfold(0, n, 1) if len(context) - 1 >= n else ids[:0].reshape(0, n)
        hits = (windows == ids[-n:]).all(dim=1).nonzero()
        if len(hits):
            start = int(hits[0])
            return ids[start + n:start + n + k].tolist()
    return []


# ----------------------------------------------------------------------------- the speed-up model

def tokens_no_bonus(alpha, k):
    return k + 1.0 if alpha == 1 else (1 - alpha ** k) / (1 - alpha)


def tokens_linear(alpha, k):
    return 1 + alpha * k


def tokens_divides_by_zero(alpha, k):
    return (1 - alpha ** (k + 1)) / (1 - alpha)


def tokens_k_at_one(alpha, k):
    return float(k) if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


def tokens_by_sum(alpha, k):
    """Right: the series summed term by term."""
    return float(sum(alpha ** j for j in range(k + 1)))


def _tokens(alpha, k):
    return k + 1.0 if alpha == 1 else (1 - alpha ** (k + 1)) / (1 - alpha)


def speedup_no_draft_cost(alpha, c, k):
    return _tokens(alpha, k)


def speedup_no_verification(alpha, c, k):
    return _tokens(alpha, k) / (k * c)


def speedup_one_draft_pass(alpha, c, k):
    return _tokens(alpha, k) / (c + 1)


def speedup_inverted(alpha, c, k):
    return (k * c + 1) / _tokens(alpha, k)


def speedup_by_time(alpha, c, k, step=0.02):
    """Right: tokens per second with and without speculation, for a made-up step time."""
    return (_tokens(alpha, k) / ((k * c + 1) * step)) / (1 / step)


CATALOGUE = [
    wrong(check_prompt_lookup, "the earliest is taken", lookup_latest),
    wrong(check_prompt_lookup, "longest n-gram", lookup_shortest_first),
    wrong(check_prompt_lookup, "may overlap the suffix", lookup_no_overlap),
    wrong(check_prompt_lookup, "min_ngram", lookup_ignores_min),
    wrong(check_prompt_lookup, "longer than max_ngram are not used", lookup_ignores_max),
    wrong(check_prompt_lookup, "the tokens after the match", lookup_returns_the_match),
    right(check_prompt_lookup, lookup_by_index),
    right(check_prompt_lookup, lookup_with_tensors),

    wrong(check_speculative_greedy, "crop it back", attempts.greedy_no_rollback),
    wrong(check_speculative_greedy, "the position before it", attempts.greedy_scores_with_next_position),
    wrong(check_speculative_greedy, "disagrees with was kept", attempts.greedy_keeps_every_draft),
    wrong(check_speculative_greedy, "at least one token, the target's own", attempts.greedy_no_token_after_rejection),
    wrong(check_speculative_greedy, "the bonus token", attempts.greedy_drops_bonus),
    wrong(check_speculative_greedy, "at least one token", attempts.greedy_never_adds_a_token_after_full_acceptance),
    wrong(check_speculative_greedy, "exactly once", attempts.greedy_drops_bonus_keeps_its_kv),
    wrong(check_speculative_greedy, "in one forward pass", attempts.greedy_one_pass_per_token),
    wrong(check_speculative_greedy, "reuse the KV cache", attempts.greedy_without_cache),
    wrong(check_speculative_greedy, "accepts at most what it drafted", attempts.greedy_counts_bonus_as_accepted),
    wrong(check_speculative_greedy, "end-of-sequence", attempts.greedy_ignores_eos),
    wrong(check_speculative_greedy, "return exactly max_new_tokens", attempts.greedy_overshoots),
    wrong(check_speculative_greedy, "from the prefill alone", attempts.greedy_always_verifies_once),
    right(check_speculative_greedy, attempts.greedy_uncapped_then_cut),
    right(check_speculative_greedy, attempts.greedy_vectorised),

    wrong(check_speculative_sampling, "min(1, p/q)", attempts.sample_accepts_with_p),
    wrong(check_speculative_sampling, "min(1, p/q)", attempts.sample_accepts_with_q_over_p),
    wrong(check_speculative_sampling, "min(1, p/q)", attempts.sample_accepts_if_p_at_least_q),
    wrong(check_speculative_sampling, "min(1, p/q)", attempts.sample_accepts_the_argmax),
    wrong(check_speculative_sampling, "not from p or q", attempts.sample_resamples_from_p),
    wrong(check_speculative_sampling, "not from p or q", attempts.sample_resamples_from_q),
    wrong(check_speculative_sampling, "not distributed as the target's p", attempts.sample_resamples_from_abs_difference),
    wrong(check_speculative_sampling, "not distributed as the target's p", attempts.sample_residual_not_normalised),
    wrong(check_speculative_sampling, "always emits at least one token", attempts.sample_no_token_after_rejection),
    wrong(check_speculative_sampling, "(the bonus)", attempts.sample_no_bonus),
    wrong(check_speculative_sampling, "the target's row after the last draft", attempts.sample_bonus_from_previous_row),
    wrong(check_speculative_sampling, "ends at its first rejection", attempts.sample_continues_after_rejection),
    wrong(check_speculative_sampling, "min(1, p/q)", attempts.sample_one_uniform_per_step),
    right(check_speculative_sampling, attempts.sample_gumbel),
    right(check_speculative_sampling, attempts.sample_inverse_cdf),

    wrong(check_speedup_model, "the bonus", tokens_no_bonus),
    wrong(check_speedup_model, "alpha^j, not alpha", tokens_linear),
    wrong(check_speedup_model, "divides by zero", tokens_divides_by_zero),
    wrong(check_speedup_model, "k + 1", tokens_k_at_one),
    wrong(check_speedup_model, "k draft passes of c each", predicted_speedup=speedup_no_draft_cost),
    wrong(check_speedup_model, "one target pass", predicted_speedup=speedup_no_verification),
    wrong(check_speedup_model, "k passes", predicted_speedup=speedup_one_draft_pass),
    wrong(check_speedup_model, "expected", predicted_speedup=speedup_inverted),
    right(check_speedup_model, tokens_by_sum),
    right(check_speedup_model, predicted_speedup=speedup_by_time),
]
