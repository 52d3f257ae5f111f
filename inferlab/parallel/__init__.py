"""Parallelism (lab 08): which layouts a model admits, tensor parallelism by hand on real
processes, and the bytes its collectives move.

    parallel.validate_layout(num_heads=9, num_kv_heads=3, num_layers=30, tensor_parallel=2)
    # ParallelLayoutError: 9 attention heads are not divisible by 2; use 1, 3 or 9
    results = parallel.run_workers(fn, 3, weights)   # fn(rank, world_size, weights) on 3 processes

One module per idea: ``layout`` (valid sizes, KV heads per rank, pipeline stages), ``sharding``
(column- and row-parallel cuts, a model made tensor-parallel in place), ``comm`` (counted
collectives, ring all-reduce bytes), ``workers`` (N processes joined by torch.distributed).
Memory per device lives with the rest of the memory math, in ``inferlab.memory.parallel``.
"""
from inferlab.parallel.comm import CountingComm, ring_allreduce_bytes
from inferlab.parallel.layout import (ParallelLayoutError, validate_layout, validate_model_layout, divisors,
                                      kv_heads_per_rank, smallest_tensor_parallel, stage_layers)
from inferlab.parallel.sharding import shard_attention, shard_mlp, shard_model
from inferlab.parallel.workers import WorkerError, run_workers

__all__ = ["CountingComm", "ParallelLayoutError", "WorkerError", "validate_layout", "validate_model_layout", "divisors",
           "kv_heads_per_rank", "ring_allreduce_bytes", "run_workers", "shard_attention", "shard_mlp", "shard_model",
           "smallest_tensor_parallel", "stage_layers"]
