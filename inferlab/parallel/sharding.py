"""Tensor parallelism by hand (Megatron-LM's layout) on transformers' Llama-family modules.

Weights are ``nn.Linear`` weights, shaped [out_features, in_features].
- MLP: gate and up are column-parallel (each rank keeps a slice of their output rows), so each rank
  computes its slice of the intermediate activation with no communication; down is row-parallel
  (each rank keeps the matching slice of its input columns) and yields a partial sum of the output;
  one all-reduce adds the partial sums.
- Attention: q, k and v are column-parallel by whole heads, so each rank attends over its own heads;
  o is row-parallel over the same heads; one all-reduce. When ranks outnumber KV heads, each rank
  keeps a copy of the one KV head its query heads use.
"""
from __future__ import annotations

from inferlab.parallel.layout import validate_layout, kv_heads_per_rank


def _rows(weight, start: int, count: int):
    return weight[start:start + count].clone()


def _cols(weight, start: int, count: int):
    return weight[:, start:start + count].clone()


def shard_mlp(gate, up, down, rank: int, world_size: int) -> dict:
    """This rank's gate/up rows and down columns of a gated MLP."""
    width = gate.shape[0] // world_size
    start = rank * width
    return {"gate": _rows(gate, start, width), "up": _rows(up, start, width), "down": _cols(down, start, width)}


def shard_attention(q, k, v, o, num_heads: int, num_kv_heads: int, rank: int, world_size: int) -> dict:
    """This rank's q/k/v rows and o columns, by whole heads; KV heads replicated when too few."""
    validate_layout(num_heads, num_kv_heads, 1, world_size)
    head_dim = q.shape[0] // num_heads
    heads = num_heads // world_size
    kv_local = kv_heads_per_rank(num_kv_heads, world_size)
    kv_first = rank * kv_local if num_kv_heads >= world_size else rank // (world_size // num_kv_heads)
    return {"q": _rows(q, rank * heads * head_dim, heads * head_dim),
            "k": _rows(k, kv_first * head_dim, kv_local * head_dim),
            "v": _rows(v, kv_first * head_dim, kv_local * head_dim),
            "o": _cols(o, rank * heads * head_dim, heads * head_dim)}


def shard_model(model, rank: int, world_size: int, all_reduce, mlp_fn=shard_mlp, attention_fn=shard_attention,
                mlp_forward=None):
    """Turn a transformers Llama-family model into this rank's tensor-parallel part, in place.

    mlp_fn and attention_fn cut the weights (yours or the references above); all_reduce(tensor) sums
    a tensor over the ranks in place. mlp_forward(x, cut, all_reduce), if given, replaces each MLP's
    forward (the cut from mlp_fn); otherwise the MLP runs as is and its down output is all-reduced.
    Embeddings, norms and the LM head stay whole on every rank.
    """
    import torch
    config = model.config
    validate_layout(config.num_attention_heads, config.num_key_value_heads, config.num_hidden_layers, world_size)

    def reduce_output(module, inputs, output):
        return all_reduce(output)

    with torch.no_grad():
        for layer in model.model.layers:
            mlp, attn = layer.mlp, layer.self_attn
            cut = mlp_fn(mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight, rank, world_size)
            for name, key in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
                getattr(mlp, name).weight = torch.nn.Parameter(cut[key].contiguous(), requires_grad=False)
            cut = attention_fn(attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight, attn.o_proj.weight,
                               config.num_attention_heads, config.num_key_value_heads, rank, world_size)
            for name, key in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("o_proj", "o")):
                getattr(attn, name).weight = torch.nn.Parameter(cut[key].contiguous(), requires_grad=False)
            attn.num_key_value_groups = cut["q"].shape[0] // cut["k"].shape[0]
            attn.o_proj.register_forward_hook(reduce_output)
            if mlp_forward is None:
                mlp.down_proj.register_forward_hook(reduce_output)
            else:
                mlp.forward = _bound_forward(mlp_forward, {"gate": mlp.gate_proj.weight, "up": mlp.up_proj.weight,
                                                           "down": mlp.down_proj.weight}, all_reduce)
    return model


def _bound_forward(mlp_forward, cut: dict, all_reduce):
    def forward(x):
        return mlp_forward(x, cut, all_reduce)
    return forward
