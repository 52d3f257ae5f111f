"""Graded checks of lab 01, part 2: greedy choice, temperature, top-k, top-p and sampling.

Filters are judged by which tokens they keep; the sampler by the distribution it draws from.
"""
from __future__ import annotations

import torch

from inferlab import decoding as ref
from inferlab.checks import CheckFailed, as_tensor, expect, expect_close, graded, seeded_randn

# ----------------------------------------------------------------------------- helpers


def _unchanged(before: torch.Tensor, after: torch.Tensor, name: str) -> None:
    expect(torch.equal(before, after), f"{name} modified its input logits in place; return a new tensor "
                                       "(the caller may still need the original logits)")


def _kept_mask(out: torch.Tensor, logits: torch.Tensor, name: str) -> torch.Tensor:
    """Which tokens a filter kept; fails unless the others are exactly -inf and the kept ones unchanged."""
    out = as_tensor(out, name)
    expect(out.shape == logits.shape, f"{name} returned shape {tuple(out.shape)}, expected {tuple(logits.shape)}")
    kept = out != float("-inf")
    expect(not torch.isnan(out).any(), f"{name} returned NaN values")
    expect(torch.equal(out[kept].float(), logits[kept].float()),
           f"{name} changed the logits of the tokens it kept; only set the others to -inf")
    return kept


def _compare_masks(kept, expected, what: str) -> None:
    if torch.equal(kept, expected):
        return
    got, want = kept.sum(-1).tolist(), expected.sum(-1).tolist()
    if got != want:
        raise CheckFailed(f"{what}: kept {got} tokens per row, expected {want}")
    raise CheckFailed(f"{what}: kept the right number of tokens per row but not the right ones")


# ----------------------------------------------------------------------------- 2. samplers

def _random_logits(seed: int, shape, scale: float = 3.0) -> torch.Tensor:
    return seeded_randn(*shape, seed=seed, scale=scale)


@graded(hint="take the index of the largest logit along the last dimension (the vocabulary), "
             "one per row: logits.argmax(dim=-1)")
def check_greedy(greedy):
    logits = _random_logits(101, (5, 97))
    before = logits.clone()
    got = as_tensor(greedy(logits), "greedy")
    _unchanged(before, logits, "greedy")
    expect(got.shape == (5,), f"for logits of shape (5, 97) return 5 token ids (shape (5,)), got shape {tuple(got.shape)}")
    expect(torch.equal(got.long(), ref.greedy(logits)), "not the highest-scoring token of every row")
    single = as_tensor(greedy(logits[2]), "greedy")
    expect(single.numel() == 1 and int(single) == int(ref.greedy(logits[2])),
           "for one row of logits (shape (vocab,)) return that row's best token")
    tie = torch.zeros(1, 10)
    tie[0, 6] = tie[0, 3] = 2.0
    expect(int(as_tensor(greedy(tie), "greedy").reshape(-1)[0]) == 3,
           "with two equal best logits (ids 3 and 6), pick the lowest id, 3, as torch.argmax does")
    return "best token of each row of an unseen batch, one row alone, and a tie"


def _probs_of(z: torch.Tensor) -> torch.Tensor:
    return z.float().softmax(dim=-1)


@graded(hint="temperature scales the logits before softmax: return logits / temperature "
             "(not the probabilities, and not multiplied)")
def check_temperature(apply_temperature):
    logits = _random_logits(202, (3, 64))
    before = logits.clone()
    for t in (0.3, 1.0, 2.5, 1e-3):
        out = as_tensor(apply_temperature(logits, t), "apply_temperature")
        _unchanged(before, logits, "apply_temperature")
        expect(out.shape == logits.shape, f"returned shape {tuple(out.shape)}, expected {tuple(logits.shape)}")
        expect(torch.isfinite(out).all(), f"temperature {t}: returned non-finite values")
        want = _probs_of(ref.apply_temperature(logits, t))
        if not torch.allclose(_probs_of(out), want, rtol=1e-4, atol=1e-6):
            _temperature_diagnosis(out, logits, t)
        expect_close(_probs_of(out), want, f"softmax of your tempered logits at temperature {t}", rtol=1e-4, atol=1e-6)
    return "same distribution as logits / T for T = 0.3, 1, 2.5 and 0.001 on an unseen batch"


def _temperature_diagnosis(out: torch.Tensor, logits: torch.Tensor, t: float) -> None:
    out = out.float()
    if torch.allclose(out, _probs_of(logits / t), atol=1e-6):
        raise CheckFailed(f"temperature {t}: you returned probabilities; return the tempered logits (the sampler "
                          "applies softmax later)")
    if torch.allclose(out, logits * t, rtol=1e-5):
        raise CheckFailed(f"temperature {t}: you multiplied the logits by the temperature; a low temperature "
                          "must sharpen the distribution, so divide")
    if torch.allclose(out, _probs_of(logits) / t, atol=1e-6):
        raise CheckFailed(f"temperature {t}: you scaled the probabilities; scaling after softmax does not change "
                          "the distribution, scale the logits before it")


@graded(hint="find the k-th largest logit of each row (torch.topk(logits, k, dim=-1).values[..., -1:]) "
             "and set every logit below it to -inf; k <= 0 or k >= vocab keeps everything")
def check_top_k(top_k_filter):
    logits = _random_logits(303, (4, 80))
    before = logits.clone()
    for k in (1, 5, 37, 80, 0):
        out = top_k_filter(logits, k)
        _unchanged(before, logits, "top_k_filter")
        kept = _kept_mask(out, logits, f"top_k_filter(k={k})")
        want = ref.top_k_filter(logits, k) != float("-inf")
        _compare_masks(kept, want, f"top_k_filter(k={k})")
    one = _kept_mask(top_k_filter(logits[1], 3), logits[1], "top_k_filter on one row")
    _compare_masks(one, ref.top_k_filter(logits[1], 3) != float("-inf"), "top_k_filter(k=3) on one row")
    tied = torch.tensor([[0.5, 2.0, 3.0, 2.0, -1.0, 2.0]])       # three logits tie with the 2nd largest
    kept = _kept_mask(top_k_filter(tied.clone(), 2), tied, "top_k_filter with ties")
    if int(kept.sum()) == 2:
        raise CheckFailed("k=2 on a row where three logits tie with the 2nd largest: you kept exactly 2 tokens; "
                          "keep every token tied with the k-th largest logit (compare values, not positions)")
    _compare_masks(kept, ref.top_k_filter(tied, 2) != float("-inf"), "top_k_filter(k=2) with ties")
    return "right tokens kept per row for k = 1, 5, 37, vocab and 0 (off), batched, on one row and with ties"


def _nucleus_case() -> tuple[torch.Tensor, list[float]]:
    """Two rows with known probabilities, shuffled so vocabulary order is not rank order."""
    probs = torch.tensor([[0.45, 0.30, 0.15, 0.06, 0.04],
                          [0.70, 0.12, 0.08, 0.06, 0.04]])
    perm = torch.tensor([3, 0, 4, 1, 2])
    # Cumulative mass before each rank: row 0: 0, .45, .75, .90, .96; row 1: 0, .70, .82, .90, .96.
    # The values of p below sit at least 0.01 away from these, clear of float rounding.
    return probs[:, perm].log(), [0.6, 0.78, 0.85, 0.95, 1e-4]


@graded(hint="sort by probability, keep a token while the probability of the tokens ranked above it "
             "is still below p (so the token that crosses p stays), then put the mask back in vocabulary "
             "order; p >= 1 keeps everything")
def check_top_p(top_p_filter):
    small, ps = _nucleus_case()
    for p in ps:
        kept = _kept_mask(top_p_filter(small.clone(), p), small, f"top_p_filter(p={p})")
        want = ref.top_p_filter(small, p) != float("-inf")
        if not torch.equal(kept, want) and torch.equal(kept.sum(-1), want.sum(-1) - 1):
            raise CheckFailed(f"p={p}: one token too few per row; keep the token whose probability "
                              "carries the running sum across p")
        _compare_masks(kept, want, f"top_p_filter(p={p}) on known probabilities")
    logits = _random_logits(404, (3, 120), scale=2.0)
    before = logits.clone()
    for p in (0.5, 0.9, 1.0):
        out = top_p_filter(logits, p)
        _unchanged(before, logits, "top_p_filter")
        kept = _kept_mask(out, logits, f"top_p_filter(p={p})")
        _compare_masks(kept, ref.top_p_filter(logits, p) != float("-inf"), f"top_p_filter(p={p}) on an unseen batch")
    peaked = _random_logits(405, (2, 50), scale=25.0)  # tail probabilities far below float32 resolution
    kept = _kept_mask(top_p_filter(peaked, 1.0), peaked, "top_p_filter(p=1.0)")
    expect(bool(kept.all()), "p = 1.0 must keep every token, even those with tiny probability")
    sizes = [int(k) for k in (ref.top_p_filter(logits, 0.9) != float('-inf')).sum(-1)]
    return f"nucleus matches for p = 0.6, 0.78, 0.85, 0.95, 1e-4, 0.5, 0.9, 1.0 (unseen rows at p=0.9 keep {sizes} tokens)"


SAMPLE_CASES = [  # (temperature, top_k, top_p): each changes the distribution in its own way
    (1.0, 0, 1.0),
    (0.5, 0, 0.8),
    (1.6, 4, 1.0),
    # Both filters on: top-p alone would keep 7 tokens, top-k keeps 3. Whether top-p runs on what
    # top-k kept (vLLM, transformers) or beside it (the chapter's "intersection"), 3 tokens remain.
    (1.3, 3, 0.8),
]
SAMPLE_DRAWS = 20000
SAMPLE_TV_LIMIT = 0.03  # total variation; a correct sampler lands near 0.01 with 20,000 draws


@graded(hint="order: temperature, then top-k, then top-p on what top-k kept, then softmax and "
             "torch.multinomial(probs, 1, generator=generator); temperature 0 means greedy; "
             "return one id per row, shape logits.shape[:-1]")
def check_sample(sample):
    base = _random_logits(505, (12,), scale=1.5)
    batch = _random_logits(506, (6, 30))
    got = as_tensor(sample(batch, 0.0, 0, 1.0, torch.Generator().manual_seed(0)), "sample")
    expect(got.shape == (6,), f"for logits of shape (6, 30) return shape (6,), got {tuple(got.shape)}")
    expect(torch.equal(got.long(), ref.greedy(batch)), "temperature 0 must return the greedy tokens")
    one = as_tensor(sample(base, 1.0, 0, 1.0, torch.Generator().manual_seed(0)), "sample")
    expect(one.numel() == 1 and one.dim() == 0, f"for one row of logits return a single id (shape ()), got {tuple(one.shape)}")
    rows = base.expand(SAMPLE_DRAWS, -1).clone()
    a = as_tensor(sample(rows, 1.0, 0, 1.0, torch.Generator().manual_seed(7)), "sample")
    b = as_tensor(sample(rows, 1.0, 0, 1.0, torch.Generator().manual_seed(7)), "sample")
    expect(a.shape == (SAMPLE_DRAWS,), f"for logits of shape ({SAMPLE_DRAWS}, 12) return shape ({SAMPLE_DRAWS},), got {tuple(a.shape)}")
    expect(torch.equal(a, b), "two calls with generators seeded alike gave different tokens: draw with the "
                              "generator you are given (torch.multinomial(..., generator=generator))")
    for t, k, p in SAMPLE_CASES:
        z = ref.top_p_filter(ref.top_k_filter(ref.apply_temperature(base, t), k), p)
        want = z.softmax(-1)
        drawn = as_tensor(sample(rows, t, k, p, torch.Generator().manual_seed(11)), "sample").long().reshape(-1)
        expect(drawn.numel() == SAMPLE_DRAWS, f"returned {drawn.numel()} ids for {SAMPLE_DRAWS} rows")
        expect(bool(((drawn >= 0) & (drawn < base.numel())).all()), "returned ids outside the vocabulary")
        freq = torch.bincount(drawn, minlength=base.numel()).float() / SAMPLE_DRAWS
        outside = float(freq[want == 0].sum())
        expect(outside == 0.0, f"temperature={t}, top_k={k}, top_p={p}: {outside:.1%} of draws are tokens "
                               "the filters should have removed")
        tv = 0.5 * float((freq - want).abs().sum())
        expect(tv < SAMPLE_TV_LIMIT, f"temperature={t}, top_k={k}, top_p={p}: the sampled frequencies are "
                                     f"{tv:.3f} (total variation) away from the right distribution")
    return f"greedy at T=0, reproducible with a seeded generator, right distribution in {len(SAMPLE_CASES)} settings"
