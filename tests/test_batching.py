"""inferlab.batching: the simulator's policies on hand-worked timelines, the block allocator, prefix
keys and the prefix-cache model, the roofline arithmetic and its measurements on a tiny model."""
import math

import pytest

from inferlab import batching
from inferlab.batching import BlockAllocator, SimRequest, StepCost

ONE_SECOND = lambda batch, prefill: 1.0    # noqa: E731 -- every step takes 1 s
WORK = [SimRequest(0.0, 10, 3), SimRequest(0.0, 10, 1), SimRequest(0.5, 10, 2)]


def test_continuous_batching_admits_and_retires_every_step():
    times = batching.simulate(WORK, "continuous", ONE_SECOND, max_batch=2)
    # step 1 (0-1 s): A, B; B is done. Step 2: A and C (arrived at 0.5). Step 3: A and C finish.
    assert times == [(1.0, 3.0), (1.0, 1.0), (2.0, 3.0)]


def test_static_batching_waits_for_a_full_batch_and_for_the_longest_output():
    assert batching.simulate(WORK, "static", ONE_SECOND, max_batch=2) == [(1.0, 3.0), (1.0, 3.0), (4.0, 5.0)]
    # a batch of 3 starts when the third request arrives
    assert batching.simulate(WORK, "static", ONE_SECOND, max_batch=3) == [(1.5, 3.5)] * 3


def test_dynamic_batching_starts_a_batch_when_its_oldest_request_timed_out():
    times = batching.simulate(WORK, "dynamic", ONE_SECOND, max_batch=3, timeout=0.2)
    assert times == [(1.2, 3.2), (1.2, 3.2), (4.2, 5.2)]
    assert batching.simulate(WORK, "dynamic", ONE_SECOND, max_batch=3, timeout=5) == [(1.5, 3.5)] * 3


def test_static_prefill_is_padded_to_the_longest_prompt():
    cost = lambda batch, prefill: 0.01 * prefill + 1.0   # noqa: E731
    reqs = [SimRequest(0.0, 10, 1), SimRequest(0.0, 30, 1)]
    assert batching.simulate(reqs, "static", cost, max_batch=2)[0] == (pytest.approx(1.6), pytest.approx(1.6))
    assert batching.simulate(reqs, "continuous", cost, max_batch=2)[0] == (pytest.approx(1.4), pytest.approx(1.4))


def test_simulate_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="unknown policy"):
        batching.simulate(WORK, "greedy", ONE_SECOND, max_batch=2)


def test_step_cost_interpolates_and_extrapolates():
    cost = StepCost((1, 4, 8), (0.010, 0.013, 0.021), 0.001)
    assert cost(1, 0) == pytest.approx(0.010)
    assert cost(2, 0) == pytest.approx(0.011)
    assert cost(16, 100) == pytest.approx(0.021 + 8 * 0.002 + 0.1)


def test_summarize_counts_tokens_over_the_whole_run():
    times = batching.simulate(WORK, "continuous", ONE_SECOND, max_batch=2)
    s = batching.summarize(WORK, times)
    assert s["output_throughput"] == pytest.approx(6 / 3)
    assert s["median_ttft_s"] == pytest.approx(1.0)


def test_blocks_are_taken_only_when_the_last_one_is_full():
    cache = BlockAllocator(num_blocks=4, block_size=4)
    cache.append("a", 4)
    assert len(cache.block_table("a")) == 1 and cache.num_free_blocks == 3
    cache.append("a")
    assert len(cache.block_table("a")) == 2 and cache.num_free_blocks == 2
    cache.free("a")
    assert cache.num_free_blocks == 4 and cache.block_table("a") == []


def test_a_fork_shares_blocks_and_copies_a_shared_last_block_on_write():
    cache = BlockAllocator(num_blocks=8, block_size=4)
    cache.append("parent", 6)                      # one full block, one half-full
    cache.fork("parent", "child")
    assert cache.block_table("child") == cache.block_table("parent") and cache.num_free_blocks == 6
    cache.append("child")
    parent, child = cache.block_table("parent"), cache.block_table("child")
    assert child[0] == parent[0] and child[1] != parent[1] and cache.copies == 1
    cache.free("parent")
    assert cache.num_free_blocks == 6              # the shared first block is still the child's
    cache.free("child")
    assert cache.num_free_blocks == 8


def test_running_out_of_blocks_raises_and_changes_nothing():
    cache = BlockAllocator(num_blocks=2, block_size=4)
    cache.append("a", 5)
    with pytest.raises(MemoryError):
        cache.append("b", 1)
    assert cache.num_free_blocks == 0 and cache.block_table("b") == []


def test_paged_blocks_hold_more_sequences_than_reservations():
    lengths = [100, 30, 250, 60, 12, 500, 80, 40]
    assert batching.sequences_that_fit(lengths, num_blocks=64, block_size=16) == 6   # 7+2+16+4+1+32 blocks, then 5 more do not fit
    assert batching.contiguous_fit(lengths, kv_slots=64 * 16, max_model_len=512) == 2
    assert batching.internal_fragmentation([16, 17], 16) == pytest.approx(1 - 33 / 48)


def test_block_keys_chain_the_prefix():
    a = batching.block_keys(list(range(10)), 4)
    b = batching.block_keys(list(range(8)) + [99, 98, 97, 96], 4)
    assert len(a) == 2 and a == b[:2] and len(b) == 3
    shifted = batching.block_keys([7, 7, 7, 7] + list(range(4)), 4)
    assert shifted[1] != a[0]                      # same tokens after another parent: another key


def test_predicted_hits_follow_vllm_rules():
    prefix = list(range(256))
    prompts = [prefix + [1000, 1001], prefix + [2000], prefix, list(range(128))]
    # the exact repeat of `prefix` recomputes its last token: one block short
    assert batching.predicted_hits(prompts, 128) == [0, 256, 128, 0]


def test_decode_step_bound_takes_the_slower_of_bytes_and_flops():
    b = batching.decode_step_bound(4, 100, weight_bytes=1e9, kv_bytes_per_token=1e3, flops_per_token=1e9,
                                   bandwidth=1e11, peak_flops=1e12)
    assert b["bytes"] == pytest.approx(1e9 + 4e5) and b["flops"] == pytest.approx(4e9)
    assert b["seconds"] == pytest.approx((1e9 + 4e5) / 1e11) and b["bound"] == "memory"
    big = batching.decode_step_bound(64, 100, 1e9, 1e3, 1e9, 1e11, 1e12)
    assert big["bound"] == "compute" and big["seconds"] == pytest.approx(64e9 / 1e12)


def test_roofline_measurements_on_a_tiny_model():
    from inferlab.checks.quantization.models import tiny_llama
    model = tiny_llama()
    assert batching.measure_bandwidth(mib=8, repeats=2) > 1e8
    assert batching.measure_matmul(n=128, repeats=2) > 1e7
    assert 0 < batching.decode_step_seconds(model, 4, 16, steps=2) < 5
    assert 0 < batching.prefill_seconds_per_token(model, 16, repeats=1) < 1
    assert batching.kv_bytes_per_token(model.config, 2) == 2 * 2 * 2 * 8 * 2
    assert batching.decode_flops_per_token(model.config, 1000, 10) == 2000 + 4 * 2 * 10 * 32
    assert math.isfinite(batching.decode_step_seconds(model, 1, 1, steps=1))
