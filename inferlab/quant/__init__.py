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
  LLM.int8, NF4 or FP4 (with or without double quantization); ``PUBLISHED_QUANTIZED`` names the
  AWQ/GPTQ checkpoints of the GPU profile's models. Measuring them on a vLLM server is
  ``inferlab.serving_eval``'s job.

One module per bullet: ``formats``, ``layers``, ``quality``, ``cost``, ``libraries``.

Conventions. A weight is laid out as ``nn.Linear`` stores it: ``(out_features, in_features)``.
An *output channel* is a row; a *group* is a run of ``group_size`` consecutive weights along a
row (the input dimension), which is how GPTQ, AWQ and llama.cpp group them.
"""
from inferlab.quant.formats import (FORMAT, INT4_LEVELS, INT8_QMAX, bits_per_weight, dequantize_int4, dequantize_int8, fake_quantize, parse_format, q4_1_roundtrip, quantize_int4, quantize_int8, relative_error)
from inferlab.quant.layers import (PackedLinear, capture_linear_input, fake_quantize_linears, fake_quantized, linear_bits, linear_input_absmax, pack_linears, pack_nibbles, quantizable_linears, unpack_nibbles)
from inferlab.quant.quality import (EVAL_TOPICS, evaluation_ids, evaluation_text, model_device, perplexity, text_fingerprint)
from inferlab.quant.cost import (decode_steps, footprint_breakdown, footprint_bytes, quantization_state_tensors)
from inferlab.quant.libraries import (BNB_FORMATS, PUBLISHED_QUANTIZED, bnb_cpu_path, import_bitsandbytes, load_bnb)

__all__ = ["BNB_FORMATS", "EVAL_TOPICS", "FORMAT", "INT4_LEVELS", "INT8_QMAX", "PUBLISHED_QUANTIZED", "PackedLinear",
           "bits_per_weight", "bnb_cpu_path", "capture_linear_input", "decode_steps", "dequantize_int4",
           "dequantize_int8", "evaluation_ids", "evaluation_text", "fake_quantize", "fake_quantize_linears",
           "fake_quantized", "footprint_breakdown", "footprint_bytes", "import_bitsandbytes", "linear_bits",
           "linear_input_absmax", "load_bnb", "model_device", "pack_linears", "pack_nibbles",
           "parse_format", "perplexity", "q4_1_roundtrip", "quantizable_linears",
           "quantization_state_tensors", "quantize_int4", "quantize_int8", "relative_error",
           "text_fingerprint", "unpack_nibbles"]
