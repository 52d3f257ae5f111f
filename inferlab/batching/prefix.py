"""Prefix caching as vLLM does it: full blocks keyed by a hash chain, looked up longest-prefix first.

A block's key hashes its parent's key together with its own token ids, so equal keys mean equal
prefixes: the same tokens after a different history get a different key. Only full blocks are
keyed; a partly filled last block is never shared. When every block of a prompt is cached, vLLM
still computes the prompt's last token (it needs that position's logits), so at most
``len(prompt) - 1`` tokens, rounded down to whole blocks, hit.
"""
from __future__ import annotations

from typing import Sequence


def block_keys(token_ids: Sequence[int], block_size: int) -> list[int]:
    """One key per full block of token_ids, each chained to the key before it."""
    keys, parent = [], None
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash((parent, tuple(token_ids[start:start + block_size])))
        keys.append(parent)
    return keys


class PrefixCacheModel:
    """The prompt tokens an unbounded prefix cache serves, for requests that run one after another."""

    def __init__(self, block_size: int):
        self.block_size = block_size
        self.cached: set[int] = set()

    def lookup(self, token_ids: Sequence[int]) -> int:
        """Cached prompt tokens of this request; then its full prompt blocks are cached."""
        keys = block_keys(token_ids, self.block_size)
        hit_blocks = 0
        for key in keys:
            if key not in self.cached:
                break
            hit_blocks += 1
        self.cached.update(keys)
        return min(hit_blocks, (len(token_ids) - 1) // self.block_size) * self.block_size


def predicted_hits(prompts: Sequence[Sequence[int]], block_size: int) -> list[int]:
    """Cached tokens of each prompt, sent in this order to a server whose cache starts empty."""
    model = PrefixCacheModel(block_size)
    return [model.lookup(ids) for ids in prompts]
