"""Make an AVX-512 machine look like an AVX2 one to torch, vLLM and bitsandbytes (timing only).

Course authors measure lab times for the laptops learners have (AVX2, no AVX-512), often on
servers that have AVX-512. Environment variables limit most libraries (``tools/as-avx2-host``
sets them): ATen's kernels (ATEN_CPU_CAPABILITY=avx2), oneDNN (ONEDNN_MAX_CPU_ISA=AVX2) and
MKL (MKL_ENABLE_INSTRUCTIONS=AVX2). What remains is code that asks about the hardware itself:
vLLM picks its kernel library (``_C_AVX2`` or ``_C_AVX512``), its attention ISA and its
AMX paths from ``torch.cpu.get_capabilities()``, and bitsandbytes asks its native library
about AVX512-BF16. This module, found first on PYTHONPATH, hides those flags from both,
without importing torch itself (processes that never use torch start as fast as before).
"""
import importlib.abc
import importlib.machinery
import os
import sys

HIDDEN = ("avx512", "amx", "avx10")          # flag prefixes an AVX2 host does not have


def _avx2_capabilities(original):
    def get_capabilities():
        from types import MappingProxyType
        caps = dict(original())
        for name in caps:
            if name.startswith(HIDDEN):
                caps[name] = False
        return MappingProxyType(caps)
    return get_capabilities


def _patch(module):
    if module.__name__ == "torch.cpu":
        module.get_capabilities = _avx2_capabilities(module.get_capabilities)
    elif module.__name__ == "bitsandbytes.functional":
        module.has_avx512bf16 = lambda: False


class _PatchAfterLoad(importlib.abc.MetaPathFinder):
    """Finds nothing itself: lets the real finders load a module, then patches it."""

    TARGETS = {"torch.cpu", "bitsandbytes.functional"}

    def find_spec(self, name, path=None, target=None):
        if name not in self.TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader, exec_module = spec.loader, spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)
        loader.exec_module = exec_and_patch
        return spec


if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2":
    sys.meta_path.insert(0, _PatchAfterLoad())
