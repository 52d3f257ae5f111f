"""Measuring memory that exists: bytes of a model's tensors and of a KV cache, and a GPU's peak.
These take torch objects a caller already has and import torch only when called."""
from __future__ import annotations

from typing import Any, Iterable


def _unique_storage_bytes(tensors: Iterable) -> int:
    """Bytes of the distinct storages behind `tensors`: a storage shared by several
    tensors (tied weights, views) is counted once, in full."""
    seen: set = set()
    total = 0
    for tensor in tensors:
        if tensor is None:
            continue
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr(), storage.nbytes())
        if key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def tensor_bytes(model: Any, buffers: bool = True) -> int:
    """Measured bytes a torch module holds in tensors: every distinct parameter storage
    (tied weights once) and, unless ``buffers=False``, its buffers (e.g. the rotary
    ``inv_freq`` tables, which are not weights and which no config formula counts)."""
    tensors = list(model.parameters())
    if buffers:
        tensors += list(model.buffers())
    return _unique_storage_bytes(tensors)


def _cache_tensors(cache: Any) -> list:
    """Key and value tensors of a transformers Cache (``.layers`` with ``.keys``/``.values``,
    transformers >= 4.56) or of the legacy tuple of (key, value) pairs per layer."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        tensors = []
        for layer in layers:
            tensors += [getattr(layer, "keys", None), getattr(layer, "values", None)]
        return tensors
    return [t for pair in cache for t in pair]


def kv_cache_bytes(past_key_values: Any) -> int:
    """Measured bytes of the key and value tensors a KV cache holds (after a forward
    pass with use_cache=True: ``outputs.past_key_values``)."""
    return _unique_storage_bytes(_cache_tensors(past_key_values))


def measure_gpu_peak(fn: Any, device: Any = None) -> dict:
    """Run ``fn()`` on a CUDA device and report what the PyTorch allocator saw.

    Returns before_bytes (torch.cuda.memory_allocated before the call), peak_bytes
    (torch.cuda.max_memory_allocated during it, after resetting the peak), after_bytes
    and fn's return value under "result". These count tensors only: the CUDA context
    and the allocator's cached-but-free blocks (memory_reserved) are not included.
    """
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("measure_gpu_peak needs a CUDA GPU and torch cannot see one")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    return {
        "before_bytes": before,
        "peak_bytes": torch.cuda.max_memory_allocated(device),
        "after_bytes": torch.cuda.memory_allocated(device),
        "result": result,
    }
