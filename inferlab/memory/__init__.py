"""How much GPU memory does a model need? Memory math from a Hugging Face ``config.json``.

Everything here is arithmetic on the config: no weights are downloaded and no torch
is imported. (The measurement helpers, ``memory.measure``, take torch objects that a caller
already has; they import torch only when called.) The pieces of an inference-time
memory budget are

    total = weights + KV cache + activations + overhead

* weights      = param_count * bytes_per_param(dtype)
* KV cache     = kv_bytes_per_token * context * batch
* activations  = transient buffers of one scheduler step of at most
                 ``max_batched_tokens`` tokens (see :func:`activation_bytes`)
* overhead     = CUDA context + allocator slack, a documented constant
                 (see :func:`overhead_bytes`)

``param_count`` is exact: it reproduces the tensor-element total of the published
safetensors checkpoints for the supported architectures (pinned in tests).

Units: GiB = 2**30 bytes, GB = 10**9 bytes. Functions return plain byte counts (int).

The package: ``shapes`` (config.json -> ModelShape), ``sizing`` (the arithmetic), ``parallel`` (the
same per device under tensor and pipeline parallelism), ``measure`` (tensors that exist) and
``report`` (the text ``inferlab vram`` prints).
"""
from inferlab.memory.measure import kv_cache_bytes, measure_gpu_peak, tensor_bytes
from inferlab.memory.parallel import layer_params_per_rank, layout_fits, per_device, smallest_layout
from inferlab.memory.report import format_bytes, format_per_device, format_report
from inferlab.memory.shapes import (SUPPORTED_MODEL_TYPES, ModelShape, load_config, shape_dict, shape_from_config,
                                    shipped_configs)
from inferlab.memory.sizing import (ALLOCATOR_SLACK_BYTES, CUDA_CONTEXT_BYTES, DEFAULT_CONTEXTS,
                                    DEFAULT_MAX_BATCHED_TOKENS, DTYPE_BYTES, GB, MAX_GPUS, USABLE_FRACTION, GiB,
                                    activation_bytes, active_param_count, dtype_bytes, estimate, gpus_needed,
                                    kv_bytes_per_token, kv_capacity, kv_elements_per_token, max_batch_context,
                                    overhead_bytes, param_breakdown, param_count, weight_bytes)

__all__ = ["format_per_device", "layer_params_per_rank", "layout_fits", "per_device", "smallest_layout", "ALLOCATOR_SLACK_BYTES", "CUDA_CONTEXT_BYTES", "DEFAULT_CONTEXTS", "DEFAULT_MAX_BATCHED_TOKENS",
           "DTYPE_BYTES", "GB", "GiB", "MAX_GPUS", "ModelShape", "SUPPORTED_MODEL_TYPES", "USABLE_FRACTION",
           "activation_bytes", "active_param_count", "dtype_bytes", "estimate", "format_bytes",
           "format_report", "gpus_needed", "kv_bytes_per_token", "kv_cache_bytes", "kv_capacity",
           "kv_elements_per_token", "load_config", "max_batch_context", "measure_gpu_peak", "overhead_bytes",
           "param_breakdown", "param_count", "shape_dict", "shape_from_config", "shipped_configs",
           "tensor_bytes", "weight_bytes"]
