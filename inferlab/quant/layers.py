"""A format applied to a model: every linear layer fake-quantized in place (and restored), or packed into
real low-bit storage, and the activations that reach a layer."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch
from torch import nn

from inferlab.quant.cost import footprint_breakdown
from inferlab.quant.formats import (dequantize_int4, dequantize_int8, fake_quantize, parse_format, quantize_int4,
                                    quantize_int8, relative_error)


def quantizable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` layers a weight format applies to: all of them except the output head.

    The LM head is left alone, as bitsandbytes does by default: in many small models (the
    embedded SmolLM2 among them) it is tied to the input embedding, which stays in the
    model's dtype like the norms.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and module is not head]


def _quantizer(fmt: str | Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    return fmt if callable(fmt) else (lambda w: fake_quantize(w, fmt))


@torch.no_grad()
def fake_quantize_linears(model: nn.Module, fmt: str | Callable) -> dict[str, float]:
    """Replace the weight of every :func:`quantizable_linears` layer by its quantized-then-
    dequantized value, in place ("fake quantization": the model computes with exactly the
    values a quantized kernel would see, stored in the original dtype). ``fmt`` is a format
    name or a function ``w -> w_hat``. Returns {layer name: relative error}."""
    errors = {}
    for name, module in quantizable_linears(model):
        w = module.weight
        w_hat = _quantizer(fmt)(w.detach().float())
        errors[name] = relative_error(w, w_hat)
        w.copy_(w_hat.to(w.dtype))
    return errors


@contextlib.contextmanager
def fake_quantized(model: nn.Module, fmt: str | Callable):
    """``with fake_quantized(model, "int4-g128") as errors:`` -- fake-quantized inside the
    block (errors as :func:`fake_quantize_linears` returns them), original weights after it."""
    originals = {name: module.weight.detach().clone() for name, module in quantizable_linears(model)}
    try:
        yield fake_quantize_linears(model, fmt)
    finally:
        with torch.no_grad():
            for name, module in quantizable_linears(model):
                module.weight.copy_(originals[name])


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte along the last dimension (even index in the low nibble)."""
    if q.shape[-1] % 2:
        q = torch.cat([q, torch.zeros_like(q[..., :1])], dim=-1)
    q = q.to(torch.uint8)
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: the first ``k`` codes of each row."""
    low, high = packed & 0xF, packed >> 4
    return torch.stack([low, high], dim=-1).reshape(*packed.shape[:-1], -1)[..., :k]


class PackedLinear(nn.Module):
    """A linear layer that really holds its weight in INT8 or packed INT4 (as buffers).

    INT8: ``qweight`` int8 (out, in) and ``scale`` float32 (a 0-d tensor or (out, 1)).
    INT4: ``qweight`` uint8 (out, ceil(in / 2)), two codes per byte; ``scale`` float32 and
    ``zero`` uint8 (one byte per zero point, 0..15), both (out, n_groups). Float32 scales
    keep the arithmetic identical to :func:`fake_quantize`, so a packed model computes the
    same logits as the fake-quantized one; FP16 scales would save 16 bits per group.

    ``forward`` dequantizes the whole weight and calls ``F.linear``: correct but slow. Real
    kernels (Marlin, ExLlama, bitsandbytes) fuse the dequantization into the matmul.
    """

    def __init__(self, linear: nn.Linear, fmt: str):
        super().__init__()
        spec = parse_format(fmt)
        self.fmt, self.bits, self.group_size = fmt, spec["bits"], spec["group_size"]
        self.out_features, self.in_features = linear.out_features, linear.in_features
        self.compute_dtype = linear.weight.dtype
        w = linear.weight.detach().float()
        if self.bits == 8:
            q, scale = quantize_int8(w, per_channel=spec["per_channel"])
            self.register_buffer("qweight", q)
            self.register_buffer("scale", scale)
        else:
            q, scale, zero = quantize_int4(w, self.group_size)
            self.register_buffer("qweight", pack_nibbles(q))
            self.register_buffer("scale", scale)
            self.register_buffer("zero", zero)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def dequantized_weight(self) -> torch.Tensor:
        if self.bits == 8:
            return dequantize_int8(self.qweight, self.scale)
        q = unpack_nibbles(self.qweight, self.in_features)
        return dequantize_int4(q, self.scale, self.zero, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight().to(self.compute_dtype)
        return nn.functional.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fmt={self.fmt}"


@torch.no_grad()
def pack_linears(model: nn.Module, fmt: str) -> nn.Module:
    """Replace every :func:`quantizable_linears` layer by a :class:`PackedLinear`, in place;
    the float weights are released. Returns the model."""
    for name, module in quantizable_linears(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, PackedLinear(module, fmt))
    return model


def linear_bits(model: nn.Module) -> float:
    """Measured bits per weight of the layers :func:`quantizable_linears` covers (whatever
    class they have after quantization: ``nn.Linear``, bitsandbytes' ``Linear8bitLt`` and
    ``Linear4bit`` subclass it, or :class:`PackedLinear`): the bytes of every tensor those
    layers hold -- codes, scales, zero points, value tables, padding -- times 8, over the
    number of weights they represent."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    stored, weights = 0, 0
    for module in model.modules():
        if module is head or not isinstance(module, (nn.Linear, PackedLinear)):
            continue
        stored += sum(footprint_breakdown(module).values())
        weights += module.in_features * module.out_features
    return 8 * stored / weights


@torch.no_grad()
def linear_input_absmax(model: nn.Module, prompts: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-input-channel max |x| of the activations entering every ``nn.Linear`` of the model,
    over all tokens of all prompts (each a 1-D tensor of token ids, run separately).

    Uses forward pre-hooks (they see a module's input) and removes them before returning.
    Returns {module name: float32 tensor of shape (in_features,)}.
    """
    stats: dict[str, torch.Tensor] = {}

    def make_hook(name):
        def hook(module, args):
            x = args[0].detach()
            channel_max = x.abs().reshape(-1, x.shape[-1]).amax(dim=0).float()
            stats[name] = channel_max if name not in stats else torch.maximum(stats[name], channel_max)
        return hook

    handles = [module.register_forward_pre_hook(make_hook(name))
               for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    device = next(model.parameters()).device
    try:
        for ids in prompts:
            model(torch.as_tensor(ids).reshape(1, -1).to(device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: value.cpu() for name, value in stats.items()}


@torch.no_grad()
def capture_linear_input(model: nn.Module, name: str, ids: torch.Tensor) -> torch.Tensor:
    """The activations entering the linear layer ``name`` for one prompt: (tokens, in_features)."""
    captured = []
    module = model.get_submodule(name)
    handle = module.register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
    try:
        model(torch.as_tensor(ids).reshape(1, -1).to(next(model.parameters()).device))
    finally:
        handle.remove()
    x = captured[0]
    return x.reshape(-1, x.shape[-1]).float().cpu()
