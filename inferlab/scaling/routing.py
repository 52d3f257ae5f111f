"""Routing requests over replicas: round-robin, least-loaded and prefix-aware, and the prefix-cache
hits each assignment earns.

A router sees, per replica, how many of its requests are in flight and which prompt blocks it has
sent there (the blocks that replica has most likely cached -- what SGLang's cache-aware router keeps
in a radix tree per worker). Blocks are keyed as in lab 07 (``batching.block_keys``), so the hits an
assignment earns are predicted with lab 07's cache model, one cache per replica.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Sequence

from inferlab.batching.prefix import PrefixCacheModel, block_keys


@dataclass
class ReplicaView:
    """What a router knows about one replica."""
    in_flight: int = 0
    sent_keys: set[int] = field(default_factory=set)


Policy = Callable[[Sequence[int], Sequence[ReplicaView]], int]


def least_loaded(keys: Sequence[int], replicas: Sequence[ReplicaView]) -> int:
    """The replica with the fewest requests in flight; ties go to the lowest index."""
    return min(range(len(replicas)), key=lambda i: (replicas[i].in_flight, i))


def cached_prefix_blocks(keys: Sequence[int], replica: ReplicaView) -> int:
    """How many leading blocks of a prompt this replica has been sent before."""
    return next((n for n, key in enumerate(keys) if key not in replica.sent_keys), len(keys))


def prefix_aware(keys: Sequence[int], replicas: Sequence[ReplicaView], slack: int = 2) -> int:
    """The replica with the longest cached prefix, unless it has more than ``slack`` requests in flight
    beyond the least-loaded one (then least-loaded): affinity without piling a hot prefix onto one
    replica. Ties: fewer in flight, then lower index."""
    lightest = least_loaded(keys, replicas)
    best = min(range(len(replicas)),
               key=lambda i: (-cached_prefix_blocks(keys, replicas[i]), replicas[i].in_flight, i))
    return lightest if replicas[best].in_flight - replicas[lightest].in_flight > slack else best


class RoundRobin:
    """Replica 0, 1, ..., n-1, 0, ... whatever their state."""

    def __init__(self):
        self._next = itertools.count()

    def __call__(self, keys: Sequence[int], replicas: Sequence[ReplicaView]) -> int:
        return next(self._next) % len(replicas)


class Router:
    """Keeps the replicas' views and asks a policy where each request goes."""

    def __init__(self, policy: Policy, num_replicas: int, block_size: int):
        if num_replicas < 1:
            raise ValueError(f"Router needs at least one replica, got {num_replicas}")
        self.policy, self.block_size = policy, block_size
        self.replicas = [ReplicaView() for _ in range(num_replicas)]

    def send(self, token_ids: Sequence[int]) -> int:
        """Pick a replica for this prompt and count the request in flight there."""
        keys = block_keys(token_ids, self.block_size)
        choice = self.policy(keys, self.replicas)
        if not 0 <= choice < len(self.replicas):
            raise ValueError(f"routing policy returned replica {choice!r}; there are {len(self.replicas)}")
        self.replicas[choice].in_flight += 1
        self.replicas[choice].sent_keys.update(keys)
        return choice

    def done(self, replica: int) -> None:
        """A request on this replica finished."""
        self.replicas[replica].in_flight -= 1


def predicted_hits(prompts: Sequence[Sequence[int]], assignment: Sequence[int], block_size: int) -> list[int]:
    """Cached prompt tokens of each request, sent in order to the replica the assignment names, every
    replica's prefix cache starting empty and never evicting (lab 07's model, one per replica)."""
    caches: dict[int, PrefixCacheModel] = {}
    return [caches.setdefault(r, PrefixCacheModel(block_size)).lookup(ids) for ids, r in zip(prompts, assignment)]


def hit_rate(prompts: Sequence[Sequence[int]], hits: Sequence[int]) -> float:
    """Share of prompt tokens served from the cache."""
    total = sum(len(p) for p in prompts)
    return sum(hits) / total if total else 0.0
