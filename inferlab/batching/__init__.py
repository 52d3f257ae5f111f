"""Batching and KV-cache management (lab 07): the roofline of decoding, a serving-loop simulator,
paged KV blocks and prefix caching -- the references the lab's exercises are checked against.

    bw = batching.measure_bandwidth(); peak = batching.measure_matmul()
    times = batching.simulate(requests, "continuous", batching.StepCost(...), max_batch=16)
    batching.sequences_that_fit(lengths, num_blocks=512, block_size=16)
    batching.predicted_hits(prompt_ids, block_size=128)

One module per idea: ``roofline``, ``simulator``, ``blocks``, ``prefix``.
"""
from inferlab.batching.blocks import BlockAllocator, contiguous_fit, internal_fragmentation, sequences_that_fit
from inferlab.batching.prefix import PrefixCacheModel, block_keys, predicted_hits
from inferlab.batching.roofline import (decode_flops_per_token, decode_step_bound, decode_step_seconds,
                                        kv_bytes_per_token, measure_bandwidth, measure_matmul,
                                        prefill_seconds_per_token)
from inferlab.batching.simulator import POLICIES, SimRequest, StepCost, simulate, summarize

__all__ = ["BlockAllocator", "POLICIES", "PrefixCacheModel", "SimRequest", "StepCost", "block_keys", "contiguous_fit",
           "decode_flops_per_token", "decode_step_bound", "decode_step_seconds", "internal_fragmentation",
           "kv_bytes_per_token", "measure_bandwidth", "measure_matmul", "predicted_hits",
           "prefill_seconds_per_token", "sequences_that_fit", "simulate", "summarize"]
