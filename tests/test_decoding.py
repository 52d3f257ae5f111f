"""inferlab.decoding: the reference samplers, the cached generation loop, streaming, latency."""

import pytest
import torch

from inferlab import decoding

NEG_INF = float("-inf")


def kept(z):
    return (z != NEG_INF).sum(-1).tolist()


# ----------------------------------------------------------------------------- samplers

def test_greedy_rows_and_ties():
    logits = torch.tensor([[0.0, 2.0, 2.0, 1.0], [5.0, -1.0, 0.0, 4.0]])
    assert decoding.greedy(logits).tolist() == [1, 0]
    assert int(decoding.greedy(logits[1])) == 0


def test_temperature_scales_and_rejects_zero():
    z = torch.tensor([1.0, 2.0, 4.0])
    assert torch.equal(decoding.apply_temperature(z, 2.0), torch.tensor([0.5, 1.0, 2.0]))
    sharp = decoding.apply_temperature(z, 0.25).softmax(-1)
    assert sharp[2] > z.softmax(-1)[2]
    with pytest.raises(ValueError):
        decoding.apply_temperature(z, 0.0)


def test_top_k_keeps_k_per_row_and_does_not_touch_input():
    z = torch.tensor([[3.0, 1.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    before = z.clone()
    out = decoding.top_k_filter(z, 2)
    assert torch.equal(z, before)
    assert kept(out) == [2, 2]
    assert out[0].tolist() == [3.0, NEG_INF, 2.0, NEG_INF]
    assert out[1].tolist() == [NEG_INF, NEG_INF, 2.0, 3.0]


def test_top_k_switches_off_and_keeps_boundary_ties():
    z = torch.tensor([1.0, 2.0, 2.0, 0.0])
    assert torch.equal(decoding.top_k_filter(z, 0), z)
    assert torch.equal(decoding.top_k_filter(z, 4), z)
    assert kept(decoding.top_k_filter(z, 2)) == 2          # the two tied 2.0
    assert kept(decoding.top_k_filter(z, 1)) == 2          # tied with the 1st largest: both stay


def test_top_p_keeps_the_token_that_crosses_p():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])           # rank order: 1, 3, 2, 0
    z = probs.log()
    assert (decoding.top_p_filter(z, 0.6) != NEG_INF).tolist() == [False, True, False, True]
    assert (decoding.top_p_filter(z, 0.4) != NEG_INF).tolist() == [False, True, False, False]
    assert kept(decoding.top_p_filter(z, 0.9)) == 3
    assert kept(decoding.top_p_filter(z, 1e-6)) == 1
    assert torch.equal(decoding.top_p_filter(z, 1.0), z)


def test_top_p_batched_rows_have_their_own_nucleus():
    z = torch.stack([torch.tensor([0.97, 0.01, 0.01, 0.01]).log(), torch.full((4,), 0.25).log()])
    assert kept(decoding.top_p_filter(z, 0.9)) == [1, 4]


def test_top_p_never_drops_tiny_tail_at_one():
    z = torch.randn(3, 200, generator=torch.Generator().manual_seed(0)) * 30
    assert kept(decoding.top_p_filter(z, 1.0)) == [200, 200, 200]


def test_sample_greedy_at_zero_and_shapes():
    z = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(decoding.sample(z, temperature=0), z.argmax(-1))
    assert decoding.sample(z, generator=torch.Generator().manual_seed(0)).shape == (4,)
    assert decoding.sample(z[0], generator=torch.Generator().manual_seed(0)).shape == ()
    assert decoding.sample(z.reshape(2, 2, 10), generator=torch.Generator().manual_seed(0)).shape == (2, 2)


def test_sample_is_reproducible_with_a_seeded_generator():
    z = torch.randn(1000, 10, generator=torch.Generator().manual_seed(2))
    a = decoding.sample(z, 1.0, generator=torch.Generator().manual_seed(9))
    b = decoding.sample(z, 1.0, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_sample_frequencies_follow_the_filtered_distribution():
    z = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -1.0])
    rows = z.expand(40000, -1)
    draws = decoding.sample(rows, temperature=0.7, top_k=4, top_p=0.9, generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(draws, minlength=6).float() / len(draws)
    want = decoding.top_p_filter(decoding.top_k_filter(z / 0.7, 4), 0.9).softmax(-1)
    assert float(freq[want == 0].sum()) == 0.0
    assert 0.5 * float((freq - want).abs().sum()) < 0.02


def test_sampler_closure_matches_sample():
    z = torch.randn(50, 8, generator=torch.Generator().manual_seed(4))
    pick = decoding.sampler(0.8, 3, 0.9, torch.Generator().manual_seed(5))
    direct = decoding.sample(z, 0.8, 3, 0.9, torch.Generator().manual_seed(5))
    assert torch.equal(pick(z), direct)


# ----------------------------------------------------------------------------- metrics

# ----------------------------------------------------------------------------- streaming (tokenizer)

@pytest.mark.parametrize("text", ["plain words, with spaces  and\ttabs", "émigré naïve façade",
                                  "emoji 🎉👍🏽 and CJK 東京", ""])
def test_stream_text_joins_to_the_full_decode(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas = list(decoding.stream_text(tokenizer, iter(ids)))
    assert "".join(deltas) == tokenizer.decode(ids)
    assert not any("\ufffd" in d for d in deltas)


def test_stream_text_is_lazy(tokenizer):
    ids = tokenizer.encode("one two three four", add_special_tokens=False)
    taken = []

    def feed():
        for i in ids:
            taken.append(i)
            yield i
    first = next(decoding.stream_text(tokenizer, feed()))
    assert first and len(taken) == 1


def test_stream_text_flushes_a_cut_character(tokenizer):
    ids = tokenizer.encode("ok 🎉", add_special_tokens=False)[:-1]
    assert "".join(decoding.stream_text(tokenizer, ids)) == tokenizer.decode(ids)


def test_stream_text_skips_special_tokens(tokenizer):
    ids = tokenizer.encode("done", add_special_tokens=False) + [tokenizer.eos_token_id]
    assert "".join(decoding.stream_text(tokenizer, ids)) == "done"


# ----------------------------------------------------------------------------- generation (model)

def _prompt(tokenizer, content):
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_generate_tokens_equals_model_generate(model, tokenizer):
    prompt = _prompt(tokenizer, "What is the boiling point of water?")
    mine = list(decoding.generate_tokens(model, prompt, 10))
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False, repetition_penalty=1.0,
                             pad_token_id=tokenizer.eos_token_id)
    theirs = out[0, len(prompt):].tolist()
    assert mine[:len(theirs)] == theirs


def test_generate_tokens_uses_the_cache(model, tokenizer):
    prompt = _prompt(tokenizer, "Count to five.")
    seen = []
    handle = model.get_input_embeddings().register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[-1]))
    try:
        tokens = list(decoding.generate_tokens(model, prompt, 6))
    finally:
        handle.remove()
    assert len(tokens) == 6
    assert seen == [len(prompt)] + [1] * 5


def test_generate_tokens_stops_after_eos(model, tokenizer):
    prompt = _prompt(tokenizer, "Count to five.")
    tokens = list(decoding.generate_tokens(model, prompt, 8))
    stop = tokens[3]
    stopped = list(decoding.generate_tokens(model, prompt, 8, eos_token_id=[stop, -1]))
    assert stopped == tokens[: tokens.index(stop) + 1]


def test_stream_generate_records_timestamps(model, tokenizer):
    prompt = _prompt(tokenizer, "Say hello.")
    stream = decoding.stream_generate(model, tokenizer, prompt, 6,
                                      pick=decoding.sampler(0.7, 20, 0.9, torch.Generator().manual_seed(0)))
    text = "".join(stream)
    assert text == stream.text == tokenizer.decode(stream.token_ids, skip_special_tokens=True)
    assert len(stream.timestamps) == len(stream.token_ids) >= 1
    assert stream.t_start <= stream.timestamps[0]
    assert stream.timestamps == sorted(stream.timestamps)
    m = stream.metrics()
    assert m["ttft"] > 0 and m["n_tokens"] == len(stream.token_ids)
