"""Graded checks of lab 08, tensor and pipeline parallelism.

Tensor-parallel code runs with ranks as threads of this process (``ranks.ThreadGroup``), on random
weights of sizes the notebook does not use, at world sizes 2 to 4, with KV heads split, replicated
(fewer KV heads than ranks) and single (MQA). The references are ``inferlab.parallel`` and
``inferlab.memory.parallel``.
"""
from __future__ import annotations

import torch

from inferlab import memory
from inferlab.checks import CheckFailed, Exercise, expect, expect_dict, graded, is_close, seeded_randn
from inferlab.checks.parallelism.ranks import ThreadGroup
from inferlab.memory.shapes import ModelShape
from inferlab.parallel import ring_allreduce_bytes

LAB = "08-parallelism"
TOL = dict(rtol=1e-4, atol=1e-5)


def _mlp(x, gate, up, down):
    return torch.nn.functional.silu(x @ gate.T) * (x @ up.T) @ down.T


# ----------------------------------------------------------------------------- MLP

@graded(hint="gate and up are column-parallel (each rank keeps a slice of their output rows), down is "
             "row-parallel (the same slice of its input columns); the rank's down output is a partial sum, "
             "and one all-reduce adds them")
def check_tp_mlp(shard_mlp, mlp_forward) -> str:
    for case, (world, hidden, width, tokens) in enumerate(((2, 12, 24, 5), (3, 10, 18, 4), (4, 8, 32, 3))):
        x = seeded_randn(tokens, hidden, seed=10 + case)
        gate, up = seeded_randn(width, hidden, seed=20 + case), seeded_randn(width, hidden, seed=30 + case)
        down = seeded_randn(hidden, width, seed=40 + case)
        want = _mlp(x, gate, up, down)
        shards = []
        for rank in range(world):
            cut = expect_dict(shard_mlp(gate, up, down, rank, world), ("gate", "up", "down"), f"world size {world}")
            expect(tuple(cut["gate"].shape) == (width // world, hidden) and tuple(cut["up"].shape) == (width // world, hidden),
                   f"world size {world}, rank {rank}: gate {tuple(cut['gate'].shape)}, up {tuple(cut['up'].shape)}, "
                   f"expected {(width // world, hidden)} each -- gate and up are cut by their output rows")
            expect(tuple(cut["down"].shape) == (hidden, width // world),
                   f"world size {world}, rank {rank}: down {tuple(cut['down'].shape)}, expected {(hidden, width // world)} "
                   "-- down is row-parallel: cut it by its input columns")
            shards.append(cut)
        group = ThreadGroup(world)
        outs = group.run(lambda rank, all_reduce: mlp_forward(x.clone(), shards[rank], all_reduce))
        calls = group.calls[0]
        right = all(torch.allclose(torch.as_tensor(out), want, **TOL) for out in outs)
        if right and calls == 1:
            continue
        if calls == 0:
            raise CheckFailed(f"world size {world}: no all-reduce, so each rank holds only a partial sum of the output "
                              "-- all-reduce the row-parallel down projection's output")
        if calls > 1:
            raise CheckFailed(f"world size {world}: {calls} all-reduces per MLP -- only the row-parallel down output is a "
                              "partial sum; the column-parallel gate and up outputs are per-rank slices and need none")
        raise CheckFailed(f"world size {world}: the output differs from the unsharded MLP -- every rank must cut gate, "
                          "up and down at the same slice of the intermediate width")
    return "world sizes 2, 3 and 4: the output of every rank equals the unsharded MLP's, one all-reduce each"


# ----------------------------------------------------------------------------- attention

def _attention(x, q, k, v, o, heads, kv_heads):
    tokens, d = x.shape[0], q.shape[0] // heads
    qs = (x @ q.T).view(tokens, heads, d).transpose(0, 1)
    ks = (x @ k.T).view(tokens, kv_heads, d).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
    vs = (x @ v.T).view(tokens, kv_heads, d).transpose(0, 1).repeat_interleave(heads // kv_heads, 0)
    out = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True)
    return out.transpose(0, 1).reshape(tokens, heads * d) @ o.T


ATTENTION_CASES = [(8, 4, 2), (6, 3, 3), (8, 2, 4), (12, 12, 4), (4, 1, 2)]   # heads, KV heads, world size


@graded(hint="cut q, k and v by whole heads (rows) and o by the matching input columns; when ranks outnumber "
             "KV heads, every rank keeps a whole copy of the KV head its query heads share")
def check_tp_attention(shard_attention) -> str:
    head_dim, hidden, tokens = 4, 16, 6
    for case, (heads, kv_heads, world) in enumerate(ATTENTION_CASES):
        x = seeded_randn(tokens, hidden, seed=50 + case)
        q, o = seeded_randn(heads * head_dim, hidden, seed=60 + case), seeded_randn(hidden, heads * head_dim, seed=70 + case)
        k, v = (seeded_randn(kv_heads * head_dim, hidden, seed=s + case) for s in (80, 90))
        want = _attention(x, q, k, v, o, heads, kv_heads)
        label = f"{heads} heads, {kv_heads} KV heads, {world} ranks"
        partial = torch.zeros_like(want)
        for rank in range(world):
            cut = expect_dict(shard_attention(q, k, v, o, heads, kv_heads, rank, world), ("q", "k", "v", "o"), label)
            hq, hk = cut["q"].shape[0] // head_dim, cut["k"].shape[0] // head_dim
            expect(cut["k"].shape[0] % head_dim == 0 and cut["k"].shape[0] > 0,
                   f"{label}: rank {rank} keeps {cut['k'].shape[0]} rows of k, not whole heads of {head_dim} -- when "
                   "ranks outnumber KV heads, a rank keeps a whole copy of one KV head, never a slice of one")
            expect(cut["q"].shape == (heads // world * head_dim, hidden),
                   f"{label}: rank {rank}'s q is {tuple(cut['q'].shape)}, expected {(heads // world * head_dim, hidden)} "
                   "-- q is cut by its output rows, a whole group of heads per rank")
            expect(cut["o"].shape == (hidden, hq * head_dim),
                   f"{label}: rank {rank}'s o is {tuple(cut['o'].shape)}, expected {(hidden, hq * head_dim)} -- o is "
                   "row-parallel: cut it by its input columns, the ones of the rank's query heads")
            expect(hk >= 1 and hq % hk == 0, f"{label}: rank {rank} has {hq} query heads and {hk} KV heads")
            partial += _attention(x, cut["q"], cut["k"], cut["v"], cut["o"], hq, hk)
        if not torch.allclose(partial, want, **TOL):
            raise CheckFailed(f"{label}: the summed outputs differ from the unsharded attention -- each rank's query "
                              "heads must come with the KV head of their group and with the matching columns of o")
    return f"{len(ATTENTION_CASES)} layouts: KV heads split, replicated, one per rank, and MQA"


# ----------------------------------------------------------------------------- communication

BYTES_CASES = [(512, 4096, 2, 8, 32), (1, 8192, 2, 4, 80), (2048, 5120, 1, 2, 40), (7, 576, 4, 3, 30), (64, 1024, 2, 1, 12)]


@graded(hint="two all-reduces per layer (after attention's o and after the MLP's down), each of tokens x hidden "
             "x bytes; a ring all-reduce sends 2 (p - 1) / p of its buffer from every rank")
def check_allreduce_bytes(allreduce_bytes) -> str:
    for tokens, hidden, nbytes, world, layers in BYTES_CASES:
        buffer = tokens * hidden * nbytes
        want = 2 * layers * ring_allreduce_bytes(buffer, world)
        got = allreduce_bytes(tokens, hidden, nbytes, world, layers)
        if is_close(got, want, 1e-9):
            continue
        call = f"allreduce_bytes({tokens}, {hidden}, {nbytes}, {world}, {layers}) = {got}, expected {want:g}"
        if world == 1:
            raise CheckFailed(f"{call} -- one rank has nobody to send to")
        if is_close(got, 2 * layers * buffer, 1e-9):
            raise CheckFailed(f"{call} -- that is the buffers handed over; a ring all-reduce sends 2 (p - 1) / p of each")
        if is_close(got, want / 2, 1e-9):
            raise CheckFailed(f"{call} -- half of it: a layer has two all-reduces (after attention and after the MLP), "
                              "and a ring all-reduce is a reduce-scatter and an all-gather, (p - 1) / p of the buffer "
                              "each")
        raise CheckFailed(call)
    return f"{len(BYTES_CASES)} cases, one rank included"


# ----------------------------------------------------------------------------- memory per device

SHAPES = {
    "gqa-32l": dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336, vocab=128256, tied=False),
    "gqa-30l-tied": dict(hidden=960, layers=30, heads=15, kv_heads=5, head_dim=64, intermediate=2560, vocab=49152, tied=True),
    "mqa-22l": dict(hidden=2048, layers=22, heads=16, kv_heads=1, head_dim=128, intermediate=5632, vocab=32000, tied=False),
}
LAYOUTS = [("gqa-32l", 4, 1), ("gqa-32l", 8, 1), ("gqa-32l", 16, 1), ("gqa-32l", 2, 3), ("gqa-30l-tied", 5, 2),
           ("gqa-30l-tied", 1, 4), ("gqa-30l-tied", 1, 1), ("mqa-22l", 4, 3)]
DTYPES = {1: "fp8", 2: "bf16", 4: "fp32"}


def _shape(d: dict) -> ModelShape:
    return ModelShape(model_type="llama", architecture="LlamaForCausalLM", attention="gqa", **d)


def reference_device_bytes(shape: dict, tp: int, pp: int, nbytes: int, kv_nbytes: int, context: int, batch: int) -> list:
    est = memory.per_device(_shape(shape), DTYPES[nbytes], DTYPES[kv_nbytes], context, batch, tp, pp)
    return [{"weight_bytes": row["weight_bytes"], "kv_bytes": row["kv_bytes"]} for row in est["stages"]]


@graded(hint="per layer a rank keeps 1/tp of q, o and the MLP, k and v for its KV heads (a whole copy when ranks "
             "outnumber them) and whole norms; the vocabulary rows are split by tp; stages split the layers as "
             "evenly as they can, the stages before the last taking the remainder; the first stage holds the "
             "embedding, the last the final norm and the LM head (tied or not, once there are two stages)")
def check_device_bytes(device_bytes) -> str:
    for name, tp, pp in LAYOUTS:
        shape = SHAPES[name]
        got = device_bytes(dict(shape), tp, pp, 2, 1, 8192, 4)
        want = reference_device_bytes(shape, tp, pp, 2, 1, 8192, 4)
        label = f"{name}, tp {tp}, pp {pp}"
        expect(isinstance(got, (list, tuple)) and len(got) == pp,
               f"{label}: return one dict per pipeline stage ({pp}), got {type(got).__name__} of {len(got) if hasattr(got, '__len__') else '?'}")
        got = [expect_dict(g, ("weight_bytes", "kv_bytes"), f"{label}, stage {stage}") for stage, g in enumerate(got)]
        uneven = pp > 1 and shape["layers"] % pp and is_close(sum(g["kv_bytes"] for g in got),
                                                               sum(w["kv_bytes"] for w in want), 1e-9)
        for stage, (g, w) in enumerate(zip(got, want)):
            if uneven and not is_close(g["kv_bytes"], w["kv_bytes"], 1e-9):
                raise CheckFailed(f"{label}, stage {stage}: KV bytes {g['kv_bytes']:,.0f}, expected {w['kv_bytes']:,} "
                                  "-- the layers are split right in total but not per stage: the stages before the "
                                  "last take the remainder of the layers")
            if not is_close(g["kv_bytes"], w["kv_bytes"], 1e-9):
                why = ""
                if tp > shape["kv_heads"]:
                    why = (" -- with more ranks than KV heads each rank keeps one whole KV head (a copy), "
                           "not a fraction of one")
                raise CheckFailed(f"{label}, stage {stage}: KV bytes {g['kv_bytes']:,.0f}, expected {w['kv_bytes']:,}{why}")
            if not is_close(g["weight_bytes"], w["weight_bytes"], 1e-9):
                raise CheckFailed(f"{label}, stage {stage}: weight bytes {g['weight_bytes']:,.0f}, expected "
                                  f"{w['weight_bytes']:,}{_weight_diagnosis(shape, tp, pp, stage, g['weight_bytes'], w)}")
    return f"{len(LAYOUTS)} layouts of 3 unseen models, every stage"


def _weight_diagnosis(shape, tp, pp, stage, got, want) -> str:
    vocab_bytes = shape["vocab"] * shape["hidden"] * 2
    diff = got - want["weight_bytes"]
    if tp > 1 and any(is_close(diff, n * (vocab_bytes - vocab_bytes // tp), 1e-9) for n in (1, 2)):
        return " -- the embedding and the LM head are split by vocabulary rows across the TP ranks"
    if pp > 1 and shape["tied"] and stage == pp - 1 and is_close(-diff, vocab_bytes // tp, 1e-9):
        return " -- with two or more stages the last one holds its own copy of a tied LM head"
    return ""


__all__ = ["check_tp_mlp", "check_tp_attention", "check_allreduce_bytes", "check_device_bytes", "CheckFailed"]

EXERCISES = [
    Exercise(check_tp_mlp, ("shard_mlp", "mlp_forward")),
    Exercise(check_tp_attention, ("shard_attention",)),
    Exercise(check_allreduce_bytes, ("allreduce_bytes",)),
    Exercise(check_device_bytes, ("device_bytes",)),
]
