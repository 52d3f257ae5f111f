"""Graded checks of lab 01 (anatomy of a request).

Every check runs the learner's function on inputs the notebook never shows (fixed seeds
here, edge cases, a batch dimension) and compares with the reference in
``inferlab.decoding``. Random samplers are judged by the distribution they draw from.
"""
from __future__ import annotations

import torch

from inferlab import decoding as ref
from inferlab import metrics
from inferlab.checks import CheckFailed, Exercise, expect, expect_close, expect_dict, graded
from inferlab.checks.anatomy.sampling import (check_greedy, check_sample, check_temperature, check_top_k,
                                              check_top_p)

LAB = "01-anatomy"

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
    expect_dict(got, ("ttft", "tpot", "itl", "e2el"))
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


EXERCISES = [
    Exercise(check_prompt_ids, ("build_prompt_ids",), ("tokenizer",)),
    Exercise(check_greedy, ("greedy",)),
    Exercise(check_temperature, ("apply_temperature",)),
    Exercise(check_top_k, ("top_k_filter",)),
    Exercise(check_top_p, ("top_p_filter",)),
    Exercise(check_sample, ("sample",)),
    Exercise(check_decode_with_cache, ("decode_with_cache",), ("model", "tokenizer")),
    Exercise(check_stream_text, ("stream_text",), ("tokenizer",)),
    Exercise(check_latency_metrics, ("latency_metrics",)),
]
