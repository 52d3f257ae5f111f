"""Cost: the bytes a loaded model holds (quantization state included) and a decode run to time."""
from __future__ import annotations

import torch
from torch import nn

from inferlab.quant.quality import model_device


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
