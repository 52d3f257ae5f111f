"""Lab 08's catalogue: answers a learner could write, and what the checks must say to each."""
from __future__ import annotations

import torch

from inferlab import parallel
from inferlab.checks import right, wrong
from inferlab.checks.parallelism import (check_allreduce_bytes, check_device_bytes, check_tp_attention, check_tp_mlp,
                                         reference_device_bytes)

silu = torch.nn.functional.silu


def _rows(w, rank, world):
    n = w.shape[0] // world
    return w[rank * n:(rank + 1) * n]


def cut_reference(gate, up, down, rank, world):
    n = gate.shape[0] // world
    return {"gate": _rows(gate, rank, world), "up": _rows(up, rank, world), "down": down[:, rank * n:(rank + 1) * n]}


def cut_with_chunk(gate, up, down, rank, world):
    """Right: torch.chunk along the intermediate dimension."""
    return {"gate": gate.chunk(world, 0)[rank], "up": up.chunk(world, 0)[rank], "down": down.chunk(world, 1)[rank]}


def cut_down_by_rows(gate, up, down, rank, world):
    return {**cut_reference(gate, up, down, rank, world), "down": _rows(down, rank, world)}


def cut_gate_by_columns(gate, up, down, rank, world):
    n = gate.shape[1] // world
    return {**cut_reference(gate, up, down, rank, world), "gate": gate[:, rank * n:(rank + 1) * n]}


def cut_mismatched_slices(gate, up, down, rank, world):
    return {**cut_reference(gate, up, down, rank, world), "down": cut_reference(gate, up, down, world - 1 - rank, world)["down"]}


def forward_reference(x, shard, all_reduce):
    return all_reduce(silu(x @ shard["gate"].T) * (x @ shard["up"].T) @ shard["down"].T)


def forward_with_linear(x, shard, all_reduce):
    """Right: F.linear, and the all-reduce on a separate line."""
    lin = torch.nn.functional.linear
    partial = lin(silu(lin(x, shard["gate"])) * lin(x, shard["up"]), shard["down"])
    all_reduce(partial)
    return partial


def forward_no_all_reduce(x, shard, all_reduce):
    return silu(x @ shard["gate"].T) * (x @ shard["up"].T) @ shard["down"].T


def forward_reduce_every_matmul(x, shard, all_reduce):
    g, u = all_reduce(x @ shard["gate"].T), all_reduce(x @ shard["up"].T)
    return all_reduce(silu(g) * u @ shard["down"].T)


def _kv_rows(k, num_kv, rank, world, head_dim):
    if num_kv >= world:
        n = num_kv // world
        return slice(rank * n * head_dim, (rank + 1) * n * head_dim)
    g = rank // (world // num_kv)
    return slice(g * head_dim, (g + 1) * head_dim)


def _attn(q, k, v, o, heads, kv, rank, world, kv_rows=None, o_rows=False):
    d = q.shape[0] // heads
    per = heads // world
    qr = slice(rank * per * d, (rank + 1) * per * d)
    kr = kv_rows or _kv_rows(k, kv, rank, world, d)
    return {"q": q[qr], "k": k[kr], "v": v[kr], "o": o[qr] if o_rows else o[:, qr]}


def attn_split_kv_rows_evenly(q, k, v, o, heads, kv, rank, world):
    n = k.shape[0] // world
    return _attn(q, k, v, o, heads, kv, rank, world, kv_rows=slice(rank * n, (rank + 1) * n))


def attn_wrong_group(q, k, v, o, heads, kv, rank, world):
    d = q.shape[0] // heads
    if kv >= world:
        return _attn(q, k, v, o, heads, kv, rank, world)
    g = rank % kv
    return _attn(q, k, v, o, heads, kv, rank, world, kv_rows=slice(g * d, (g + 1) * d))


def attn_o_by_rows(q, k, v, o, heads, kv, rank, world):
    return _attn(q, k, v, o, heads, kv, rank, world, o_rows=True)


def attn_q_by_columns(q, k, v, o, heads, kv, rank, world):
    cut = _attn(q, k, v, o, heads, kv, rank, world)
    width = q.shape[1] // world
    cut["q"] = q[:, rank * width:(rank + 1) * width]
    return cut


def attn_library(q, k, v, o, heads, kv, rank, world):
    return parallel.shard_attention(q, k, v, o, heads, kv, rank, world)


def attn_by_head_index(q, k, v, o, heads, kv, rank, world):
    """Right: picks heads one by one, by index, with torch.cat."""
    d = q.shape[0] // heads
    mine = range(rank * heads // world, (rank + 1) * heads // world)
    groups = sorted({h // (heads // kv) for h in mine})
    pick = lambda w, idx: torch.cat([w[i * d:(i + 1) * d] for i in idx])   # noqa: E731
    return {"q": pick(q, mine), "k": pick(k, groups), "v": pick(v, groups),
            "o": torch.cat([o[:, i * d:(i + 1) * d] for i in mine], dim=1)}


def bytes_no_ring_factor(t, h, b, p, n):
    return 2 * n * t * h * b if p > 1 else 0


def bytes_once_not_twice(t, h, b, p, n):
    return 2 * n * (p - 1) / p * t * h * b


def bytes_one_per_layer(t, h, b, p, n):
    return n * 2 * (p - 1) / p * t * h * b


def bytes_one_rank_sends(t, h, b, p, n):
    return 2 * n * 2 * max(p - 1, 1) / p * t * h * b


def bytes_with_library(t, h, b, p, n):
    return 2 * n * parallel.ring_allreduce_bytes(t * h * b, p)


def _device(shape, tp, pp, nb, kvb, context, batch, kv_fraction=False, vocab_whole=False, remainder_last=False,
            tied_once=False):
    h, d = shape["hidden"], shape["head_dim"]
    kv_local = shape["kv_heads"] / tp if kv_fraction else max(1, shape["kv_heads"] // tp)
    per_layer = 2 * h * shape["heads"] * d // tp + 2 * h * kv_local * d + 3 * h * shape["intermediate"] // tp + 2 * h
    layers = [shape["layers"] // pp] * pp
    for i in range(shape["layers"] % pp):
        layers[-1 - i if remainder_last else -2 - i] += 1
    vocab = shape["vocab"] * h // (1 if vocab_whole else tp)
    out = []
    for i, n in enumerate(layers):
        params = n * per_layer + (vocab if i == 0 else 0)
        if i == pp - 1:
            params += h + (vocab if not shape["tied"] or (pp > 1 and not tied_once) else 0)
        out.append({"weight_bytes": params * nb, "kv_bytes": 2 * n * kv_local * d * context * batch * kvb})
    return out


CATALOGUE = [
    wrong(check_tp_mlp, "no all-reduce", cut_reference, forward_no_all_reduce, label="no-all-reduce"),
    wrong(check_tp_mlp, "need none", cut_reference, forward_reduce_every_matmul, label="all-reduce-every-matmul"),
    wrong(check_tp_mlp, "down is row-parallel: cut it by its input columns", cut_down_by_rows, forward_reference,
          label="down-by-rows"),
    wrong(check_tp_mlp, "gate and up are cut by their output rows", cut_gate_by_columns, forward_reference,
          label="gate-by-columns"),
    wrong(check_tp_mlp, "the same slice of the intermediate", cut_mismatched_slices, forward_reference,
          label="mismatched-slices"),
    right(check_tp_mlp, cut_reference, forward_reference, label="reference"),
    right(check_tp_mlp, cut_with_chunk, forward_with_linear, label="chunk-and-linear"),
    right(check_tp_mlp, parallel.shard_mlp, forward_with_linear, label="library-cuts"),
    wrong(check_tp_attention, "never a slice of one", attn_split_kv_rows_evenly),
    wrong(check_tp_attention, "the KV head of their group", attn_wrong_group),
    wrong(check_tp_attention, "o is row-parallel", attn_o_by_rows),
    wrong(check_tp_attention, "q is cut by its output rows", attn_q_by_columns),
    right(check_tp_attention, attn_library, label="library-reference"),
    right(check_tp_attention, attn_by_head_index),
    wrong(check_allreduce_bytes, "sends 2 (p - 1) / p of each", bytes_no_ring_factor),
    wrong(check_allreduce_bytes, "half of it", bytes_once_not_twice),
    wrong(check_allreduce_bytes, "a layer has two all-reduces", bytes_one_per_layer),
    wrong(check_allreduce_bytes, "one rank has nobody to send to", bytes_one_rank_sends),
    right(check_allreduce_bytes, bytes_with_library, label="library-reference"),
    wrong(check_device_bytes, "not a fraction of one", lambda *a: _device(*a, kv_fraction=True), label="kv-fraction"),
    wrong(check_device_bytes, "split by vocabulary rows", lambda *a: _device(*a, vocab_whole=True), label="vocab-whole"),
    wrong(check_device_bytes, "the stages before the last take the remainder",
          lambda *a: _device(*a, remainder_last=True), label="remainder-on-last-stage"),
    wrong(check_device_bytes, "its own copy of a tied LM head", lambda *a: _device(*a, tied_once=True),
          label="tied-head-once"),
    right(check_device_bytes, reference_device_bytes, label="library-reference"),
    right(check_device_bytes, _device, label="per-stage-loop"),
]
