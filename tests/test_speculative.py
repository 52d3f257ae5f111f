"""inferlab.speculative: drafts, greedy draft-and-verify, the sampling rule's pieces, the speed-up model
and the engine's counters, on hand-worked cases, a tiny random model and the embedded model."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from inferlab import decoding, engines, speculative as spec
from inferlab.checks.speculative.harness import CountingModel, tiny_model


def test_prompt_lookup_proposes_what_vllms_ngram_proposer_proposes():
    from vllm.v1.spec_decode.ngram_proposer import _find_longest_matched_ngram_and_propose_tokens as vllm_rule
    rng = random.Random(0)
    for _ in range(3000):
        context = [rng.randrange(rng.choice([2, 3, 5, 10])) for _ in range(rng.randint(1, 30))]
        k, lo = rng.randint(1, 6), rng.randint(1, 3)
        hi = rng.randint(lo, 5)
        want = list(vllm_rule(np.array(context, dtype=np.int32), lo, hi, 10_000, k))
        assert spec.prompt_lookup(context, k, hi, lo) == want, (context, k, hi, lo)


def test_prompt_lookup_by_hand():
    assert spec.prompt_lookup([1, 2, 3, 1, 2, 4, 1, 2], 2, 2, 2) == [3, 1]      # the earliest occurrence
    assert spec.prompt_lookup([4, 4, 4], 3, 2, 2) == [4]                        # overlapping, cut by the end
    assert spec.prompt_lookup([1, 9, 1], 3, 3, 2) == []                         # only a 1-gram matches


@pytest.mark.parametrize("make_drafter", [lambda m: spec.PromptLookup(3, 1),
                                          lambda m: spec.DraftModel(spec.truncated_model(m, 1))],
                         ids=["prompt lookup", "early exit"])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_speculative_greedy_is_greedy_decoding_on_a_tiny_model(make_drafter, k):
    model = tiny_model()
    prompt = torch.randint(0, 61, (12,), generator=torch.Generator().manual_seed(k)).tolist()
    want = list(decoding.generate_tokens(model, prompt, 30))
    counting = CountingModel(model)
    run = spec.speculative_greedy(counting, make_drafter(model), prompt, 30, k)
    assert run.tokens == want
    assert counting.forwards == run.target_forwards == 1 + len(run.accepted)
    assert all(0 <= a <= d <= k for d, a in zip(run.drafted, run.accepted))
    assert 1 + sum(a + 1 for a in run.accepted) >= len(run.tokens)


def test_speculative_greedy_is_greedy_decoding_on_the_embedded_model(model, tokenizer):
    ids = tokenizer.apply_chat_template(spec.copy_messages(1, seed=3)[0], add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
    want = list(decoding.generate_tokens(model, ids, 24))
    lookup = spec.speculative_greedy(model, spec.PromptLookup(), ids, 24, 4)
    early = spec.speculative_greedy(model, spec.DraftModel(spec.truncated_model(model, 6)), ids, 24, 2)
    assert lookup.tokens == want and early.tokens == want
    assert lookup.target_forwards < 24                      # copying from the prompt: drafts were accepted


def test_speculative_greedy_stops_at_end_of_sequence():
    model = tiny_model()
    prompt = list(range(5, 15))
    want = list(decoding.generate_tokens(model, prompt, 20))
    eos = want[7]
    run = spec.speculative_greedy(model, spec.PromptLookup(2, 1), prompt, 20, 4, eos_token_id=eos)
    assert run.tokens == want[:want.index(eos) + 1]


def test_a_draft_model_keeps_its_cache_consistent_across_rejections():
    model = tiny_model()
    draft = spec.truncated_model(model, 1)
    drafter = spec.DraftModel(draft)
    context = list(range(3, 13))
    first = drafter(context, 4)
    context2 = context + [first[0], (first[1] + 1) % 61]     # keep one guess, then a token it did not guess
    again = drafter(context2, 3)
    assert again == list(decoding.generate_tokens(draft, context2, 3))
    assert drafter.cache.get_seq_length() == len(context2) + 2


def test_truncated_model_shares_weights_and_refuses_a_bad_depth():
    model = tiny_model()
    whole = spec.truncated_model(model, 2)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        assert torch.equal(whole(input_ids=ids).logits, model(input_ids=ids).logits)
    one = spec.truncated_model(model, 1)
    assert one.model.layers[0].mlp.up_proj.weight.data_ptr() == model.model.layers[0].mlp.up_proj.weight.data_ptr()
    with pytest.raises(ValueError, match="num_layers must be between 1 and 2"):
        spec.truncated_model(model, 3)


def test_save_model_writes_a_loadable_directory_that_is_removed_at_exit(tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM
    model = tiny_model()
    path = spec.save_model(spec.truncated_model(model, 1), tokenizer, tmp_path / "draft")
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64)
    assert loaded.config.num_hidden_layers == 1 and (path / "tokenizer.json").is_file()


def test_forward_costs_time_every_size_over_the_same_context():
    model, context = tiny_model(), list(range(1, 13))
    seen = []

    class Recording:                                    # records the cache length each timed pass starts from
        device = model.device

        def __call__(self, input_ids, past_key_values=None, **kwargs):
            seen.append((input_ids.shape[1], 0 if past_key_values is None else past_key_values.get_seq_length()))
            return model(input_ids=input_ids, past_key_values=past_key_values, **kwargs)

    costs = spec.forward_costs(Recording(), context, [1, 3, 5], repeats=3)
    assert sorted(costs) == [1, 3, 5] and all(s > 0 for s in costs.values())
    passes = seen[1:]                                   # the first call is the prefill of the context
    assert seen[0] == (len(context), 0)
    assert sorted({n for n, _ in passes}) == [1, 3, 5] and len(passes) == 3 * (3 + 1)   # one warm-up round
    assert {past for _, past in passes} == {len(context)}
    with pytest.raises(ValueError, match="positive"):
        spec.forward_costs(model, context, [0, 2])


def test_speedup_model_by_hand():
    assert spec.expected_tokens(0.8, 4) == pytest.approx(1 + 0.8 + 0.64 + 0.512 + 0.4096)
    assert spec.expected_tokens(1.0, 3) == 4 and spec.expected_tokens(0.0, 5) == 1
    assert spec.speedup(0.8, 0.05, 4) == pytest.approx(3.3616 / 1.2)
    assert spec.speedup(0.5, 0.0, 3, verify=1.5) == pytest.approx(1.875 / 1.5)
    assert spec.speedup(0.9, 0.0, 4, draft_rate=0.5) == pytest.approx((0.5 * 4.0951 + 0.5) / 1.0)
    assert spec.best_k(0.5, 0.6) == 0                     # 1.5 / 1.6 < 1: do not speculate
    assert spec.best_k(0.9, 0.0) == 16                    # free drafts: as long as allowed
    # k = 7: 4.161 / 1.35 = 3.082; k = 8: 4.329 / 1.40 = 3.092; k = 9: 4.463 / 1.45 = 3.078
    assert spec.best_k(0.8, 0.05) == 8
    assert spec.estimate_alpha([4, 4, 0, 3], [4, 1, 0, 3]) == pytest.approx(8 / 9)
    assert np.isnan(spec.estimate_alpha([0, 0], [0, 0]))


def test_acceptance_probability_is_one_minus_total_variation():
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.2, 0.6])
    assert spec.acceptance_probability(p, q) == pytest.approx(1 - 0.5 * float((p - q).abs().sum()))


def test_engine_acceptance_from_counters():
    before = {"drafts": 10, "draft_tokens": 40, "accepted": 20, "per_position": [8, 6, 4, 2]}
    after = {"drafts": 20, "draft_tokens": 80, "accepted": 45, "per_position": [17, 13, 9, 6]}
    got = spec.engine_acceptance(before, after)
    assert (got["drafts"], got["draft tokens"], got["accepted tokens"]) == (10, 40, 25)
    assert got["acceptance by position"] == pytest.approx([0.9, 0.7, 0.5, 0.4])
    assert got["alpha"] == pytest.approx(25 / (25 + 10 - 4))     # 4 drafts kept every token: no failed comparison
    with pytest.raises(ValueError, match="varying length"):
        spec.engine_acceptance(before, dict(after, draft_tokens=70))


def test_spec_counters_read_vllms_metric_names():
    text = "\n".join([
        '# TYPE vllm:spec_decode_num_drafts counter',
        'vllm:spec_decode_num_drafts_total{model_name="m"} 12.0',
        '# TYPE vllm:spec_decode_num_draft_tokens counter',
        'vllm:spec_decode_num_draft_tokens_total{model_name="m"} 48.0',
        '# TYPE vllm:spec_decode_num_accepted_tokens counter',
        'vllm:spec_decode_num_accepted_tokens_total{model_name="m"} 29.0',
        '# TYPE vllm:spec_decode_num_accepted_tokens_per_pos counter',
        'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="1"} 7.0',
        'vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="0"} 8.0', ""])
    got = spec.spec_counters(engines.parse_metrics(text))
    assert got == {"drafts": 12.0, "draft_tokens": 48.0, "accepted": 29.0, "per_position": [8.0, 7.0]}


def test_workloads_are_seeded_and_differ():
    assert spec.copy_messages(3, seed=1) == spec.copy_messages(3, seed=1) != spec.copy_messages(3, seed=2)
    assert "word for word" in spec.copy_messages(1)[0][0]["content"]
    assert spec.open_messages(2, seed=0)[0][0]["role"] == "user"
