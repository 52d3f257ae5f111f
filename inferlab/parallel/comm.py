"""Collectives that count what they are handed, and what a ring all-reduce sends.

A ring all-reduce over p ranks runs p - 1 reduce-scatter steps and p - 1 all-gather steps, each
sending one p-th of the buffer to the next rank: every rank sends 2 (p - 1) / p of the buffer (and
receives as much). NCCL's ring algorithm is exactly this; gloo picks among several algorithms, so
on CPU the formula is the model, and the counted buffers are what the layer really hands over.
"""
from __future__ import annotations

import time


def ring_allreduce_bytes(buffer_bytes: float, world_size: int) -> float:
    """Bytes each rank sends in a ring all-reduce of a buffer of buffer_bytes."""
    return 2 * (world_size - 1) / world_size * buffer_bytes


class CountingComm:
    """all_reduce (sum) through torch.distributed, counting calls, bytes handed over and time spent."""

    def __init__(self, group=None):
        self.group = group
        self.calls = 0
        self.buffer_bytes = 0
        self.seconds = 0.0

    def all_reduce(self, tensor):
        import torch.distributed as dist
        self.calls += 1
        self.buffer_bytes += tensor.numel() * tensor.element_size()
        start = time.perf_counter()
        dist.all_reduce(tensor, group=self.group)
        self.seconds += time.perf_counter() - start
        return tensor

    def sent_bytes(self, world_size: int) -> float:
        """What this rank sent, if every all-reduce was a ring."""
        return ring_allreduce_bytes(self.buffer_bytes, world_size)
