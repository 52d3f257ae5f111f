"""Graded checks of lab 07, batching and KV-cache management.

The references are ``inferlab.batching``. Every check runs on inputs the notebook does not use: GPU-
sized roofline figures on both sides of the ridge, small serving timelines that each isolate one rule
of a batching policy (worked out by hand in ``tests/test_batching.py``) plus random workloads,
allocation scripts with forks, copy-on-write and running out of blocks, and prompts that share
prefixes, diverge inside a block or repeat exactly.
"""
from __future__ import annotations

import math
import random

from inferlab import batching
from inferlab.batching import SimRequest
from inferlab.checks import CheckFailed, Exercise, expect, expect_dict, graded, is_close

LAB = "07-batching"


# ----------------------------------------------------------------------------- roofline

ROOFLINE_CASES = [  # batch, context, weight bytes, KV bytes per token, FLOPs per token, bandwidth B/s, peak FLOP/s
    (1, 512, 2.0e9, 1.0e5, 4.2e9, 1.0e12, 1.0e14),
    (1024, 128, 1.4e10, 1.3e5, 1.4e10, 3.35e12, 9.89e14),
    (8, 0, 5.0e8, 2.0e4, 1.0e9, 4.0e10, 2.0e11),
    (48, 2000, 1.0e9, 2.3e4, 2.7e8, 2.0e10, 1.5e11),
]


@graded(hint="a decode step reads the weights once and each sequence's own KV cache; every sequence does "
             "flops_per_token; the step takes as long as the slower of moving the bytes and doing the FLOPs")
def check_decode_roofline(decode_roofline) -> str:
    for case in ROOFLINE_CASES:
        b, ctx, w, kv, f, bw, peak = case
        got = expect_dict(decode_roofline(*case), ("bytes", "flops", "intensity", "seconds", "bound"),
                          f"decode_roofline{case}")
        want = batching.decode_step_bound(*case)
        call = f"batch {b}, context {ctx}"
        if not is_close(got["bytes"], want["bytes"], 1e-6):
            why = ""
            if is_close(got["bytes"], b * w + b * ctx * kv, 1e-6):
                why = ": the weights are read once per step, whatever the batch size"
            elif is_close(got["bytes"], w + ctx * kv, 1e-6):
                why = ": each sequence reads its own KV cache, so the KV bytes grow with the batch"
            elif is_close(got["bytes"], w, 1e-6):
                why = ": the KV cache of the context is read too"
            raise CheckFailed(f"{call}: bytes {got['bytes']:.4g}, expected {want['bytes']:.4g}{why}")
        if not is_close(got["flops"], want["flops"], 1e-6):
            why = ": every sequence in the batch does flops_per_token" if is_close(got["flops"], f, 1e-6) else ""
            raise CheckFailed(f"{call}: flops {got['flops']:.4g}, expected {want['flops']:.4g}{why}")
        if not is_close(got["intensity"], want["intensity"], 1e-6):
            why = ": arithmetic intensity is FLOPs per byte" if is_close(got["intensity"], 1 / want["intensity"], 1e-6) else ""
            raise CheckFailed(f"{call}: intensity {got['intensity']:.4g}, expected {want['intensity']:.4g}{why}")
        if not is_close(got["seconds"], want["seconds"], 1e-6):
            why = ""
            if is_close(got["seconds"], want["bytes"] / bw + want["flops"] / peak, 1e-6):
                why = (": memory traffic and compute overlap, so the step takes the slower of the two (their "
                       "maximum), not their sum")
            elif is_close(got["seconds"], min(want["bytes"] / bw, want["flops"] / peak), 1e-6):
                why = ": the bound is the slower of the two times, not the faster"
            raise CheckFailed(f"{call}: seconds {got['seconds']:.4g}, expected {want['seconds']:.4g}{why}")
        expect(got["bound"] == want["bound"],
               f"{call}: bound {got['bound']!r}, expected {want['bound']!r} -- say which of the two times is longer")
    return f"{len(ROOFLINE_CASES)} steps on both sides of the ridge, an empty context included"


# ----------------------------------------------------------------------------- simulator

def _steps(seconds: float = 1.0, per_seq: float = 0.0, per_prefill: float = 0.0):
    return lambda batch, prefill: seconds + per_seq * batch + per_prefill * prefill


R = SimRequest
RULES = [  # policy, requests, step_time, max_batch, timeout, what the rule is
    ("continuous", [R(0, 5, 3), R(10, 5, 1)], _steps(), 4, math.inf,
     "a request's first token comes at the end of the step that prefills it, a request of n tokens takes n "
     "steps, and an idle engine waits for the next arrival"),
    ("continuous", [R(0, 10, 3), R(0, 30, 2)], _steps(0.5, 0.25, 0.01), 2, math.inf,
     "each step lasts step_time(sequences in the step, prompt tokens it prefills): the first step prefills both "
     "prompts (unpadded), the later ones none"),
    ("continuous", [R(0, 4, 2), R(0, 4, 2), R(0, 4, 2)], _steps(), 1, math.inf,
     "never run more than max_batch sequences in a step"),
    ("continuous", [R(0, 4, 4), R(0.5, 4, 1)], _steps(), 2, math.inf,
     "continuous batching lets a waiting request join before every step while there is room, not only when the "
     "batch is empty"),
    ("continuous", [R(0, 4, 1), R(0, 4, 3), R(0, 4, 1)], _steps(), 2, math.inf,
     "in continuous batching a request leaves after the step that gives its last token, freeing its place for a "
     "waiting one"),
    ("static", [R(0, 4, 2), R(2, 4, 2)], _steps(), 2, math.inf,
     "a static batch starts only once max_batch requests are waiting"),
    ("static", [R(0, 4, 2), R(0, 4, 2), R(0, 4, 2)], _steps(), 2, math.inf,
     "when no more requests will arrive, a static batch starts with those waiting (the last batch may be partial)"),
    ("static", [R(0, 4, 1), R(0, 4, 5)], _steps(), 2, math.inf,
     "a static batch runs until its longest output is done, and every request in it is returned then"),
    ("static", [R(0, 10, 1), R(0, 30, 1)], _steps(1, 0, 0.01), 2, math.inf,
     "a static batch is padded: its prefill step processes batch size x the longest prompt"),
    ("dynamic", [R(0, 4, 2), R(0.3, 4, 2), R(1.0, 4, 2), R(1.2, 4, 2), R(3.0, 4, 2)], _steps(), 3, 0.5,
     "a dynamic batch starts when it is full or when its oldest request has waited `timeout` seconds since arriving "
     "(not since the engine became free)"),
    ("dynamic", [R(0, 4, 2), R(0.1, 4, 2), R(0.2, 4, 2)], _steps(), 2, 5.0,
     "a dynamic batch starts as soon as max_batch requests wait, without waiting for the timeout"),
]


def _random_workload(seed: int, n: int = 12) -> list[SimRequest]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(4.0)
        out.append(SimRequest(round(t, 3), rng.randint(4, 60), rng.randint(1, 12)))
    return out


def _same_times(got, want) -> bool:
    try:
        return len(got) == len(want) and all(is_close(g[0], w[0], 1e-9, 1e-9) and is_close(g[1], w[1], 1e-9, 1e-9)
                                             for g, w in zip(got, want))
    except (TypeError, IndexError):
        return False


@graded(hint="walk the clock step by step: before each step decide who runs (the policy), then add "
             "step_time(batch size, prefilled prompt tokens) and record first tokens and finishes")
def check_simulator(simulate) -> str:
    cost = batching.StepCost((1, 2, 4, 8), (0.020, 0.021, 0.024, 0.031), 0.0004)
    for policy, reqs, step_time, max_batch, timeout, rule in RULES:
        got = simulate(reqs, policy, step_time, max_batch, timeout)
        want = batching.simulate(reqs, policy, step_time, max_batch, timeout)
        if not _same_times(got, want):
            raise CheckFailed(f"{policy}, max_batch {max_batch}, requests {[tuple(r.__dict__.values()) for r in reqs]} "
                              f"(arrival s, prompt, output): got {got}, expected {want} -- {rule}")
    for seed in (11, 12):
        reqs = _random_workload(seed)
        for policy in batching.POLICIES:
            got = simulate(reqs, policy, cost, 3, 0.15)
            want = batching.simulate(reqs, policy, cost, 3, 0.15)
            if not _same_times(got, want):
                bad = next((i for i, (g, w) in enumerate(zip(got, want)) if not _same_times([g], [w])), len(want))
                raise CheckFailed(f"{policy} on a random workload of {len(reqs)} requests: request {bad} got "
                                  f"{got[bad] if bad < len(got) else 'nothing'}, expected "
                                  f"{want[bad] if bad < len(want) else 'nothing'}")
    return f"{len(RULES)} timelines, one rule each, and 2 random workloads under all three policies"


# ----------------------------------------------------------------------------- paged blocks

def _free(cache) -> int:
    value = cache.num_free_blocks
    return value() if callable(value) else value


@graded(hint="a sequence holds ceil(tokens / block_size) blocks, taken from the free list when its last block is "
             "full; a fork shares blocks by reference count; appending to a shared, partly filled last block "
             "copies it first; a block returns to the free list when nobody refers to it")
def check_block_allocator(BlockAllocator) -> str:
    cache = BlockAllocator(10, 4)
    expect(_free(cache) == 10, f"a new allocator of 10 blocks has {_free(cache)} free blocks")
    cache.append("a", 3)
    expect(len(cache.block_table("a")) == 1, f"3 tokens in blocks of 4 took {len(cache.block_table('a'))} blocks, "
                                             "expected 1 -- a block holds block_size tokens")
    cache.append("a")
    expect(len(cache.block_table("a")) == 1 and _free(cache) == 9,
           f"a 4th token in a block of 4 took a new block ({len(cache.block_table('a'))} blocks) -- take a new "
           "block only when the last one is full")
    cache.append("a")
    expect(len(cache.block_table("a")) == 2 and _free(cache) == 8,
           f"a 5th token should open a 2nd block: {len(cache.block_table('a'))} blocks, {_free(cache)} free")
    cache.append("b", 9)
    tables = cache.block_table("a") + cache.block_table("b")
    expect(len(tables) == 5 and len(set(tables)) == 5 and all(0 <= x < 10 for x in tables),
           f"blocks of two sequences {cache.block_table('a')} and {cache.block_table('b')}: each block id in "
           "range(num_blocks) belongs to one sequence")
    cache.fork("a", "a2")
    expect(cache.block_table("a2") == cache.block_table("a") and _free(cache) == 5,
           f"after fork the child has {cache.block_table('a2')} (parent {cache.block_table('a')}), {_free(cache)} "
           "free blocks, expected the parent's blocks, shared, and 5 free -- a fork copies no block")
    cache.append("a2")
    parent, child = cache.block_table("a"), cache.block_table("a2")
    expect(len(child) == 2 and child[0] == parent[0] and child[1] != parent[1] and _free(cache) == 4,
           f"appending to the child whose last block is shared and partly filled: parent {parent}, child {child}, "
           f"{_free(cache)} free, expected the first block still shared and the last one copied (copy-on-write), 4 free")
    cache.append("a", 3)                             # the parent's own last block is no longer shared: no copy
    expect(len(cache.block_table("a")) == 2 and _free(cache) == 4,
           f"the parent's last block is its own again after the child's copy; 3 more tokens fit in it, but the "
           f"parent now has {len(cache.block_table('a'))} blocks and {_free(cache)} free -- keep reference counts")
    cache.free("a")
    expect(_free(cache) == 5, f"freeing the parent left {_free(cache)} free blocks, expected 5: the first block is "
                              "still the child's -- return a block only when no sequence refers to it")
    cache.free("a2")
    expect(_free(cache) == 7, f"after freeing the child {_free(cache)} free blocks, expected 7")
    try:
        cache.append("c", 4 * 8)
    except MemoryError:
        pass
    except Exception as exc:
        raise CheckFailed(f"32 tokens need 8 blocks and 7 are free; your append raised {type(exc).__name__}: "
                          "raise MemoryError (and change nothing)") from None
    else:
        raise CheckFailed("32 tokens need 8 blocks and 7 are free: raise MemoryError")
    expect(_free(cache) == 7 and cache.block_table("c") == [],
           f"a failed append must change nothing: {_free(cache)} free, table of 'c' {cache.block_table('c')}")
    cache.append("c", 28)
    expect(_free(cache) == 0, f"28 tokens in blocks of 4 should take the 7 free blocks, {_free(cache)} left")
    cache.free("b"); cache.free("c")
    expect(_free(cache) == 10, f"with every sequence freed, {_free(cache)} of 10 blocks are free")
    big = BlockAllocator(3, 16)
    big.append("x", 16)
    big.fork("x", "y")
    big.append("y")
    expect(big.block_table("y")[0] == big.block_table("x")[0] and len(big.block_table("y")) == 2 and _free(big) == 1,
           "appending to a child whose shared last block is full opens a new block and copies nothing")
    return "11 steps: block boundaries, two sequences, fork, copy-on-write, reference counts, out of blocks"


# ----------------------------------------------------------------------------- prefix caching

def _prefix_prompts() -> list[list[int]]:
    rng = random.Random(7)
    doc = [rng.randrange(1000) for _ in range(40)]
    other = [rng.randrange(1000) for _ in range(40)]
    return [
        doc + [1, 2, 3],                # cold
        doc + [4, 5],                   # shares 5 full blocks of 8
        doc[:20] + [9] * 20,            # diverges inside the 3rd block
        doc,                            # repeats exactly: the last token is recomputed
        other[:16] + doc[16:40],        # doc's later blocks after another parent
        doc[:7],                        # shorter than a block
        doc + [1, 2, 3] + [6] * 13,     # the first prompt's partial block, now full
    ]


@graded(hint="key a full block by hashing its parent's key with its own tokens; a prompt hits the longest run of "
             "its leading blocks already cached, and never its very last token")
def check_prefix_hits(block_hashes, predict_cache_hits) -> str:
    bs = 8
    a = list(block_hashes(list(range(37)), bs))
    expect(len(a) == 4, f"37 tokens in blocks of 8 gave {len(a)} keys, expected 4 -- only full blocks get a key")
    expect(list(block_hashes(list(range(37)), bs)) == a, "the same tokens must give the same keys every time")
    b = list(block_hashes(list(range(24)) + [99] * 16, bs))
    expect(b[:3] == a[:3] and b[3] != a[3], "two prompts that share 3 full blocks must share exactly 3 keys")
    c = list(block_hashes([5] * 8 + list(range(8, 16)), bs))
    expect(c[1] != a[1], "the same 8 tokens after a different first block got the same key -- a block's key "
                         "must include its parent's key (the whole prefix), not only its own tokens")
    prompts = _prefix_prompts()
    got = list(predict_cache_hits(prompts, bs))
    want = batching.predicted_hits(prompts, bs)
    if got != want:
        bad = next(i for i, (g, w) in enumerate(zip(got + [None] * len(want), want)) if g != w)
        why = ""
        if bad == 3 and got[bad] is not None and got[bad] > want[bad]:
            why = (" -- when the whole prompt is cached, the engine still computes its last token (it needs its "
                   "logits), and hits come in whole blocks, so the last block is computed again")
        elif got[bad] is not None and got[bad] % bs:
            why = " -- only full blocks are cached: hits come in whole blocks"
        elif not any(got):
            why = " -- once a prompt has run, its full blocks are in the cache for the prompts after it"
        raise CheckFailed(f"hits per prompt {got}, expected {want}; prompt {bad} differs{why}")
    return f"keys of full blocks chained to their parents; hits of {len(prompts)} prompts in order"


@graded(hint="predict with the engine's block size, requests in the order they were sent, the cache empty at first; "
             "full blocks only, the leading run of cached blocks, never the prompt's last token")
def check_engine_hits(predict_cache_hits, engine_hits) -> str:
    """engine_hits: one dict per workload run on the engine: its "prompts" (token ids, in the order sent),
    the engine's "block_size" and the increase of vllm:prefix_cache_hits over it ("hits")."""
    for run in engine_hits:
        got = sum(predict_cache_hits(run["prompts"], run["block_size"]))
        expect(got == run["hits"], f"{run['workload']}: you predict {got} cached prompt tokens, the engine counted "
                                   f"{run['hits']} ({'more' if got > run['hits'] else 'fewer'} than it found)")
    return "your predicted hits equal the engine's prefix-cache counters on every workload"


__all__ = ["check_decode_roofline", "check_simulator", "check_block_allocator", "check_prefix_hits",
           "check_engine_hits", "CheckFailed"]

EXERCISES = [
    Exercise(check_decode_roofline, ("decode_roofline",)),
    Exercise(check_simulator, ("simulate",)),
    Exercise(check_block_allocator, ("BlockAllocator",)),
    Exercise(check_prefix_hits, ("block_hashes", "predict_cache_hits")),
    Exercise(check_engine_hits, ("predict_cache_hits",), ("engine_hits",)),
]
