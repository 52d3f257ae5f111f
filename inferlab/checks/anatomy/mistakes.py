"""Lab 01's catalogue: answers a learner could write, and what the checks must say to each.

Each wrong answer is one plausible mistake; the words after it are what its FAIL line must
contain. The right answers are correct but written differently from the solution.
"""
from __future__ import annotations

import torch

from inferlab import decoding as ref
from inferlab.checks import right, wrong
from inferlab.checks.anatomy import (check_decode_with_cache, check_greedy, check_latency_metrics, check_prompt_ids,
                                     check_sample, check_stream_text, check_temperature, check_top_k, check_top_p)


def prompt_no_generation_prompt(tokenizer, messages):
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_batch_encoding(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def prompt_no_template(tokenizer, messages):
    return tokenizer(messages[-1]["content"])["input_ids"]


def prompt_extra_bos(tokenizer, messages):
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_last_message_only(tokenizer, messages):
    text = tokenizer.apply_chat_template(messages[-1:], tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def greedy_flat(logits):
    return logits.argmax()


def greedy_dim0(logits):
    return logits.argmax(dim=0)


def greedy_argmin(logits):
    return logits.argmin(dim=-1)


def greedy_last_tie(logits):
    return logits.shape[-1] - 1 - logits.flip(-1).argmax(dim=-1)


def greedy_by_sampling(logits):
    probs = logits.softmax(-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(0)).reshape(logits.shape[:-1])


def temperature_after_softmax(logits, t):
    return logits.softmax(-1) / t


def temperature_multiplied(logits, t):
    return logits * t


def temperature_in_place(logits, t):
    return logits.div_(t)


def temperature_probabilities(logits, t):
    return (logits / t).softmax(-1)


def make_top_k(extra=0, largest=True, fill=float("-inf"), whole_batch=False, in_place=False, off_switch=True):
    """A top-k filter from the right pieces with one thing changed."""
    def top_k_filter(logits, k):
        vocab = logits.shape[-1]
        if off_switch and (k <= 0 or k >= vocab):
            return logits if in_place else logits.clone()
        k = min(max(k, 1) + extra, vocab)
        if whole_batch:
            kth = torch.topk(logits.reshape(-1), k).values[-1]
        else:
            kth = torch.topk(logits, k, dim=-1, largest=largest).values[..., -1:]
        drop = logits < kth if largest else logits > kth
        return logits.masked_fill_(drop, fill) if in_place else logits.masked_fill(drop, fill)
    return top_k_filter


def top_k_exactly_k(logits, k):
    """Keeps k positions (topk's indices), dropping logits tied with the k-th: the docstring keeps ties."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    index = torch.topk(logits, k, dim=-1).indices
    return torch.full_like(logits, float("-inf")).scatter(-1, index, logits.gather(-1, index))


def top_k_by_sorting(logits, k):
    """A different correct answer: the k-th value from a full sort, ties kept."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = logits.sort(dim=-1, descending=True).values[..., k - 1:k]
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))


def make_top_p(through=False, scores="probs", sort=True, unsort=True, protect_best=True):
    """A top-p filter from the right pieces with one thing changed."""
    def top_p_filter(logits, p):
        if p >= 1.0:
            return logits.clone()
        z, order = logits.sort(dim=-1, descending=True) if sort else (logits, None)
        if scores == "probs":
            s = z.softmax(-1)
        else:                                   # normalised logits, not probabilities
            s = z - z.min(-1, keepdim=True).values
            s = s / s.sum(-1, keepdim=True)
        drop = s.cumsum(-1) > p if through else (s.cumsum(-1) - s) >= p
        if protect_best:
            drop[..., 0] = False
        if sort and unsort:
            drop = torch.zeros_like(drop).scatter(-1, order, drop)
        return logits.masked_fill(drop, float("-inf"))
    return top_p_filter


def make_sampler(order="tkp", use_generator=True, squeeze=True, greedy_at_zero=True):
    """A sampler built from the reference filters, with one thing changed."""
    def sample(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None):
        if temperature == 0 and greedy_at_zero:
            return logits.argmax(-1)
        z = logits.float()
        steps = {"t": lambda x: ref.apply_temperature(x, temperature),
                 "k": lambda x: ref.top_k_filter(x, top_k),
                 "p": lambda x: ref.top_p_filter(x, top_p),
                 "s": lambda x: (x.softmax(-1) / temperature).log()}  # temperature after softmax: a no-op
        for step in order:
            z = steps[step](z)
        probs = z.softmax(-1).reshape(-1, z.shape[-1])
        ids = torch.multinomial(probs, 1, generator=generator if use_generator else None)
        return ids.reshape(logits.shape[:-1]) if squeeze else ids
    return sample


def sample_intersection(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None):
    """top-k and top-p computed independently on the tempered logits, kept set = intersection."""
    if temperature == 0:
        return logits.argmax(-1)
    z = ref.apply_temperature(logits.float(), temperature)
    keep = (ref.top_k_filter(z, top_k) != float("-inf")) & (ref.top_p_filter(z, top_p) != float("-inf"))
    probs = z.masked_fill(~keep, float("-inf")).softmax(-1).reshape(-1, z.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


@torch.inference_mode()
def decode_no_cache(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    ids = list(input_ids)
    for step in range(max_new_tokens):
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
        token = int(pick(out.logits[:, -1, :]))
        yield token
        ids.append(token)
        if token == eos_token_id:
            return


@torch.inference_mode()
def decode_prefill_token_by_token(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    cache = None
    for token in input_ids:
        out = model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True)
        cache = out.past_key_values
    for step in range(max_new_tokens):
        next_id = pick(out.logits[:, -1, :]).reshape(1, 1)
        yield int(next_id)
        if int(next_id) == eos_token_id or step == max_new_tokens - 1:
            return
        out = model(input_ids=next_id, past_key_values=out.past_key_values, use_cache=True)


@torch.inference_mode()
def decode_returns_list(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    return list(ref.generate_tokens(model, input_ids, max_new_tokens, pick, eos_token_id))


@torch.inference_mode()
def decode_ignores_pick(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    yield from ref.generate_tokens(model, input_ids, max_new_tokens, ref.greedy, eos_token_id)


@torch.inference_mode()
def decode_ignores_eos(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    yield from ref.generate_tokens(model, input_ids, max_new_tokens, pick, None)


@torch.inference_mode()
def decode_drops_eos(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    for token in ref.generate_tokens(model, input_ids, max_new_tokens, pick, eos_token_id):
        if token == eos_token_id:
            return
        yield token


@torch.inference_mode()
def decode_forgets_cache(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    out = model(input_ids=torch.tensor([list(input_ids)]), use_cache=True)
    for step in range(max_new_tokens):
        next_id = pick(out.logits[:, -1, :]).reshape(1, 1)
        yield int(next_id)
        if int(next_id) == eos_token_id or step == max_new_tokens - 1:
            return
        out = model(input_ids=next_id, use_cache=True)          # no past_key_values: the context is lost


def stream_token_by_token(tokenizer, token_ids):
    for token in token_ids:
        yield tokenizer.decode([token])


def stream_all_at_end(tokenizer, token_ids):
    yield tokenizer.decode(list(token_ids))


def stream_no_hold(tokenizer, token_ids):
    ids, sent = [], ""
    for token in token_ids:
        ids.append(token)
        text = tokenizer.decode(ids)
        yield text[len(sent):]
        sent = text


def stream_no_flush(tokenizer, token_ids):
    ids, sent = [], ""
    for token in token_ids:
        ids.append(token)
        text = tokenizer.decode(ids)
        if not text.endswith("\ufffd"):
            yield text[len(sent):]
            sent = text


def stream_lags_to_the_end(tokenizer, token_ids):
    ids = []
    for token in token_ids:
        ids.append(token)
    yield from stream_no_flush(tokenizer, iter(ids))


def stream_drops_replacement(tokenizer, token_ids):
    for token in token_ids:
        yield tokenizer.decode([token]).replace("\ufffd", "")


def make_latency(tpot="right", itl_from_start=False, absolute=False):
    """latency_metrics from the right pieces with one thing changed."""
    def latency_metrics(timestamps, t_start):
        n = len(timestamps)
        origin = 0.0 if absolute else t_start                     # absolute: clock readings, not durations
        ttft, e2el = timestamps[0] - origin, timestamps[-1] - origin
        stamps = ([t_start] if itl_from_start else []) + list(timestamps)
        itl = [b - a for a, b in zip(stamps, stamps[1:])]
        if tpot == "mean_itl":
            value = sum(itl) / len(itl)
        elif tpot == "zero_for_one":
            value = (e2el - ttft) / max(n - 1, 1)
        elif tpot == "crash":
            value = (e2el - ttft) / (n - 1)                        # divides by zero for one token
        elif n == 1:
            value = None
        else:
            value = {"right": e2el - ttft, "over_n": (e2el - ttft) * (n - 1) / n, "e2el": e2el}[tpot] / (n - 1)
        return {"ttft": ttft, "e2el": e2el, "itl": itl, "tpot": value}
    return latency_metrics


def stream_full_prefix(tokenizer, token_ids):
    """Right but slow: decodes the whole list every time."""
    ids, sent = [], ""
    for token in token_ids:
        ids.append(token)
        text = tokenizer.decode(ids)
        if not text.endswith("\ufffd"):
            yield text[len(sent):]
            sent = text
    text = tokenizer.decode(ids)
    if len(text) > len(sent):
        yield text[len(sent):]


def temperature_log_softmax(logits, t):
    """Right: log_softmax(z / T) differs from z / T by a constant per row, the same distribution."""
    return (logits / t).log_softmax(-1)



CATALOGUE = [
    wrong(check_prompt_ids, "add the generation prompt", prompt_no_generation_prompt),
    wrong(check_prompt_ids, "returned a dict (a BatchEncoding)", prompt_batch_encoding),
    wrong(check_prompt_ids, "ids differ from the chat template's", prompt_no_template),
    wrong(check_prompt_ids, "do not add them again", prompt_extra_bos),
    wrong(check_prompt_ids, "ids differ from the chat template's for an unseen conversation of 2", prompt_last_message_only),
    wrong(check_greedy, "return 5 token ids (shape (5,)), got shape ()", greedy_flat),
    wrong(check_greedy, "got shape (97,)", greedy_dim0),
    wrong(check_greedy, "not the highest-scoring token", greedy_argmin),
    wrong(check_greedy, "pick the lowest id", greedy_last_tie),
    wrong(check_greedy, "not the highest-scoring token", greedy_by_sampling),
    wrong(check_temperature, "scaling after softmax does not change", temperature_after_softmax),
    wrong(check_temperature, "you multiplied the logits by the temperature", temperature_multiplied),
    wrong(check_temperature, "modified its input logits in place", temperature_in_place),
    wrong(check_temperature, "you returned probabilities", temperature_probabilities),
    right(check_temperature, temperature_log_softmax),
    wrong(check_top_k, "kept [2, 2, 2, 2] tokens per row, expected [1, 1, 1, 1]", make_top_k(extra=1),
          label="k-plus-one"),
    wrong(check_top_k, "not the right ones", make_top_k(largest=False), label="smallest"),
    wrong(check_top_k, "changed the logits of the tokens it kept", make_top_k(fill=0.0), label="zero-not-minus-inf"),
    wrong(check_top_k, "kept [0, 1, 0, 0] tokens per row", make_top_k(whole_batch=True), label="whole-batch"),
    wrong(check_top_k, "modified its input logits in place", make_top_k(in_place=True), label="in-place"),
    wrong(check_top_k, "top_k_filter(k=0)", make_top_k(off_switch=False), label="no-off-switch"),
    right(check_top_k, make_top_k(), label="reference-pieces"),
    wrong(check_top_k, "keep every token tied with the k-th largest", top_k_exactly_k),
    right(check_top_k, top_k_by_sorting),
    wrong(check_top_p, "kept [1, 1] tokens per row, expected [2, 1]", make_top_p(through=True),
          label="drops-the-crossing-token"),
    wrong(check_top_p, "not the right ones", make_top_p(unsort=False), label="mask-left-in-rank-order"),
    wrong(check_top_p, "kept [4, 2] tokens per row", make_top_p(sort=False, protect_best=False),
          label="cumulative-in-vocabulary-order"),
    wrong(check_top_p, "kept [2, 2] tokens per row", make_top_p(scores="logits"), label="normalised-logits"),
    wrong(check_top_p, "one token too few per row", make_top_p(through=True, protect_best=False),
          label="can-keep-nothing"),
    right(check_top_p, make_top_p(), label="reference-pieces"),
    wrong(check_sample, "of draws are tokens the filters should have removed", make_sampler(order="ptk"), label="top-p-before-temperature"),
    wrong(check_sample, "temperature=0.5, top_k=0, top_p=0.8: 22.0%", make_sampler(order="kps"), label="temperature-after-softmax"),
    wrong(check_sample, "temperature=1.6, top_k=4", make_sampler(order="tp"), label="no-top-k"),
    wrong(check_sample, "temperature=0.5, top_k=0, top_p=0.8: 10.1%", make_sampler(order="tk"), label="no-top-p"),
    wrong(check_sample, "temperature=0.5, top_k=0, top_p=0.8: 22.0%", make_sampler(order="kp"), label="no-temperature"),
    wrong(check_sample, "draw with the generator you are given", make_sampler(use_generator=False), label="global-rng"),
    wrong(check_sample, "return a single id (shape ())", make_sampler(squeeze=False), label="shape-n-1"),
    wrong(check_sample, "temperature must be > 0", make_sampler(greedy_at_zero=False), label="no-greedy-at-zero"),
    right(check_sample, sample_intersection),
    right(check_sample, make_sampler(), label="reference-pieces"),
    wrong(check_decode_with_cache, "each step feeds only the newest token", decode_no_cache),
    wrong(check_decode_with_cache, "prefill must run the whole prompt", decode_prefill_token_by_token),
    wrong(check_decode_with_cache, "make the function a generator", decode_returns_list),
    wrong(check_decode_with_cache, "call pick(logits) each step", decode_ignores_pick),
    wrong(check_decode_with_cache, "expected 5 tokens ending with it, got 12", decode_ignores_eos),
    wrong(check_decode_with_cache, "expected 5 tokens ending with it, got 4", decode_drops_eos),
    wrong(check_decode_with_cache, "is the cache passed along", decode_forgets_cache),
    wrong(check_stream_text, "a multi-byte character was emitted before all its tokens arrived", stream_token_by_token),
    wrong(check_stream_text, "the text came out only at the end", stream_all_at_end),
    wrong(check_stream_text, "a multi-byte character was emitted before all its tokens arrived", stream_no_hold),
    wrong(check_stream_text, "emit what is held back at the end", stream_no_flush),
    wrong(check_stream_text, "the text came out only at the end", stream_lags_to_the_end),
    wrong(check_stream_text, "the deltas join to", stream_drops_replacement),
    right(check_stream_text, stream_full_prefix),
    wrong(check_latency_metrics, "tpot ((e2el - ttft) / (n - 1)", make_latency(tpot="over_n"), label="tpot-over-n"),
    wrong(check_latency_metrics, "the first token has no gap before it", make_latency(tpot="mean_itl", itl_from_start=True),
          label="itl-from-t-start"),
    wrong(check_latency_metrics, "ttft (from t_start to the first token)", make_latency(absolute=True),
          label="clock-readings"),
    wrong(check_latency_metrics, "tpot ((e2el - ttft) / (n - 1)", make_latency(tpot="e2el"), label="tpot-from-e2el"),
    wrong(check_latency_metrics, "tpot must be None and itl empty", make_latency(tpot="zero_for_one"),
          label="tpot-zero-for-one-token"),
    wrong(check_latency_metrics, "ZeroDivisionError", make_latency(tpot="crash"), label="crashes-on-one-token"),
    right(check_latency_metrics, make_latency(), label="reference-pieces"),
]
