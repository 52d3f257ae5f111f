"""Paged KV cache bookkeeping, as vLLM's block manager does it, and what it buys over reservations.

The KV cache is cut into blocks of ``block_size`` token slots. Each sequence owns a block table
(the ids of its blocks, in order); a block is taken from the free list when a token lands in a
sequence whose last block is full, and goes back when no sequence refers to it any more. A fork
(parallel sampling, beam search) shares the parent's blocks with reference counts; appending to a
shared, partly filled last block first copies it (copy-on-write).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Iterable


class BlockAllocator:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 0 or block_size < 1:
            raise ValueError(f"need num_blocks >= 0 and block_size >= 1, got {num_blocks}, {block_size}")
        self.block_size = block_size
        self._free = deque(range(num_blocks))
        self._refs = [0] * num_blocks
        self._tables: dict = {}
        self._lengths: dict = {}
        self.copies = 0                         # copy-on-write copies made so far

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    def block_table(self, seq_id) -> list[int]:
        return list(self._tables.get(seq_id, []))

    def num_tokens(self, seq_id) -> int:
        return self._lengths.get(seq_id, 0)

    def append(self, seq_id, num_tokens: int = 1) -> None:
        """Add num_tokens to a sequence (new if unseen); MemoryError, changing nothing, if blocks run out."""
        table, length = self._tables.get(seq_id, []), self._lengths.get(seq_id, 0)
        new_blocks = math.ceil((length + num_tokens) / self.block_size) - len(table)
        copy = bool(table) and length % self.block_size != 0 and self._refs[table[-1]] > 1 and num_tokens > 0
        if new_blocks + copy > len(self._free):
            raise MemoryError(f"sequence {seq_id!r} needs {new_blocks + copy} free blocks, {len(self._free)} left")
        table = list(table)
        if copy:
            self._refs[table[-1]] -= 1
            table[-1] = self._take()
            self.copies += 1
        table.extend(self._take() for _ in range(new_blocks))
        self._tables[seq_id], self._lengths[seq_id] = table, length + num_tokens

    def fork(self, parent_id, child_id) -> None:
        """The child starts as the parent's tokens, sharing its blocks."""
        if child_id in self._tables:
            raise ValueError(f"sequence {child_id!r} exists already")
        for block in self._tables[parent_id]:
            self._refs[block] += 1
        self._tables[child_id] = list(self._tables[parent_id])
        self._lengths[child_id] = self._lengths[parent_id]

    def free(self, seq_id) -> None:
        for block in self._tables.pop(seq_id, []):
            self._refs[block] -= 1
            if self._refs[block] == 0:
                self._free.append(block)
        self._lengths.pop(seq_id, None)

    def _take(self) -> int:
        block = self._free.popleft()
        self._refs[block] = 1
        return block


def sequences_that_fit(lengths: Iterable[int], num_blocks: int, block_size: int, allocator=BlockAllocator) -> int:
    """How many of the sequences (in order, each of its final length) a paged cache of num_blocks holds."""
    cache = allocator(num_blocks, block_size)
    fitted = 0
    for i, length in enumerate(lengths):
        try:
            cache.append(i, length)
        except MemoryError:
            break
        fitted += 1
    return fitted


def contiguous_fit(lengths: Iterable[int], kv_slots: int, max_model_len: int) -> int:
    """Sequences a cache of kv_slots token slots holds when each reserves max_model_len slots up front."""
    return min(len(list(lengths)), kv_slots // max_model_len)


def internal_fragmentation(lengths: Iterable[int], block_size: int) -> float:
    """Share of allocated slots left empty in the last, partly filled block of each sequence."""
    lengths = list(lengths)
    allocated = sum(math.ceil(n / block_size) * block_size for n in lengths)
    return 1 - sum(lengths) / allocated if allocated else 0.0
