"""Quantization libraries: bitsandbytes (LLM.int8, NF4, FP4) through transformers, and the AWQ/GPTQ
checkpoints model publishers ship for the GPU tier."""
from __future__ import annotations

import logging

import torch


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


# Checkpoints quantized and published by the model's own publisher, for the GPU profile's models.
PUBLISHED_QUANTIZED = {
    f"Qwen/Qwen2.5-{size}-Instruct": {"awq": f"Qwen/Qwen2.5-{size}-Instruct-AWQ",
                                      "gptq": f"Qwen/Qwen2.5-{size}-Instruct-GPTQ-Int4"}
    for size in ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B")
}
