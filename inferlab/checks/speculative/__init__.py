"""Graded checks of lab 09, speculative decoding.

The references are ``inferlab.speculative``. The greedy decoder runs on a tiny random Llama in float64
with drafters the check controls (always right, always wrong, a seeded mix), so any difference from
plain greedy decoding is the learner's and its cause can be named. The sampling rule is run thousands
of times on small vocabularies and its output compared with the target's distribution by a
chi-square test whose false-alarm rate is about one in a million.
"""
from __future__ import annotations

import math
import random

import torch

from inferlab import speculative
from inferlab.checks import CheckFailed, Exercise, expect, graded, is_close
from inferlab.checks.speculative.harness import CountingModel, Drafter, chi2_limit, plain_greedy, tiny_model

LAB = "09-speculative"


# ----------------------------------------------------------------------------- prompt lookup

LOOKUP_CASES = [  # context, k, max_ngram, min_ngram, what the case is about
    ([1, 2, 3, 4, 1, 2], 2, 2, 1, "the tokens after the match are the draft"),
    ([7, 3, 5, 6, 7, 1, 5, 6, 7], 2, 3, 1, "the longest n-gram (up to max_ngram) is tried first"),
    ([1, 2, 3, 1, 2, 4, 1, 2], 1, 2, 2, "of several occurrences the earliest is taken, as vLLM does"),
    ([4, 4, 4], 3, 2, 2, "an earlier occurrence may overlap the suffix; the suffix itself does not count"),
    ([1, 2, 3, 1, 2], 5, 2, 2, "the draft stops where the context ends (fewer than k tokens)"),
    ([1, 9, 1], 3, 3, 2, "no n-gram of at least min_ngram tokens matches: an empty draft"),
    ([5, 2, 3, 4, 9, 1, 2, 3, 4, 8, 1, 2, 3, 4], 2, 3, 2, "n-grams longer than max_ngram are not used"),
    ([1, 2, 1, 2], 0, 2, 1, "k = 0: an empty draft"),
    ([3], 2, 2, 1, "a context of one token has nothing earlier to match"),
]


def _as_ids(draft, what) -> list[int]:
    try:
        return [int(t) for t in draft]
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: return a list of token ids, got {type(draft).__name__}") from None


@graded(hint="for n from max_ngram down to min_ngram, look for the context's last n tokens earlier in the "
             "context; the first n that occurs wins; take its earliest occurrence and return up to k tokens after it")
def check_prompt_lookup(propose_ngram) -> str:
    for context, k, hi, lo, rule in LOOKUP_CASES:
        got = _as_ids(propose_ngram(list(context), k, hi, lo), "propose_ngram")
        want = speculative.prompt_lookup(context, k, hi, lo)
        expect(got == want, f"context {context}, k={k}, max_ngram={hi}, min_ngram={lo}: got {got}, expected {want} "
                            f"-- {rule}")
    rng = random.Random(5)
    for _ in range(300):
        context = [rng.randrange(rng.choice([2, 3, 6])) for _ in range(rng.randint(1, 24))]
        k, lo = rng.randint(1, 5), rng.randint(1, 3)
        hi = rng.randint(lo, 4)
        got = _as_ids(propose_ngram(list(context), k, hi, lo), "propose_ngram")
        want = speculative.prompt_lookup(context, k, hi, lo)
        expect(got == want, f"context {context}, k={k}, max_ngram={hi}, min_ngram={lo}: got {got}, expected {want}")
    return f"{len(LOOKUP_CASES)} cases, one rule each, and 300 random contexts, the same drafts as vLLM's ngram proposer"


# ----------------------------------------------------------------------------- greedy draft and verify

def _run(fn, model, propose, prompt, n, k, eos=None):
    counting = CountingModel(model)
    kwargs = {} if eos is None else {"eos_token_id": eos}
    out = fn(counting, propose, torch.tensor(prompt), n, k, **kwargs)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise CheckFailed(f"speculative_greedy returns (tokens, steps), got {type(out).__name__}")
    tokens, steps = _as_ids(out[0], "tokens"), out[1]
    try:
        steps = [(int(d), int(a)) for d, a in steps]
    except (TypeError, ValueError):
        raise CheckFailed("steps: a list of (drafted, accepted) pairs, one per verification pass") from None
    return tokens, steps, counting


def _first_difference(got, want) -> int:
    return next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))


@graded(hint="prefill once; then each step feeds the last token and the draft in one forward pass, keeps the "
             "draft tokens that equal the target's argmax at the position before them, adds the target's own "
             "next token, and crops the KV cache to what was kept")
def check_speculative_greedy(speculative_greedy) -> str:
    model, n, k = tiny_model(), 24, 3
    prompt = torch.randint(0, 61, (10,), generator=torch.Generator().manual_seed(3)).tolist()
    greedy = plain_greedy(model, prompt, n)
    reference = speculative.speculative_greedy(CountingModel(model), Drafter(prompt, greedy, "right", 99), prompt, n, k)

    for mode in ("right", "wrong", "mixed"):
        drafter = Drafter(prompt, greedy, mode, 4 * n + 10, seed=1)
        tokens, steps, counting = _run(speculative_greedy, model, drafter, prompt, n, k)
        if tokens[:n] == greedy and len(tokens) > n:
            raise CheckFailed(f"{len(tokens)} tokens for max_new_tokens={n}: return exactly max_new_tokens tokens "
                              "(cut the last step's tokens)")
        if tokens != greedy:
            i = _first_difference(tokens, greedy)
            if mode == "right":
                raise CheckFailed(f"with drafts that are always right, token {i} is {tokens[i:i + 1]}, plain greedy "
                                  f"gives {greedy[i]}: draft token j is scored by the logits at the position before it "
                                  "(the last kept token for j = 0), and the cache must hold each kept token exactly once")
            if i < len(tokens) and tokens[i] in drafter.proposed.get(len(prompt) + i, ()):
                why = "a draft token the target disagrees with was kept: keep draft tokens only while they equal its argmax"
            else:
                why = "after a rejection the KV cache still holds the rejected draft tokens: crop it back to the tokens kept"
            raise CheckFailed(f"with {mode} drafts, token {i} differs from plain greedy decoding -- {why}")
        bad = [(d, a) for d, a in steps if not 0 <= a <= d <= k]
        expect(not bad, f"steps {bad[:3]}: each step drafts at most k = {k} tokens and accepts at most what it drafted")
        if mode == "right":
            expect(all(a == d for d, a in steps), f"with drafts that are always right, steps {steps[:6]}: every "
                                                   "drafted token is accepted -- draft token j is scored by the "
                                                   "logits at the position before it")
            expect(counting.forwards <= reference.target_forwards,
                   f"{counting.forwards} forward passes of the target for {n} tokens with drafts that are always "
                   f"right (k = {k}), expected {reference.target_forwards}: score the whole draft in one forward pass "
                   "and, when every draft token is accepted, keep the target's next token too (the bonus token)")
        if mode == "wrong":
            expect(all(a == 0 for _, a in steps), f"with drafts that are always wrong, steps {steps[:4]}: nothing "
                                                   "is accepted")
        expect(1 + sum(a + 1 for _, a in steps) >= len(tokens),
               f"steps {steps} account for {1 + sum(a + 1 for _, a in steps)} tokens (1 from the prefill, accepted + 1 "
               f"per step), but {len(tokens)} came out")
        expect(counting.fed <= len(prompt) + 2 * (k + 1) * counting.forwards,
               f"{counting.fed} tokens fed to the target for a prompt of {len(prompt)} and {n} new tokens: reuse the "
               "KV cache and feed only tokens it does not hold yet")
    eos = greedy[6]
    stop = greedy.index(eos)
    tokens, _, _ = _run(speculative_greedy, model, Drafter(prompt, greedy, "right", 4 * n + 10), prompt, n, k, eos)
    expect(tokens == greedy[:stop + 1], f"with eos_token_id={eos}: got {len(tokens)} tokens, expected "
                                        f"{stop + 1} -- stop after the first end-of-sequence token, also inside a draft")
    tokens, steps, _ = _run(speculative_greedy, model, Drafter(prompt, greedy, "right", 10), prompt, 1, k)
    expect(tokens == greedy[:1] and not steps, f"max_new_tokens=1: got {tokens} and {len(steps)} steps, expected "
                                               f"{greedy[:1]} from the prefill alone")
    return "the tokens of plain greedy decoding with right, wrong and mixed drafts; forward passes, the bonus " \
           "token, end of sequence and max_new_tokens=1"


# ----------------------------------------------------------------------------- speculative sampling

def _probs(rows, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, 6, generator=g, dtype=torch.float64) * 1.5
    return logits.softmax(-1)


def _sampling_cases():
    p, q = _probs(4, 1), _probs(3, 2)
    q_blind = q.clone()
    q_blind[:, 0] = 0                                       # the draft never proposes token 0
    q_blind /= q_blind.sum(-1, keepdim=True)
    p_blind = p.clone()
    p_blind[:3, 5] = 0                                      # the target never picks token 5 at draft positions
    p_blind /= p_blind.sum(-1, keepdim=True)
    return [("a draft unlike the target, k = 3", p, q),
            ("a draft that never proposes token 0", p, q_blind),
            ("a target that never picks token 5 the draft proposes", p_blind, q),
            ("a draft close to the target, k = 1", _probs(2, 3), 0.7 * _probs(2, 3)[:1] + 0.3 * _probs(1, 4))]


def _chi2(counts: torch.Tensor, probs: torch.Tensor) -> float:
    total = float(counts.sum())
    expected = probs * total
    seen = expected > 0
    if bool((counts[~seen] > 0).any()):
        return math.inf
    return float(((counts[seen] - expected[seen]) ** 2 / expected[seen]).sum())


@graded(hint="keep draft token x with probability min(1, p(x)/q(x)); at the first rejection emit a token drawn "
             "from max(0, p - q) normalised, and stop; if all k are kept, draw one more token from the target's last row")
def check_speculative_sampling(speculative_sample) -> str:
    trials = 4000
    for name, p, q in _sampling_cases():
        k = q.shape[0]
        gen, draw = torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)
        lengths = torch.zeros(k + 2)
        tokens = torch.zeros(k + 1, p.shape[1])
        for _ in range(trials):
            draft = [int(torch.multinomial(q[i], 1, generator=draw)) for i in range(k)]
            out = _as_ids(speculative_sample(p.clone(), q.clone(), torch.tensor(draft), gen), "speculative_sample")
            if not out:
                raise CheckFailed(f"{name}: nothing emitted -- a verification step always emits at least one token "
                                  "(on a rejection, the resampled one)")
            if len(out) > k + 1:
                raise CheckFailed(f"{name}: {len(out)} tokens emitted for k = {k}: at most k + 1 (stop at the first "
                                  "rejection)")
            if out[:-1] != draft[:len(out) - 1]:
                raise CheckFailed(f"{name}: emitted {out} for the draft {draft}: every token before the last must be "
                                  "an accepted draft token, unchanged -- a step ends at its first rejection")
            lengths[len(out)] += 1
            for i, t in enumerate(out):
                tokens[i, t] += 1
        keep = [speculative.acceptance_probability(p[i], q[i]) for i in range(k)]
        want_len = torch.tensor([0.0] + [math.prod(keep[:j]) * (1 - keep[j]) for j in range(k)] + [math.prod(keep)])
        if lengths[k + 1] == 0 and want_len[k + 1] > 0.02:
            raise CheckFailed(f"{name}: never {k + 1} tokens, though all {k} drafts are kept with probability "
                              f"{float(want_len[k + 1]):.2f} -- then the target's last row gives one more token (the bonus)")
        if _chi2(lengths[1:], want_len[1:]) > chi2_limit(k):
            share = (lengths[1:] / trials).tolist()
            raise CheckFailed(f"{name}: the number of tokens emitted (1 to {k + 1}) came out with frequencies "
                              f"{[round(s, 3) for s in share]}, expected {[round(float(w), 3) for w in want_len[1:]]} "
                              "-- the chance to keep a draft token must be min(1, p/q)")
        for i in range(k + 1):
            if _chi2(tokens[i], p[i]) > chi2_limit(p.shape[1] - 1):
                share = (tokens[i] / tokens[i].sum()).tolist()
                raise CheckFailed(f"{name}: tokens emitted at position {i} are not distributed as the target's p "
                                  f"(frequencies {[round(s, 3) for s in share]}, p {[round(float(x), 3) for x in p[i]]})"
                                  + (" -- a rejected position draws from max(0, p - q) normalised, not from p or q"
                                     if i < k else " -- the bonus token is drawn from the target's row after the last draft"))
    return f"{len(_sampling_cases())} target/draft pairs, {trials} steps each: emitted tokens distributed as the " \
           "target's, lengths as min(1, p/q) predicts"


# ----------------------------------------------------------------------------- the speed-up model

SPEEDUP_CASES = [(0.5, 0.1, 1), (0.0, 0.0, 4), (0.8, 0.05, 4), (0.8, 0.5, 8), (0.3, 0.2, 0), (0.95, 0.02, 16),
                 (1.0, 0.1, 3), (0.6, 1.0, 2)]


@graded(hint="a step emits the accepted draft tokens plus the target's own: 1 + alpha + ... + alpha^k on "
             "average; it costs k draft passes (c each) and one target pass, against one token per target pass")
def check_speedup_model(expected_tokens, predicted_speedup) -> str:
    try:
        at_one = expected_tokens(1.0, 3)
    except ZeroDivisionError:
        raise CheckFailed("expected_tokens(1.0, 3) divides by zero -- with alpha = 1 every draft token is kept, "
                          "so a step emits k + 1 tokens") from None
    expect(is_close(at_one, 4, 1e-9), f"expected_tokens(1.0, 3) = {at_one}, expected 4 -- with alpha = 1 every draft "
                                      "token is kept and the target adds one: k + 1")
    for alpha, c, k in SPEEDUP_CASES:
        got, want = expected_tokens(alpha, k), speculative.expected_tokens(alpha, k)
        if not is_close(got, want, 1e-9):
            why = ""
            if alpha < 1 and is_close(got, (1 - alpha ** k) / (1 - alpha), 1e-9):
                why = " -- the target adds its own token to every step, also when all k are kept (the bonus)"
            elif is_close(got, 1 + alpha * k, 1e-9):
                why = " -- draft token j is only kept if all tokens before it were kept: alpha^j, not alpha"
            raise CheckFailed(f"expected_tokens({alpha}, {k}) = {got:.4g}, expected {want:.4g}{why}")
        got, want = predicted_speedup(alpha, c, k), speculative.speedup(alpha, c, k)
        if not is_close(got, want, 1e-9):
            tokens = speculative.expected_tokens(alpha, k)
            why = ""
            if is_close(got, tokens, 1e-9):
                why = " -- a step also costs k draft passes of c each"
            elif k and c and is_close(got, tokens / (k * c), 1e-9):
                why = " -- a step costs the draft passes and one target pass"
            elif is_close(got, tokens / (c + 1), 1e-9):
                why = " -- the draft runs once per draft token: k passes"
            raise CheckFailed(f"predicted_speedup({alpha}, {c}, {k}) = {got:.4g}, expected {want:.4g}{why}")
    return f"{len(SPEEDUP_CASES)} (alpha, c, k) cases, alpha = 0, alpha = 1 and k = 0 included"


EXERCISES = [
    Exercise(check_prompt_lookup, ("propose_ngram",)),
    Exercise(check_speculative_greedy, ("speculative_greedy",)),
    Exercise(check_speculative_sampling, ("speculative_sample",)),
    Exercise(check_speedup_model, ("expected_tokens", "predicted_speedup")),
]
