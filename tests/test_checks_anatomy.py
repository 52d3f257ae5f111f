"""Lab 01 checks: each fails on the learner's stub, fails on plausible wrong answers, passes on the solution.

The functions under test come from the notebooks themselves (cells tagged ``exercise``),
through tests/nbcode.py. The wrong answers below are mistakes a learner could make.
"""
import pytest
import torch

from inferlab.checks import anatomy as chk

import nbcode

LAB = "01-anatomy"



def passes(check, *args):
    verdict = check(*args)
    return verdict.passed


# ----------------------------------------------------------------------------- prompt ids

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


def test_prompt_ids_solution_and_stub(solution, stub, tokenizer):
    assert passes(chk.check_prompt_ids, solution["build_prompt_ids"], tokenizer)
    assert not passes(chk.check_prompt_ids, stub["build_prompt_ids"], tokenizer)


@pytest.mark.parametrize("wrong", [prompt_no_generation_prompt, prompt_batch_encoding, prompt_no_template,
                                   prompt_extra_bos, prompt_last_message_only])
def test_prompt_ids_rejects(wrong, tokenizer):
    assert not passes(chk.check_prompt_ids, wrong, tokenizer)


# ----------------------------------------------------------------------------- greedy, temperature

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


def test_greedy_solution_and_stub(solution, stub):
    assert passes(chk.check_greedy, solution["greedy"])
    assert not passes(chk.check_greedy, stub["greedy"])


@pytest.mark.parametrize("wrong", [greedy_flat, greedy_dim0, greedy_argmin, greedy_last_tie, greedy_by_sampling])
def test_greedy_rejects(wrong):
    assert not passes(chk.check_greedy, wrong)


def temperature_after_softmax(logits, t):
    return logits.softmax(-1) / t


def temperature_multiplied(logits, t):
    return logits * t


def temperature_in_place(logits, t):
    return logits.div_(t)


def temperature_probabilities(logits, t):
    return (logits / t).softmax(-1)


def test_temperature_solution_and_stub(solution, stub):
    assert passes(chk.check_temperature, solution["apply_temperature"])
    assert not passes(chk.check_temperature, stub["apply_temperature"])


def test_temperature_accepts_shifted_logits():
    """log_softmax(z / T) differs from z / T by a constant per row: same distribution, a right answer."""
    assert passes(chk.check_temperature, lambda z, t: (z / t).log_softmax(-1))


@pytest.mark.parametrize("wrong", [temperature_after_softmax, temperature_multiplied, temperature_in_place,
                                   temperature_probabilities])
def test_temperature_rejects(wrong):
    assert not passes(chk.check_temperature, wrong)


# ----------------------------------------------------------------------------- top-k, top-p

def top_k_plus_one(logits, k):
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_smallest(logits, k):
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1, largest=False).values[..., -1:]
    return logits.masked_fill(logits > kth, float("-inf"))


def top_k_zero_instead_of_inf(logits, k):
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, 0.0)


def top_k_whole_batch(logits, k):
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits.reshape(-1), k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_in_place(logits, k):
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill_(logits < kth, float("-inf"))


def top_k_no_off_switch(logits, k):
    kth = torch.topk(logits, max(k, 1), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


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


def test_top_k_accepts_a_sort_based_answer():
    assert passes(chk.check_top_k, top_k_by_sorting)


def test_top_k_keeping_exactly_k_is_told_about_ties():
    verdict = chk.check_top_k(top_k_exactly_k)
    assert not verdict.passed and "tie" in verdict.detail


def test_top_k_solution_and_stub(solution, stub):
    assert passes(chk.check_top_k, solution["top_k_filter"])
    assert not passes(chk.check_top_k, stub["top_k_filter"])


@pytest.mark.parametrize("wrong", [top_k_plus_one, top_k_smallest, top_k_zero_instead_of_inf, top_k_whole_batch,
                                   top_k_in_place, top_k_no_off_switch, top_k_exactly_k])
def test_top_k_rejects(wrong):
    assert not passes(chk.check_top_k, wrong)


def _sorted_probs(logits):
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    return probs, order


def top_p_excludes_crossing(logits, p):
    if p >= 1.0:
        return logits.clone()
    probs, order = _sorted_probs(logits)
    drop_sorted = probs.cumsum(-1) > p          # drops the token that crosses p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_p_not_unsorted(logits, p):
    if p >= 1.0:
        return logits.clone()
    probs, _ = _sorted_probs(logits)
    drop = (probs.cumsum(-1) - probs) >= p      # mask in rank order applied to vocabulary order
    drop[..., 0] = False
    return logits.masked_fill(drop, float("-inf"))


def top_p_vocab_order(logits, p):
    if p >= 1.0:
        return logits.clone()
    probs = logits.softmax(-1)
    drop = (probs.cumsum(-1) - probs) >= p      # no sort: cumulative sum in vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def top_p_on_logits(logits, p):
    if p >= 1.0:
        return logits.clone()
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    scores = sorted_logits - sorted_logits.min(-1, keepdim=True).values
    scores = scores / scores.sum(-1, keepdim=True)  # normalised logits, not probabilities
    drop_sorted = (scores.cumsum(-1) - scores) >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_p_can_keep_nothing(logits, p):
    if p >= 1.0:
        return logits.clone()
    probs, order = _sorted_probs(logits)
    drop_sorted = probs.cumsum(-1) > p          # nothing protects the best token: tiny p drops them all
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def test_top_p_solution_and_stub(solution, stub):
    assert passes(chk.check_top_p, solution["top_p_filter"])
    assert not passes(chk.check_top_p, stub["top_p_filter"])


@pytest.mark.parametrize("wrong", [top_p_excludes_crossing, top_p_not_unsorted, top_p_vocab_order,
                                   top_p_on_logits, top_p_can_keep_nothing])
def test_top_p_rejects(wrong):
    assert not passes(chk.check_top_p, wrong)


# ----------------------------------------------------------------------------- sample

def make_sampler(order="tkp", use_generator=True, squeeze=True, greedy_at_zero=True):
    """A sampler built from the reference filters, with one thing changed."""
    from inferlab import decoding as ref

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
    from inferlab import decoding as ref
    if temperature == 0:
        return logits.argmax(-1)
    z = ref.apply_temperature(logits.float(), temperature)
    keep = (ref.top_k_filter(z, top_k) != float("-inf")) & (ref.top_p_filter(z, top_p) != float("-inf"))
    probs = z.masked_fill(~keep, float("-inf")).softmax(-1).reshape(-1, z.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


def test_sample_solution_and_stub(solution, stub):
    assert passes(chk.check_sample, solution["sample"])
    assert not passes(chk.check_sample, stub["sample"])


def test_sample_accepts_intersection_of_top_k_and_top_p():
    """The chapter describes the kept set as the intersection; the check's cases do not tell them apart."""
    assert passes(chk.check_sample, sample_intersection)


@pytest.mark.parametrize("wrong", [
    make_sampler(order="ptk"),                        # top-p (and top-k) before temperature
    make_sampler(order="kps"),                        # temperature applied after softmax
    make_sampler(order="tp"),                         # top_k ignored
    make_sampler(order="tk"),                         # top_p ignored
    make_sampler(order="kp"),                         # temperature ignored
    make_sampler(use_generator=False),                # global RNG: not reproducible
    make_sampler(squeeze=False),                      # returns shape (n, 1)
    make_sampler(greedy_at_zero=False),               # divides by temperature 0
], ids=["top-p-before-temperature", "temperature-after-softmax", "no-top-k", "no-top-p", "no-temperature",
        "global-rng", "shape-n-1", "no-greedy-at-zero"])
def test_sample_rejects(wrong):
    assert not passes(chk.check_sample, wrong)


# ----------------------------------------------------------------------------- decode loop

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
    from inferlab import decoding
    return list(decoding.generate_tokens(model, input_ids, max_new_tokens, pick, eos_token_id))


@torch.inference_mode()
def decode_ignores_pick(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    from inferlab import decoding
    yield from decoding.generate_tokens(model, input_ids, max_new_tokens, decoding.greedy, eos_token_id)


@torch.inference_mode()
def decode_ignores_eos(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    from inferlab import decoding
    yield from decoding.generate_tokens(model, input_ids, max_new_tokens, pick, None)


@torch.inference_mode()
def decode_drops_eos(model, input_ids, max_new_tokens, pick, eos_token_id=None):
    from inferlab import decoding
    for token in decoding.generate_tokens(model, input_ids, max_new_tokens, pick, eos_token_id):
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


def test_decode_solution_and_stub(solution, stub, model, tokenizer):
    assert passes(chk.check_decode_with_cache, solution["decode_with_cache"], model, tokenizer)
    assert not passes(chk.check_decode_with_cache, stub["decode_with_cache"], model, tokenizer)


def test_decode_solution_matches_model_generate(solution, model, tokenizer):
    """The oracle behind the check: the hand loop equals transformers' greedy generate."""
    messages = [{"role": "user", "content": "Give me two facts about octopuses."}]
    prompt = solution["build_prompt_ids"](tokenizer, messages)
    mine = list(solution["decode_with_cache"](model, prompt, 16, solution["greedy"]))
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, repetition_penalty=1.0,
                             pad_token_id=tokenizer.eos_token_id)
    theirs = out[0, len(prompt):].tolist()
    assert mine[:len(theirs)] == theirs


@pytest.mark.parametrize("wrong", [decode_no_cache, decode_prefill_token_by_token, decode_returns_list,
                                   decode_ignores_pick, decode_ignores_eos, decode_drops_eos, decode_forgets_cache])
def test_decode_rejects(wrong, model, tokenizer):
    assert not passes(chk.check_decode_with_cache, wrong, model, tokenizer)


# ----------------------------------------------------------------------------- streaming

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


def test_stream_solution_and_stub(solution, stub, tokenizer):
    assert passes(chk.check_stream_text, solution["stream_text"], tokenizer)
    assert not passes(chk.check_stream_text, stub["stream_text"], tokenizer)


def test_stream_accepts_full_prefix_decoding(tokenizer):
    """Decoding the whole list each time is slow but right: the check must accept it."""
    def full_prefix(tok, token_ids):
        ids, sent = [], ""
        for token in token_ids:
            ids.append(token)
            text = tok.decode(ids)
            if not text.endswith("\ufffd"):
                yield text[len(sent):]
                sent = text
        text = tok.decode(ids)
        if len(text) > len(sent):
            yield text[len(sent):]
    assert passes(chk.check_stream_text, full_prefix, tokenizer)


@pytest.mark.parametrize("wrong", [stream_token_by_token, stream_all_at_end, stream_no_hold, stream_no_flush,
                                   stream_lags_to_the_end, stream_drops_replacement])
def test_stream_rejects(wrong, tokenizer):
    assert not passes(chk.check_stream_text, wrong, tokenizer)


# ----------------------------------------------------------------------------- latency

def latency_tpot_over_n(timestamps, t_start):
    e2el = timestamps[-1] - t_start
    return {"ttft": timestamps[0] - t_start, "e2el": e2el, "tpot": e2el / len(timestamps),
            "itl": [b - a for a, b in zip(timestamps, timestamps[1:])]}


def latency_itl_with_ttft(timestamps, t_start):
    stamps = [t_start] + list(timestamps)
    itl = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"ttft": timestamps[0] - t_start, "e2el": timestamps[-1] - t_start, "itl": itl,
            "tpot": sum(itl) / len(itl)}


def latency_absolute_ttft(timestamps, t_start):
    n = len(timestamps)
    return {"ttft": timestamps[0], "e2el": timestamps[-1], "itl": [b - a for a, b in zip(timestamps, timestamps[1:])],
            "tpot": (timestamps[-1] - timestamps[0]) / (n - 1) if n > 1 else None}


def latency_e2el_over_n_minus_1(timestamps, t_start):
    n = len(timestamps)
    e2el = timestamps[-1] - t_start
    return {"ttft": timestamps[0] - t_start, "e2el": e2el, "itl": [b - a for a, b in zip(timestamps, timestamps[1:])],
            "tpot": e2el / (n - 1) if n > 1 else None}


def latency_single_token_zero(timestamps, t_start):
    n = len(timestamps)
    ttft, e2el = timestamps[0] - t_start, timestamps[-1] - t_start
    return {"ttft": ttft, "e2el": e2el, "itl": [b - a for a, b in zip(timestamps, timestamps[1:])],
            "tpot": (e2el - ttft) / max(n - 1, 1)}


def latency_single_token_crash(timestamps, t_start):
    n = len(timestamps)
    ttft, e2el = timestamps[0] - t_start, timestamps[-1] - t_start
    return {"ttft": ttft, "e2el": e2el, "itl": [b - a for a, b in zip(timestamps, timestamps[1:])],
            "tpot": (e2el - ttft) / (n - 1)}


def test_latency_solution_and_stub(solution, stub):
    assert passes(chk.check_latency_metrics, solution["latency_metrics"])
    assert not passes(chk.check_latency_metrics, stub["latency_metrics"])


@pytest.mark.parametrize("wrong", [latency_tpot_over_n, latency_itl_with_ttft, latency_absolute_ttft,
                                   latency_e2el_over_n_minus_1, latency_single_token_zero,
                                   latency_single_token_crash])
def test_latency_rejects(wrong):
    assert not passes(chk.check_latency_metrics, wrong)


# ----------------------------------------------------------------------------- the notebook and the module

def test_notebook_calls_every_check_of_the_module():
    import nbformat
    from inferlab import authoring
    nb = nbformat.read(nbcode.SOLUTIONS / f"{LAB}.ipynb", as_version=4)
    called = set(authoring.graded_checks(nb))
    defined = {name for name in dir(chk) if getattr(getattr(chk, name), "is_graded_check", False)}
    assert called == defined


def test_check_details_are_deterministic(solution, tokenizer, capsys):
    """Check cells are compared by nbval: the same answer must print the same line every time."""
    calls = [(chk.check_top_p, solution["top_p_filter"]), (chk.check_sample, solution["sample"]),
             (chk.check_stream_text, solution["stream_text"], tokenizer)]
    for call in calls:
        first, second = call[0](*call[1:]), call[0](*call[1:])
        assert first.line() == second.line()


def test_stub_and_solution_define_the_same_functions(solution, stub):
    names = {"build_prompt_ids", "greedy", "apply_temperature", "top_k_filter", "top_p_filter", "sample",
             "decode_with_cache", "stream_text", "latency_metrics"}
    assert names <= set(solution) and names <= set(stub)

