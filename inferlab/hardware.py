"""A small catalog of data-centre GPUs: memory, bandwidth and dense tensor throughput.

All throughput figures are DENSE (vendor datasheets often headline 2:4-sparsity numbers,
which are exactly twice these). Memory is the vendor's nominal capacity; vendors write
"GB" but the HBM/GDDR stacks are sized in binary units, so we store it as GiB. What the
driver reports is a little less (an "80 GB" H100 shows about 79.6 GiB); the usable
fraction in inferlab.memory absorbs that.

Bandwidth is in GB/s (10**9 bytes per second), as on the datasheets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

GiB = 2**30


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float
    bandwidth_gbs: float          # GB/s, 10**9 bytes per second
    bf16_tflops: float            # dense BF16 tensor-core TFLOPS
    fp8_tflops: float | None      # dense FP8 tensor-core TFLOPS; None where there is no FP8
    source: str                   # datasheet the figures come from
    notes: str = ""
    memory_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "memory_bytes", int(self.memory_gib * GiB))


_NVIDIA_T4 = "NVIDIA T4 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/tesla-t4/"
_NVIDIA_L4 = "NVIDIA L4 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/l4/"
_NVIDIA_A10 = "NVIDIA A10 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/products/a10-gpu/"
_NVIDIA_A100 = "NVIDIA A100 Tensor Core GPU datasheet (SXM), https://www.nvidia.com/en-us/data-center/a100/"
_NVIDIA_L40S = "NVIDIA L40S GPU datasheet, https://www.nvidia.com/en-us/data-center/l40s/"
_NVIDIA_H100 = "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM), https://www.nvidia.com/en-us/data-center/h100/"
_NVIDIA_H200 = "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM), https://www.nvidia.com/en-us/data-center/h200/"
_NVIDIA_B200 = "NVIDIA DGX B200 / HGX B200 datasheet (per-GPU share of the 8-GPU figures), https://www.nvidia.com/en-us/data-center/dgx-b200/"
_AMD_MI300X = "AMD Instinct MI300X accelerator data sheet, https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html"

CATALOG: dict[str, GPU] = {
    gpu.name: gpu
    for gpu in [
        GPU("T4", 16, 320, 65, None, _NVIDIA_T4,
            notes="Turing has no BF16: bf16_tflops is the FP16 tensor (mixed-precision) figure"),
        GPU("L4", 24, 300, 121, 242.5, _NVIDIA_L4,
            notes="datasheet lists 242 BF16 / 485 FP8 TFLOPS with sparsity; halved here"),
        GPU("A10G", 24, 600, 125, None, _NVIDIA_A10,
            notes="AWS's A10 variant (G5 instances) has no public NVIDIA datasheet; A10 figures"),
        GPU("A100-40GB", 40, 1555, 312, None, _NVIDIA_A100),
        GPU("A100-80GB", 80, 2039, 312, None, _NVIDIA_A100),
        GPU("L40S", 48, 864, 362.05, 733, _NVIDIA_L40S),
        GPU("H100", 80, 3350, 989, 1979, _NVIDIA_H100,
            notes="SXM5 80GB; datasheet's 1979 BF16 / 3958 FP8 are with sparsity"),
        GPU("H200", 141, 4800, 989, 1979, _NVIDIA_H200),
        GPU("B200", 180, 8000, 2250, 4500, _NVIDIA_B200,
            notes="DGX B200: 1,440 GB, 64 TB/s, 36 PFLOPS BF16 / 72 PFLOPS FP8 (sparse) for 8 GPUs"),
        GPU("MI300X", 192, 5300, 1307.4, 2614.9, _AMD_MI300X),
    ]
}

# Spellings people use, in the normalised form of _normalise().
_ALIASES = {
    "h100sxm": "H100", "h100sxm5": "H100", "h10080g": "H100", "h100sxm80g": "H100",
    "h200sxm": "H200", "h200141g": "H200",
    "a100": "A100-80GB", "a100sxm": "A100-80GB", "a100sxm80g": "A100-80GB",
    "a100sxm40g": "A100-40GB",
    "l40s48g": "L40S",
    "mi300": "MI300X",
    "teslat4": "T4",
}


def _normalise(name: str) -> str:
    """'NVIDIA A100 80GB' -> 'a10080g'; 'a100-80g' -> 'a10080g'."""
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    key = re.sub(r"^(nvidia|amd|instinct)+", "", key)
    return re.sub(r"gb$", "g", key)


_LOOKUP = {_normalise(name): name for name in CATALOG} | _ALIASES


def get_gpu(name: str | GPU) -> GPU:
    """Catalog entry by name, case-insensitive, with aliases ("h100", "a100-80g", "mi300")."""
    if isinstance(name, GPU):
        return name
    key = _normalise(name)
    if key not in _LOOKUP:
        raise ValueError(f"unknown GPU {name!r}; known: {', '.join(CATALOG)}")
    return CATALOG[_LOOKUP[key]]


def _fmt_tflops(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def gpu_table() -> str:
    """The catalog as a fixed-width table (dense TFLOPS; memory in GiB, bandwidth in GB/s)."""
    header = f"{'GPU':<11}{'memory GiB':>11}{'GB/s':>8}{'BF16 TFLOPS':>13}{'FP8 TFLOPS':>12}"
    rows = [
        f"{g.name:<11}{g.memory_gib:>11g}{g.bandwidth_gbs:>8,.0f}"
        f"{_fmt_tflops(g.bf16_tflops):>13}{_fmt_tflops(g.fp8_tflops):>12}"
        for g in CATALOG.values()
    ]
    return "\n".join([header, "-" * len(header), *rows, "(dense tensor-core throughput; T4 BF16 column is FP16)"])


# Links between GPUs, for projecting communication time. Bandwidth is per direction, in GB/s:
# what one GPU can send while it receives as much (datasheets quote NVLink as the sum of both).
@dataclass(frozen=True)
class Link:
    name: str
    gbs_per_direction: float
    source: str


LINKS: dict[str, Link] = {link.name: link for link in [
    Link("PCIe 4.0 x16", 31.5, "PCI-SIG PCIe 4.0: 16 GT/s per lane, 128b/130b encoding, 16 lanes"),
    Link("PCIe 5.0 x16", 63.0, "PCI-SIG PCIe 5.0: 32 GT/s per lane, 128b/130b encoding, 16 lanes"),
    Link("NVLink 3 (A100)", 300.0, _NVIDIA_A100 + " (600 GB/s NVLink, both directions)"),
    Link("NVLink 4 (H100)", 450.0, _NVIDIA_H100 + " (900 GB/s NVLink, both directions)"),
]}
