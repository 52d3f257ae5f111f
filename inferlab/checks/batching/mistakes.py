"""Lab 07's catalogue: answers a learner could write, and what the checks must say to each."""
from __future__ import annotations

import hashlib
import math

from inferlab import batching
from inferlab.checks import right, wrong
from inferlab.checks.batching import (check_block_allocator, check_decode_roofline, check_engine_hits, check_prefix_hits,
                                      check_simulator)
from inferlab.checks.batching.simulators import make_simulator, simulate_plain


# ----------------------------------------------------------------------------- roofline

def _roofline(moved, flops, bw, peak, combine=max, intensity=None, bound=None):
    memory_s, compute_s = moved / bw, flops / peak
    return {"bytes": moved, "flops": flops, "intensity": intensity if intensity is not None else flops / moved,
            "seconds": combine(memory_s, compute_s),
            "bound": bound or ("memory" if memory_s >= compute_s else "compute")}


def roof_sum_of_times(b, ctx, w, kv, f, bw, peak):
    return _roofline(w + b * ctx * kv, b * f, bw, peak, combine=lambda x, y: x + y)


def roof_faster_of_two(b, ctx, w, kv, f, bw, peak):
    return _roofline(w + b * ctx * kv, b * f, bw, peak, combine=min)


def roof_weights_per_sequence(b, ctx, w, kv, f, bw, peak):
    return _roofline(b * w + b * ctx * kv, b * f, bw, peak)


def roof_kv_not_batched(b, ctx, w, kv, f, bw, peak):
    return _roofline(w + ctx * kv, b * f, bw, peak)


def roof_no_kv(b, ctx, w, kv, f, bw, peak):
    return _roofline(w, b * f, bw, peak)


def roof_flops_not_batched(b, ctx, w, kv, f, bw, peak):
    return _roofline(w + b * ctx * kv, f, bw, peak)


def roof_intensity_inverted(b, ctx, w, kv, f, bw, peak):
    moved = w + b * ctx * kv
    return _roofline(moved, b * f, bw, peak, intensity=moved / (b * f))


def roof_bound_inverted(b, ctx, w, kv, f, bw, peak):
    r = _roofline(w + b * ctx * kv, b * f, bw, peak)
    r["bound"] = "compute" if r["bound"] == "memory" else "memory"
    return r


def roof_tuple(b, ctx, w, kv, f, bw, peak):
    r = _roofline(w + b * ctx * kv, b * f, bw, peak)
    return (r["seconds"], r["bound"])


def roof_by_ridge(b, ctx, w, kv, f, bw, peak):
    """Right: compare the step's intensity with the machine's ridge point."""
    moved = w + b * ctx * kv
    intensity = b * f / moved
    compute_bound = intensity > peak / bw
    return {"bytes": moved, "flops": b * f, "intensity": intensity,
            "seconds": b * f / peak if compute_bound else moved / bw,
            "bound": "compute" if compute_bound else "memory"}


# ----------------------------------------------------------------------------- simulator

# ----------------------------------------------------------------------------- blocks

class Blocks:
    """A correct allocator; its subclasses below each break one rule."""

    def __init__(self, num_blocks, block_size):
        self.block_size, self.free_list, self.refs = block_size, list(range(num_blocks)), [0] * num_blocks
        self.tables, self.lengths = {}, {}

    @property
    def num_free_blocks(self):
        return len(self.free_list)

    def blocks_for(self, tokens):
        return math.ceil(tokens / self.block_size)

    def needs_copy(self, seq_id):
        table, length = self.tables.get(seq_id, []), self.lengths.get(seq_id, 0)
        return bool(table) and length % self.block_size != 0 and self.refs[table[-1]] > 1

    def take(self):
        block = self.free_list.pop(0)
        self.refs[block] = 1
        return block

    def append(self, seq_id, num_tokens=1):
        table, length = list(self.tables.get(seq_id, [])), self.lengths.get(seq_id, 0)
        new = self.blocks_for(length + num_tokens) - len(table)
        copy = self.needs_copy(seq_id)
        if new + copy > len(self.free_list):
            raise MemoryError("out of blocks")
        if copy:
            self.refs[table[-1]] -= 1
            table[-1] = self.take()
        table += [self.take() for _ in range(new)]
        self.tables[seq_id], self.lengths[seq_id] = table, length + num_tokens

    def fork(self, parent, child):
        for b in self.tables[parent]:
            self.refs[b] += 1
        self.tables[child], self.lengths[child] = list(self.tables[parent]), self.lengths[parent]

    def release(self, block):
        self.refs[block] -= 1
        if self.refs[block] == 0:
            self.free_list.append(block)

    def free(self, seq_id):
        for b in self.tables.pop(seq_id, []):
            self.release(b)
        self.lengths.pop(seq_id, None)

    def block_table(self, seq_id):
        return list(self.tables.get(seq_id, []))


class BlockPerToken(Blocks):
    def blocks_for(self, tokens):
        return tokens


class NewBlockWhenFull(Blocks):
    def blocks_for(self, tokens):
        return tokens // self.block_size + 1


class ForkCopies(Blocks):
    def fork(self, parent, child):
        self.tables[child] = [self.take() for _ in self.tables[parent]]
        self.lengths[child] = self.lengths[parent]


class NoCopyOnWrite(Blocks):
    def needs_copy(self, seq_id):
        return False


class CopyWhenForked(Blocks):
    forked: set = set()

    def fork(self, parent, child):
        super().fork(parent, child)
        self.forked = self.forked | {parent, child}

    def needs_copy(self, seq_id):
        return seq_id in self.forked and self.lengths.get(seq_id, 0) % self.block_size != 0


class FreeIgnoresSharing(Blocks):
    def release(self, block):
        self.refs[block] = 0
        if block not in self.free_list:
            self.free_list.append(block)


class PartialOnFailure(Blocks):
    def append(self, seq_id, num_tokens=1):
        for _ in range(num_tokens):
            super().append(seq_id, 1)


class PopsEmptyList(Blocks):
    def append(self, seq_id, num_tokens=1):           # no check first: list.pop raises IndexError
        table, length = list(self.tables.get(seq_id, [])), self.lengths.get(seq_id, 0)
        new, copy = self.blocks_for(length + num_tokens) - len(table), self.needs_copy(seq_id)
        if copy:
            self.refs[table[-1]] -= 1
            table[-1] = self.take()
        table += [self.take() for _ in range(new)]
        self.tables[seq_id], self.lengths[seq_id] = table, length + num_tokens


class HighestIdFirst(Blocks):
    """Right: takes blocks from the other end, and counts free blocks with a method."""

    def take(self):
        block = self.free_list.pop()
        self.refs[block] = 1
        return block

    def num_free_blocks(self):          # noqa: the check accepts a method as well as a property
        return len(self.free_list)


# ----------------------------------------------------------------------------- prefix caching

def keys_without_parent(tokens, bs):
    return [hash(tuple(tokens[i:i + bs])) for i in range(0, len(tokens) - bs + 1, bs)]


def keys_with_partial(tokens, bs):
    keys, parent = [], None
    for i in range(0, len(tokens), bs):
        parent = hash((parent, tuple(tokens[i:i + bs])))
        keys.append(parent)
    return keys


def keys_as_prefixes(tokens, bs):
    """Right: the whole prefix up to the block's end is a key (a chained key, written out)."""
    return [hashlib.sha256(repr(tuple(tokens[:end])).encode()).hexdigest()
            for end in range(bs, len(tokens) + 1, bs)]


def _predict(keys, rule="vllm", remember=True):
    def predict(prompts, bs):
        cached, out = set(), []
        for ids in prompts:
            ks = keys(ids, bs)
            n = 0
            while n < len(ks) and ks[n] in cached:
                n += 1
            if rule == "vllm":
                out.append(min(n, (len(ids) - 1) // bs) * bs)
            elif rule == "whole":
                out.append(n * bs)
            elif rule == "minus-one":
                out.append(min(n * bs, len(ids) - 1))
            if remember:
                cached.update(ks)
        return out
    return predict


def hits_token_level(prompts, bs):
    seen, out = [], []
    for ids in prompts:
        best = 0
        for old in seen:
            n = 0
            while n < min(len(ids) - 1, len(old)) and ids[n] == old[n]:
                n += 1
            best = max(best, n)
        out.append(best)
        seen.append(ids)
    return out


# What the engine counted on two small workloads (blocks of 4), worked out by hand: an exact repeat
# recomputes its last block, a prompt that diverges inside a block hits only the blocks before it.
GIVEN = {"engine_hits": [
    {"workload": "shared prefix", "block_size": 4, "hits": 0 + 8 + 4 + 4,
     "prompts": [list(range(1, 11)), list(range(1, 9)) + [50, 51], list(range(1, 9)), [1, 2, 3, 4, 5, 6, 60, 61, 62]]},
    {"workload": "conversation", "block_size": 4, "hits": 0 + 8 + 12,
     "prompts": [[9] * 4 + [1, 2, 3, 4, 5], [9] * 4 + [1, 2, 3, 4, 5, 7, 7, 7], [9] * 4 + [1, 2, 3, 4, 5, 7, 7, 7, 8]]},
]}

CATALOGUE = [
    wrong(check_decode_roofline, "not their sum", roof_sum_of_times),
    wrong(check_decode_roofline, "not the faster", roof_faster_of_two),
    wrong(check_decode_roofline, "read once per step", roof_weights_per_sequence),
    wrong(check_decode_roofline, "grow with the batch", roof_kv_not_batched),
    wrong(check_decode_roofline, "the KV cache of the context is read too", roof_no_kv),
    wrong(check_decode_roofline, "every sequence in the batch does flops_per_token", roof_flops_not_batched),
    wrong(check_decode_roofline, "FLOPs per byte", roof_intensity_inverted),
    wrong(check_decode_roofline, "which of the two times is longer", roof_bound_inverted),
    wrong(check_decode_roofline, "return a dict", roof_tuple),
    right(check_decode_roofline, roof_by_ridge),
    right(check_decode_roofline, batching.decode_step_bound, label="library-reference"),
    wrong(check_simulator, "not only when the batch is empty", make_simulator(admit_only_when_empty=True),
          label="admit-only-when-empty"),
    wrong(check_simulator, "never run more than max_batch", make_simulator(ignore_max_batch=True),
          label="ignores-max-batch"),
    wrong(check_simulator, "a request of n tokens takes n steps", make_simulator(late_first_token=True),
          label="prefill-gives-no-token"),
    wrong(check_simulator, "step_time(sequences in the step, prompt tokens it prefills)",
          make_simulator(swapped_cost=True), label="cost-arguments-swapped"),
    wrong(check_simulator, "starts only once max_batch requests are waiting", make_simulator(static_no_wait=True),
          label="static-does-not-wait"),
    wrong(check_simulator, "runs until its longest output", make_simulator(static_own_finish=True),
          label="static-returns-early"),
    wrong(check_simulator, "a static batch is padded", make_simulator(no_padding=True), label="static-unpadded"),
    wrong(check_simulator, "since arriving", make_simulator(timeout_from_free=True), label="timeout-from-engine-free"),
    wrong(check_simulator, "without waiting for the timeout", make_simulator(dynamic_waits_for_timeout=True),
          label="dynamic-always-waits"),
    right(check_simulator, simulate_plain, label="plain-loop"),
    right(check_simulator, batching.simulate, label="library-reference"),
    wrong(check_block_allocator, "a block holds block_size tokens", BlockPerToken),
    wrong(check_block_allocator, "only when the last one is full", NewBlockWhenFull),
    wrong(check_block_allocator, "a fork copies no block", ForkCopies),
    wrong(check_block_allocator, "copy-on-write", NoCopyOnWrite),
    wrong(check_block_allocator, "keep reference counts", CopyWhenForked),
    wrong(check_block_allocator, "only when no sequence refers to it", FreeIgnoresSharing),
    wrong(check_block_allocator, "a failed append must change nothing", PartialOnFailure),
    wrong(check_block_allocator, "raise MemoryError", PopsEmptyList),
    right(check_block_allocator, HighestIdFirst),
    right(check_block_allocator, batching.BlockAllocator, label="library-reference"),
    wrong(check_prefix_hits, "must include its parent's key", keys_without_parent, _predict(keys_without_parent),
          label="keys-without-parent"),
    wrong(check_prefix_hits, "only full blocks get a key", keys_with_partial, _predict(keys_with_partial),
          label="keys-of-partial-blocks"),
    wrong(check_prefix_hits, "still computes its last token", batching.block_keys, _predict(batching.block_keys, "whole"),
          label="whole-prompt-hits"),
    wrong(check_prefix_hits, "still computes its last token", batching.block_keys,
          _predict(batching.block_keys, "minus-one"), label="minus-one-token"),
    wrong(check_prefix_hits, "hits come in whole blocks", batching.block_keys, hits_token_level,
          label="token-level-hits"),
    wrong(check_prefix_hits, "in the cache for the prompts after it", batching.block_keys,
          _predict(batching.block_keys, remember=False), label="cache-never-filled"),
    right(check_prefix_hits, keys_as_prefixes, _predict(keys_as_prefixes), label="prefix-tuples-sha256"),
    right(check_prefix_hits, batching.block_keys, batching.predicted_hits, label="library-reference"),
    wrong(check_engine_hits, "shared prefix: you predict 20 cached prompt tokens, the engine counted 16",
          _predict(batching.block_keys, "whole"), label="whole-prompt-hits"),
    wrong(check_engine_hits, "(more than it found)", hits_token_level, label="token-level-hits"),
    wrong(check_engine_hits, "you predict 0 cached prompt tokens", _predict(batching.block_keys, remember=False),
          label="cache-never-filled"),
    right(check_engine_hits, _predict(keys_as_prefixes), label="prefix-tuples-sha256"),
    right(check_engine_hits, batching.predicted_hits, label="library-reference"),
]
