"""Graded checks of lab 01 (anatomy of a request).

Every check runs the learner's function on inputs the notebook never shows (fixed seeds
here, edge cases, a batch dimension) and compares with the reference in
``inferlab.decoding``. Random samplers are judged by the distribution they draw from.
"""
from __future__ import annotations

import torch

from inferlab import decoding as ref
from inferlab import metrics
from inferlab.checks import CheckFailed, as_tensor, expect, expect_close, graded

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


# ----------------------------------------------------------------------------- 1. the prompt

UNSEEN_CONVERSATIONS = [
    [{"role": "user", "content": "Name three prime numbers larger than 50."}],
    [{"role": "system", "content": "You answer in French, in one sentence."},
     {"role": "user", "content": "Quelle est la capitale du Canada ?"}],
    [{"role": "user", "content": "Hi! 👋"},
     {"role": "assistant", "content": "Hello, how can I help?"},
     {"role": "user", "content": "Translate 'naïve café' into German."}],
]


def _reference_prompt_ids(tokenizer, messages, add_generation_prompt=True) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _as_id_list(ids) -> list[int]:
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        raise CheckFailed("returned a dict (a BatchEncoding); return the list of token ids itself, "
                          "e.g. its ['input_ids']")
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise CheckFailed(f"returned a tensor of shape {tuple(ids.shape)}; return a flat list of ids")
        return [int(i) for i in ids]
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, int) for i in ids):
        raise CheckFailed(f"return a flat list of int token ids, got {type(ids).__name__}"
                          + (" of lists" if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], list) else ""))
    return list(ids)


@graded(hint="render the messages with tokenizer.apply_chat_template(messages, tokenize=False, "
             "add_generation_prompt=True), then tokenize that string without adding special tokens")
def check_prompt_ids(build_prompt_ids, tokenizer):
    for messages in UNSEEN_CONVERSATIONS:
        got = _as_id_list(build_prompt_ids(tokenizer, [dict(m) for m in messages]))
        want = _reference_prompt_ids(tokenizer, messages)
        if got == want:
            continue
        if got == _reference_prompt_ids(tokenizer, messages, add_generation_prompt=False):
            raise CheckFailed("the prompt stops after the last user turn: add the generation prompt "
                              "(the opening of the assistant turn) so the model answers as the assistant")
        if len(got) > len(want) and got[-len(want):] == want:
            raise CheckFailed(f"{len(got) - len(want)} extra token(s) in front of the template's tokens: "
                              "the template already holds its special tokens, do not add them again")
        raise CheckFailed(f"ids differ from the chat template's for an unseen conversation of {len(messages)} "
                          f"message(s) ({len(got)} ids, expected {len(want)})")
    with_prompt = tokenizer.apply_chat_template(UNSEEN_CONVERSATIONS[0], tokenize=False, add_generation_prompt=True)
    without = tokenizer.apply_chat_template(UNSEEN_CONVERSATIONS[0], tokenize=False, add_generation_prompt=False)
    header = with_prompt[len(without):] if with_prompt.startswith(without) else ""
    return (f"{len(UNSEEN_CONVERSATIONS)} unseen conversations tokenized like the chat template, "
            f"each ending with the assistant header {header!r}")


# ----------------------------------------------------------------------------- 2. samplers

def _random_logits(seed: int, shape, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


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
        expect_close(_probs_of(out), _probs_of(ref.apply_temperature(logits, t)),
                     f"softmax of your tempered logits at temperature {t}", rtol=1e-4, atol=1e-6)
    return "same distribution as logits / T for T = 0.3, 1, 2.5 and 0.001 on an unseen batch"


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


# ----------------------------------------------------------------------------- 3. the decode loop

DECODE_PROMPT = [{"role": "user", "content": "List the planets of the solar system, one per line."}]
DECODE_TOKENS = 12


class _ForwardRecorder:
    """Records the number of token positions of every forward pass (via the embedding layer)."""

    def __init__(self, model):
        self.lengths: list[int] = []
        self.handle = model.get_input_embeddings().register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        if args and hasattr(args[0], "shape"):
            self.lengths.append(int(args[0].shape[-1]))

    def remove(self):
        self.handle.remove()


def _greedy_margin_ok(model, prompt_ids, tokens, allowed=None) -> int | None:
    """Teacher forcing without a cache: index of the first token that is not the best choice, or None."""
    ids = torch.tensor([list(prompt_ids) + list(tokens)], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits[0].float()
    steps = logits[len(prompt_ids) - 1: len(prompt_ids) - 1 + len(tokens)]
    if allowed is not None:
        steps = steps.masked_fill(~allowed.to(steps.device), float("-inf"))
    # float32: the cached and uncached paths agree to ~1e-4. Half precision can move a logit by a
    # few tenths between the two paths, enough to flip a near-tie but not a wrong loop's choices.
    tol = 1e-3 if next(model.parameters()).dtype == torch.float32 else 0.5
    for i, tok in enumerate(tokens):
        if float(steps[i].max() - steps[i, tok]) > tol:
            return i
    return None


@graded(hint="prefill: call model(input_ids=all prompt ids, use_cache=True) once; then each step feeds only the "
             "newest token with past_key_values=out.past_key_values; pick from out.logits[:, -1, :]; yield each "
             "token id as soon as it is picked; stop after max_new_tokens or after yielding eos_token_id")
def check_decode_with_cache(decode_with_cache, model, tokenizer):
    prompt = _reference_prompt_ids(tokenizer, DECODE_PROMPT)
    n = DECODE_TOKENS
    recorder = _ForwardRecorder(model)
    try:
        with torch.no_grad():
            stream = iter(decode_with_cache(model, list(prompt), n, ref.greedy))
            first = next(stream)
            calls_at_first = len(recorder.lengths)
            tokens = [first] + list(stream)
    finally:
        recorder.remove()
    lengths = recorder.lengths
    try:
        tokens = [int(t) for t in tokens]
    except (TypeError, ValueError):
        raise CheckFailed("yield plain token ids (int), one per step") from None
    expect(len(tokens) == n, f"asked for {n} new tokens (no eos_token_id), got {len(tokens)}")
    expect(lengths and lengths[0] == len(prompt),
           f"the first forward pass saw {lengths[0] if lengths else 0} positions; prefill must run the whole "
           f"prompt ({len(prompt)} tokens) in one pass")
    later = lengths[1:]
    if any(length != 1 for length in later):
        raise CheckFailed(f"decode steps fed {later[:4]}... positions; with the KV cache each step feeds only the "
                          "newest token, the earlier ones are already in past_key_values")
    expect(len(later) in (n - 1, n), f"{len(later)} decode passes for {n} tokens; expected {n - 1} "
                                     "(the first token comes from prefill)")
    expect(calls_at_first == 1, "the first token was not handed out right after prefill: yield each token as "
                                "soon as it is picked (make the function a generator) so it can be streamed")
    wrong = _greedy_margin_ok(model, prompt, tokens)
    expect(wrong is None, f"token {wrong} is not the greedy choice given the tokens before it; is the cache "
                          "passed along and the new token appended each step?")
    vocab = model.get_output_embeddings().weight.shape[0]
    allowed = torch.arange(vocab) % 3 == 0

    def pick_multiple_of_3(logits):
        return logits.masked_fill(~allowed.to(logits.device), float("-inf")).argmax(dim=-1)

    with torch.no_grad():
        picked = [int(t) for t in decode_with_cache(model, list(prompt), 6, pick_multiple_of_3)]
    expect(len(picked) == 6 and all(t % 3 == 0 for t in picked),
           "the tokens do not come from the `pick` function you were given; call pick(logits) each step")
    expect(_greedy_margin_ok(model, prompt, picked, allowed) is None,
           "with a custom pick the continuation is not what pick chooses step by step")
    eos = tokens[4]
    with torch.no_grad():
        stopped = [int(t) for t in decode_with_cache(model, list(prompt), n, ref.greedy, eos_token_id=eos)]
    want = tokens[: tokens.index(eos) + 1]
    expect(stopped == want, f"with eos_token_id={eos} expected {len(want)} tokens ending with it, got {len(stopped)}")
    return (f"greedy continuation of an unseen prompt: 1 prefill pass of {len(prompt)} tokens, then "
            f"{len(later)} passes of 1 token; tokens streamed as picked; custom pick and eos respected")


# ----------------------------------------------------------------------------- 4. streaming

STREAM_TEXTS = [
    "Prix : 12 € — très bien 👍🏽 merci",
    "東京で会いましょう 🚀 ok",
    "naïve café\n\ttwo  spaces",
]


class _Feed:
    """An iterator over token ids that counts how many the consumer has taken."""

    def __init__(self, ids):
        self.ids, self.taken = list(ids), 0

    def __iter__(self):
        for token in self.ids:
            self.taken += 1
            yield token


def _run_stream(stream_text, tokenizer, ids):
    feed = _Feed(ids)
    deltas, taken_at = [], []
    for delta in stream_text(tokenizer, iter(feed)):
        expect(isinstance(delta, str), f"yield strings (text deltas), got {type(delta).__name__}")
        deltas.append(delta)
        taken_at.append(feed.taken)
    return deltas, taken_at


@graded(hint="keep all ids; after each new id decode a window of them, emit only the text beyond what was "
             "already emitted, and hold back while the decoded text ends with '\\ufffd' (an incomplete "
             "character); at the end emit whatever is still held")
def check_stream_text(stream_text, tokenizer):
    pieces = 0
    for text in STREAM_TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        want = tokenizer.decode(ids)
        deltas, taken_at = _run_stream(stream_text, tokenizer, ids)
        joined = "".join(deltas)
        bad = [d for d in deltas if "\ufffd" in d]
        if bad:
            raise CheckFailed(f"a delta holds a broken character ({bad[0]!r}): a multi-byte character was "
                              "emitted before all its tokens arrived")
        expect(joined == want, f"the deltas join to {joined!r}, expected {want!r}")
        nonempty = [t for d, t in zip(deltas, taken_at) if d]
        expect(len(nonempty) >= 3 and nonempty[0] < len(ids),
               "the text came out only at the end: yield each delta as soon as its tokens arrive "
               "(iterate over token_ids lazily, do not collect them all first)")
        pieces += len(nonempty)
    ids = tokenizer.encode("ok 🎉", add_special_tokens=False)
    cut = ids[:-1]
    deltas, _ = _run_stream(stream_text, tokenizer, cut)
    expect("".join(deltas) == tokenizer.decode(cut),
           "when the stream ends in the middle of a character, emit what is held back at the end, so that the "
           "deltas still join to tokenizer.decode(all ids)")
    expect(list(_run_stream(stream_text, tokenizer, [])[0]) in ([], [""]), "an empty stream must yield no text")
    return (f"{len(STREAM_TEXTS)} unseen texts (accents, emoji, CJK, spaces) streamed in {pieces} deltas, "
            "no broken characters, and a stream cut mid-character")


# ----------------------------------------------------------------------------- 5. latency

@graded(hint="ttft = timestamps[0] - t_start; e2el = timestamps[-1] - t_start; itl = the n-1 gaps between "
             "consecutive timestamps; tpot = (e2el - ttft) / (n - 1), None when n == 1")
def check_latency_metrics(latency_metrics):
    t0 = 250.0
    stamps = [250.41, 250.44, 250.50, 250.53, 250.83, 250.86]
    got = latency_metrics(list(stamps), t0)
    want = metrics.latency_metrics(stamps, t0)
    expect(isinstance(got, dict), f"return a dict with ttft, tpot, itl and e2el, got {type(got).__name__}")
    missing = [key for key in ("ttft", "tpot", "itl", "e2el") if key not in got]
    expect(not missing, f"missing keys: {missing}")
    expect_close(got["ttft"], want["ttft"], "ttft (from t_start to the first token)")
    expect_close(got["e2el"], want["e2el"], "e2el (from t_start to the last token)")
    expect(len(got["itl"]) == len(stamps) - 1,
           f"itl has {len(got['itl'])} gaps for {len(stamps)} tokens; the first token has no gap before it")
    expect_close(list(got["itl"]), want["itl"], "itl (gaps between consecutive tokens)")
    expect(got["tpot"] is not None, "tpot is None for 6 tokens")
    expect_close(got["tpot"], want["tpot"], "tpot ((e2el - ttft) / (n - 1): the first token is not counted)")
    single = latency_metrics([3.5], 3.0)
    expect_close(single["ttft"], 0.5, "ttft for a single token")
    expect(single["tpot"] is None and list(single["itl"]) == [],
           "with a single token there is no gap: tpot must be None and itl empty")
    return "ttft, e2el, tpot and itl of an unseen request with a stall, and of a single-token request"
