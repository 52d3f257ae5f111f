"""Weight quantization, measured: reference quantizers, perplexity, footprint and speed.

The pieces lab 03 reuses, each small enough to read in one sitting:

* **Quantizers.** :func:`quantize_int8` (symmetric absmax, per tensor or per output
  channel) and :func:`quantize_int4` (asymmetric, group-wise, integer zero point), with
  their inverses, :func:`bits_per_weight`, and :func:`fake_quantize_linears` /
  :func:`pack_linears` that apply a format to every linear layer of a model.
* **Quality.** :func:`evaluation_text` (a fixed slice of the standard library's
  ``pydoc_data.topics``) and :func:`perplexity` (sliding window, each token scored once).
* **Cost.** :func:`footprint_bytes` (bytes of the tensors a loaded model holds, bitsandbytes'
  quantization state included) and :func:`decode_steps` (a decode run to time).
* **Libraries.** :func:`load_bnb` loads a model through transformers + bitsandbytes in
  LLM.int8, NF4 or FP4 (with or without double quantization).

Conventions. A weight is laid out as ``nn.Linear`` stores it: ``(out_features, in_features)``.
An *output channel* is a row; a *group* is a run of ``group_size`` consecutive weights along a
row (the input dimension), which is how GPTQ, AWQ and llama.cpp group them.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import torch
from torch import nn

INT8_QMAX = 127          # symmetric INT8 uses -127..127 (-128 is left out so the grid is symmetric)
INT4_LEVELS = 15         # asymmetric INT4 codes are 0..15: 15 steps between the lowest and highest code


# ============================================================================ quantizers

def quantize_int8(w: torch.Tensor, per_channel: bool = False, clip_ratio: float = 1.0):
    """Symmetric absmax INT8: ``q = clamp(round(w / s), -127, 127)``, ``s = clip_ratio * max|w| / 127``.

    per_channel=False: one scale for the whole tensor (a 0-d tensor).
    per_channel=True: one scale per output channel, i.e. per row of a 2-D ``(out, in)``
    weight; the scale has shape ``(out, 1)`` so that ``q * scale`` broadcasts.
    clip_ratio < 1 shrinks the range: values beyond it saturate at +-127 (clipping trades
    error on the few largest values for a finer grid everywhere else).

    A tensor or row that is all zeros has max|w| = 0; its scale is set to 1 (any positive
    number works: every q is 0 and dequantizes to exactly 0), so no NaN or inf appears.
    Returns ``(q, scale)``: q is int8 with w's shape, scale is float32.
    """
    w = w.detach().float()
    if per_channel:
        if w.dim() != 2:
            raise ValueError(f"per-channel INT8 expects a 2-D (out, in) weight, got shape {tuple(w.shape)}")
        absmax = w.abs().amax(dim=1, keepdim=True)
    else:
        absmax = w.abs().amax()
    scale = clip_ratio * absmax / INT8_QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(w / scale), -INT8_QMAX, INT8_QMAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``q * scale`` in float32 (scale broadcasts: a 0-d tensor or ``(out, 1)``)."""
    return q.float() * scale.float()


def _grouped(x: torch.Tensor, group_size: int) -> tuple[torch.Tensor, int]:
    """View the last dimension of ``x`` as groups: shape ``(*lead, n_groups, group_size)``.

    Padding rule: when the last dimension K is not a multiple of ``group_size``, the last
    group of each row is padded with copies of the row's last element. Copies never change a
    group's min or max, so the partial group's scale and zero point come from its real
    elements only; the padding is cut off again after dequantization. A group size larger
    than K gives one (partial) group per row: per-channel quantization.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size}")
    k = x.shape[-1]
    n_groups = -(-k // group_size)
    pad = n_groups * group_size - k
    if pad:
        x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], pad)], dim=-1)
    return x.reshape(*x.shape[:-1], n_groups, group_size), k


def quantize_int4(w: torch.Tensor, group_size: int = 128, clip_ratio: float = 1.0):
    """Asymmetric group-wise INT4 with an integer zero point (GPTQ's rule).

    Per group of ``group_size`` consecutive weights along the last dimension:

        lo = clip_ratio * min(min(group), 0)      hi = clip_ratio * max(max(group), 0)
        s  = (hi - lo) / 15                       z  = clamp(round(-lo / s), 0, 15)
        q  = clamp(round(w / s) + z, 0, 15)       w_hat = (q - z) * s

    The range always contains 0, so 0 is exactly representable (it dequantizes to 0), a
    constant group c reconstructs exactly (range [0, c] or [c, 0]), and an all-zero group has
    s = 0, which is replaced by s = 1 (then z = 0, q = 0, w_hat = 0): no NaN, no inf.
    Shapes whose last dimension is not a multiple of group_size: see :func:`_grouped`.

    Returns ``(q, scale, zero)``: q uint8 codes 0..15 with w's shape (one code per byte,
    unpacked), scale float32 and zero uint8, both of shape ``(*w.shape[:-1], n_groups)``.
    """
    w = w.detach().float()
    grouped, k = _grouped(w, group_size)
    lo = grouped.amin(dim=-1).clamp(max=0) * clip_ratio
    hi = grouped.amax(dim=-1).clamp(min=0) * clip_ratio
    scale = (hi - lo) / INT4_LEVELS
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-lo / scale), 0, INT4_LEVELS)
    q = torch.clamp(torch.round(grouped / scale[..., None]) + zero[..., None], 0, INT4_LEVELS)
    q = q.reshape(*w.shape[:-1], -1)[..., :k]
    return q.to(torch.uint8), scale, zero.to(torch.uint8)


def dequantize_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """``(q - zero) * scale`` per group, float32, with q's shape."""
    grouped, k = _grouped(q.float(), group_size)
    w = (grouped - zero.float()[..., None]) * scale.float()[..., None]
    return w.reshape(*q.shape[:-1], -1)[..., :k]


def bits_per_weight(bits: int, group_size: int, scale_bits: int = 16, zero_bits: int = 0) -> float:
    """Storage per weight, scale overhead included: ``bits + (scale_bits + zero_bits) / group_size``.

    Every group of ``group_size`` weights carries one scale (and, for an asymmetric format,
    one zero point). Examples: INT4 with an FP16 scale and a 4-bit zero point per 128 weights
    is 4 + 20/128 = 4.156 bits; INT8 per channel of a 4096-wide row with an FP32 scale is
    8 + 32/4096 = 8.008 bits. Rows whose length is not a multiple of group_size need a padded
    last group, which costs a little more than this formula says (see :func:`linear_bits`).
    """
    return bits + (scale_bits + zero_bits) / group_size


def relative_error(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """``||w - w_hat|| / ||w||`` (Frobenius norms); 0 for an all-zero w reconstructed exactly."""
    w, w_hat = w.detach().float(), w_hat.detach().float()
    norm = torch.linalg.vector_norm(w).item()
    diff = torch.linalg.vector_norm(w - w_hat).item()
    return diff / norm if norm > 0 else diff


def q4_1_roundtrip(w: torch.Tensor, block: int = 32) -> torch.Tensor:
    """llama.cpp's Q4_1 rule on blocks of ``block`` weights along each row: ``w_hat = m + q * d``
    with m = min(block), d = (max - min) / 15, q = round((w - m) / d). Unlike
    :func:`quantize_int4` the grid has a float offset and need not contain 0. Used by lab 03 to
    show that the embedded model's weights already sit on such a grid."""
    grouped, k = _grouped(w.detach().float(), block)
    m = grouped.amin(dim=-1, keepdim=True)
    d = (grouped.amax(dim=-1, keepdim=True) - m) / INT4_LEVELS
    d = torch.where(d > 0, d, torch.ones_like(d))
    w_hat = m + torch.clamp(torch.round((grouped - m) / d), 0, INT4_LEVELS) * d
    return w_hat.reshape(*w.shape[:-1], -1)[..., :k]


# ============================================================================ formats on a model

FORMAT = re.compile(r"^(int8)-(tensor|channel)$|^(int4)-g(\d+)$")


def parse_format(fmt: str) -> dict:
    """``"int8-tensor"``, ``"int8-channel"`` or ``"int4-g<N>"`` -> {"bits", "per_channel", "group_size"}."""
    match = FORMAT.match(fmt)
    if not match:
        raise ValueError(f"unknown format {fmt!r}: use 'int8-tensor', 'int8-channel' or 'int4-g<group size>'")
    if match.group(1):
        return {"bits": 8, "per_channel": match.group(2) == "channel", "group_size": None}
    return {"bits": 4, "per_channel": False, "group_size": int(match.group(4))}


def fake_quantize(w: torch.Tensor, fmt: str) -> torch.Tensor:
    """Quantize then dequantize ``w`` in a format of :func:`parse_format`; float32 result."""
    spec = parse_format(fmt)
    if spec["bits"] == 8:
        return dequantize_int8(*quantize_int8(w, per_channel=spec["per_channel"]))
    return dequantize_int4(*quantize_int4(w, spec["group_size"]), spec["group_size"])


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


# ============================================================================ outliers

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


# ============================================================================ quality

# The evaluation text: these topics of the standard library's pydoc_data.topics (the text of
# Python's language reference that help() shows), joined by blank lines, in this order.
# Every Python installation has them, so the lab needs no download. They change a little
# between Python versions: text_fingerprint() tells two runs whether they read the same text.
EVAL_TOPICS = ("objects", "execmodel", "types")


def evaluation_text(topics: Iterable[str] = EVAL_TOPICS) -> str:
    """The fixed evaluation text: ``pydoc_data.topics.topics[t]`` for t in EVAL_TOPICS, joined
    by blank lines ("Objects, values and types", "Execution model", "Built-in Types")."""
    from pydoc_data.topics import topics as reference
    return "\n\n".join(reference[t] for t in topics)


def text_fingerprint(text: str) -> str:
    """The first 12 hex digits of the text's SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def evaluation_ids(tokenizer, n_tokens: int, text: str | None = None) -> torch.Tensor:
    """The first ``n_tokens`` token ids of the evaluation text (no special tokens), 1-D."""
    text = evaluation_text() if text is None else text
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
    if ids.numel() < n_tokens:
        raise ValueError(f"the evaluation text has {ids.numel()} tokens, fewer than the {n_tokens} asked for")
    return ids[:n_tokens]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def perplexity(model: nn.Module, token_ids, window: int, stride: int) -> float:
    """Perplexity of ``token_ids`` (1-D) under ``model``, sliding window with stride.

    The standard strided evaluation (as in the Hugging Face perplexity guide): windows start
    at 0, stride, 2*stride, ... and span ``window`` tokens (the last one is cut at the end of
    the text); the loop stops after the window that reaches the end. A window [begin, end)
    scores the tokens t with max(prev_end, begin + 1) <= t < end, where prev_end is where the
    previous window ended: only tokens no earlier window scored, and never the window's own
    first token, which has no context inside the window. Token t is scored with the
    log-probability that the logits at position t-1 give it (the label shift); the tokens of
    the window before t are its context.

    With stride < window every token from the second to the last is scored exactly once
    (N - 1 tokens), each after at least window - stride tokens of context once past the first
    window. With stride == window the windows do not overlap and the first token of each
    window is not scored.

        ppl = exp( sum over scored t of -log p(x_t | context) / number of scored tokens )
    """
    ids = torch.as_tensor(token_ids).reshape(-1)
    n = ids.numel()
    if n < 2:
        raise ValueError("perplexity needs at least two tokens")
    if not 1 <= stride <= window:
        raise ValueError(f"need 1 <= stride <= window, got stride={stride}, window={window}")
    device = model_device(model)
    nll_sum, scored, prev_end = 0.0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        chunk = ids[begin:end].to(device)
        logits = model(chunk[None], use_cache=False).logits[0].float()
        first = max(prev_end, begin + 1)              # first token this window scores
        logp = logits[first - begin - 1:end - begin - 1].log_softmax(dim=-1)
        targets = ids[first:end].to(device)
        nll_sum += -logp.gather(1, targets[:, None]).double().sum().item()
        scored += end - first
        prev_end = end
        if end == n:
            break
    return math.exp(nll_sum / scored)


# ============================================================================ cost

def _quant_state_tensors(state) -> list[torch.Tensor]:
    """Tensors of a bitsandbytes QuantState (absmax, code, offset) and of its nested state2."""
    tensors = []
    for value in vars(state).values():
        if isinstance(value, torch.Tensor):
            tensors.append(value)
        elif type(value).__name__ == "QuantState":
            tensors += _quant_state_tensors(value)
    return tensors


def quantization_state_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Tensors that bitsandbytes keeps as plain attributes, outside parameters and buffers.

    * 4-bit (``Linear4bit``): ``weight.quant_state`` holds ``absmax`` (one scale per block of
      64, float32; uint8 with double quantization), ``code`` (the 16-entry NF4/FP4 value
      table), and with double quantization ``offset`` and ``state2`` (its own ``absmax`` and
      256-entry ``code``).
    * 8-bit (``Linear8bitLt``): ``weight.SCB`` (one float32 scale per output row) and
      ``weight.CB`` (the int8 matrix, the same storage as the weight) before the first
      forward pass; after it they move to the module's ``state.SCB`` / ``state.CB``, next to
      ``state.idx`` (the indices of the outlier columns found in the last input, a few bytes).
    """
    tensors = []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            state = getattr(param, "quant_state", None)
            if state is not None:
                tensors += _quant_state_tensors(state)
            for attr in ("CB", "SCB"):
                value = getattr(param, attr, None)
                if isinstance(value, torch.Tensor):
                    tensors.append(value)
        state = getattr(module, "state", None)
        if state is not None and type(state).__name__ == "MatmulLtState":
            tensors += [v for v in vars(state).values() if isinstance(v, torch.Tensor)]
    return tensors


def _storage_key(tensor: torch.Tensor):
    storage = tensor.untyped_storage()
    return (str(tensor.device), storage.data_ptr(), storage.nbytes())


def footprint_breakdown(model: nn.Module) -> dict[str, int]:
    """Bytes held in tensors, by kind: {"parameters", "buffers", "quantization state"}.

    Each distinct storage counts once, in the first kind that holds it (a tied embedding and
    LM head share one storage; bitsandbytes' ``CB`` is the weight's own storage).
    """
    seen: set = set()
    out = {}
    kinds = {"parameters": list(model.parameters()), "buffers": list(model.buffers()),
             "quantization state": quantization_state_tensors(model)}
    for kind, tensors in kinds.items():
        total = 0
        for tensor in tensors:
            if tensor is None:
                continue
            key = _storage_key(tensor)
            if key not in seen:
                seen.add(key)
                total += key[2]
        out[kind] = total
    return out


def footprint_bytes(model: nn.Module) -> int:
    """Bytes of the tensors a loaded model actually holds: every distinct storage of its
    parameters and buffers plus bitsandbytes' quantization state (see
    :func:`quantization_state_tensors`), each storage once.

    For FP32/BF16 models and :func:`pack_linears` models this equals the bytes of parameters
    and buffers. For bitsandbytes it is more: the 4-bit scales (absmax), value tables and
    nested statistics, and the 8-bit row scales (SCB), live as attributes of the weight
    parameter, not as parameters or buffers, so ``model.get_memory_footprint()`` in
    transformers (which sums parameters and buffers) leaves them out. It is what the model
    holds now: on an x86 CPU with AVX512-BF16, bitsandbytes repacks 4-bit weights at the first
    forward pass (absmax converted to BF16, double quantization undone), so the number
    changes after that pass.
    """
    return sum(footprint_breakdown(model).values())


def decode_steps(model: nn.Module, tokenizer, prompt: str = "The history of computing", new_tokens: int = 16):
    """A function that runs ``new_tokens`` greedy decode steps of one token each after ``prompt``.

    The prompt is prefilled once, here; every call decodes from the same cache and cuts it back
    afterwards, so repeated calls do identical work and a timer around a call measures decode only.
    Time it with :func:`inferlab.timing.interleaved` beside other formats: tokens/s =
    new_tokens / seconds.
    """
    device = model_device(model)
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        out = model(ids, use_cache=True)
    cache, first = out.past_key_values, out.logits[:, -1:].argmax(-1)

    @torch.no_grad()
    def run() -> None:
        token = first
        for _ in range(new_tokens):
            step = model(token, past_key_values=cache, use_cache=True)
            token = step.logits[:, -1:].argmax(-1)
        cache.crop(ids.shape[1])            # back to the prompt alone for the next call

    return run


# ============================================================================ bitsandbytes

BNB_FORMATS = {
    "bnb-int8": {"load_in_8bit": True},
    "bnb-nf4": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
    "bnb-nf4-dq": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
    "bnb-fp4": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4"},
    "bnb-fp4-dq": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": True},
}


def import_bitsandbytes():
    """Import bitsandbytes without its import-time log noise, and silence one runtime warning.

    On an x86 CPU with AVX512-BF16, bitsandbytes tries to fetch an optional fused 4-bit GEMM
    from the ``kernels`` package (kernels-community) and logs a warning when that package is
    absent; it then uses the 4-bit kernel compiled into its own CPU library, which is what
    this course runs (see :func:`bnb_cpu_path`). LLM.int8 logs at every call that it casts
    float32 inputs to float16; a logging filter drops that one line.
    """
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    finally:
        logger.setLevel(level)
    matmul_logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropCastWarning) for f in matmul_logger.filters):
        matmul_logger.addFilter(_DropCastWarning())
    return bitsandbytes


class _DropCastWarning(logging.Filter):
    """Drops LLM.int8's per-call log line "MatMul8bitLt: inputs will be cast from ... to float16"."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def bnb_cpu_path() -> str:
    """Which kernels bitsandbytes uses on this machine's CPU, in one line."""
    bnb = import_bitsandbytes()
    import bitsandbytes.functional as F
    avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512"
    int8 = ("LLM.int8: int8 matmul via torch._int_mm (AVX-512), outlier columns in float16"
            if avx512 else "LLM.int8: int8 matmul via the generic fallback, outlier columns in float16")
    if F.has_avx512bf16():
        four = ("4-bit: weights repacked at the first forward; fused 4-bit x BF16 kernel of the "
                "bitsandbytes CPU library (activations cast to BF16)")
    else:
        four = "4-bit: weights dequantized to the compute dtype, then a dense matmul"
    return f"bitsandbytes {bnb.__version__} on CPU ({torch.backends.cpu.get_cpu_capability()}): {int8}; {four}"


def load_bnb(model_dir: str, fmt: str, dtype: str = "float32", device: str = "cpu"):
    """Load a causal LM through transformers + bitsandbytes in one of :data:`BNB_FORMATS`.

    Every linear layer except the LM head is quantized at load time; the embedding and the
    norms stay in ``dtype``, which is also the 4-bit compute dtype. Returns the model in eval
    mode.
    """
    if fmt not in BNB_FORMATS:
        raise ValueError(f"unknown bitsandbytes format {fmt!r}: use one of {', '.join(BNB_FORMATS)}")
    import_bitsandbytes()
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch_dtype = getattr(torch, dtype)
    config = BitsAndBytesConfig(**BNB_FORMATS[fmt], bnb_4bit_compute_dtype=torch_dtype)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=config, dtype=torch_dtype,
                                                 device_map=device)
    return model.eval()


# ============================================================================ engines (GPU tier)

# Checkpoints quantized and published by the model's own publisher, for the GPU profile's models.
PUBLISHED_QUANTIZED = {
    f"Qwen/Qwen2.5-{size}-Instruct": {"awq": f"Qwen/Qwen2.5-{size}-Instruct-AWQ",
                                      "gptq": f"Qwen/Qwen2.5-{size}-Instruct-GPTQ-Int4"}
    for size in ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B")
}


def _post_json(url: str, payload: dict, timeout: float = 600) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def engine_prompt_nll(server, ids: list[int]) -> list[float]:
    """Negative log-likelihood of each prompt token after the first, as a vLLM server computes
    it (``prompt_logprobs``, a vLLM extension of the completions API)."""
    reply = _post_json(f"{server.base_url}/completions",
                       {"model": server.model_name, "prompt": ids, "max_tokens": 1, "temperature": 0,
                        "prompt_logprobs": 0})
    rows = reply["choices"][0]["prompt_logprobs"]
    return [-row[str(token)]["logprob"] for token, row in zip(ids[1:], rows[1:])]


def engine_perplexity(server, token_ids, window: int, stride: int) -> float:
    """:func:`perplexity`'s windows and scoring, computed by a running vLLM server."""
    ids = [int(t) for t in torch.as_tensor(token_ids).reshape(-1)]
    n, nll, scored, prev_end = len(ids), 0.0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        first = max(prev_end, begin + 1)
        per_token = engine_prompt_nll(server, ids[begin:end])   # per_token[i] scores ids[begin + 1 + i]
        nll += sum(per_token[first - begin - 1:end - begin - 1])
        scored += end - first
        prev_end = end
        if end == n:
            break
    return math.exp(nll / scored)


def engine_throughput(server, token_ids, requests: int = 32, prompt_tokens: int = 128,
                      new_tokens: int = 128) -> float:
    """Generated tokens per second of a vLLM server under ``requests`` concurrent requests
    (prompts cut from ``token_ids``, greedy, ``ignore_eos`` so each makes ``new_tokens``)."""
    ids = [int(t) for t in torch.as_tensor(token_ids).reshape(-1)]
    prompts = [ids[(i * 37) % max(1, len(ids) - prompt_tokens):][:prompt_tokens] for i in range(requests)]

    def one(prompt):
        reply = _post_json(f"{server.base_url}/completions",
                           {"model": server.model_name, "prompt": prompt, "max_tokens": new_tokens,
                            "temperature": 0, "ignore_eos": True})
        return reply["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=requests) as pool:
        generated = sum(pool.map(one, prompts))
    return generated / (time.perf_counter() - start)


def engine_weight_gib(server) -> float | None:
    """The weight memory vLLM reports in its log ("Model loading took X GiB"), or None."""
    found = re.findall(r"Model loading took ([\d.]+) GiB", server.log_text())
    return float(found[-1]) if found else None
