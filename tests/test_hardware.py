"""inferlab.hardware: the GPU catalog and its lookups."""

import pytest

from inferlab import hardware

REQUIRED = ["T4", "L4", "A10G", "A100-40GB", "A100-80GB", "L40S", "H100", "H200", "B200", "MI300X"]


def test_catalog_has_the_required_gpus():
    for name in REQUIRED:
        assert name in hardware.CATALOG


def test_every_entry_is_complete_and_cited():
    for gpu in hardware.CATALOG.values():
        assert gpu.memory_gib > 0 and gpu.bandwidth_gbs > 0 and gpu.bf16_tflops > 0
        assert gpu.memory_bytes == int(gpu.memory_gib * 2**30)
        assert gpu.fp8_tflops is None or gpu.fp8_tflops > gpu.bf16_tflops
        assert "datasheet" in gpu.source.lower() or "data sheet" in gpu.source.lower()


def test_dense_figures():
    # Dense, not the 2:4-sparsity headline numbers.
    assert hardware.get_gpu("H100").bf16_tflops == 989
    assert hardware.get_gpu("H100").fp8_tflops == 1979
    assert hardware.get_gpu("A100-80GB").fp8_tflops is None
    assert hardware.get_gpu("T4").fp8_tflops is None
    assert "FP16" in hardware.get_gpu("T4").notes


@pytest.mark.parametrize("alias,name", [
    ("h100", "H100"), ("H100 SXM", "H100"), ("nvidia-h100-80gb", "H100"),
    ("a100-80g", "A100-80GB"), ("A100_80GB", "A100-80GB"), ("a100-40gb", "A100-40GB"),
    ("mi300x", "MI300X"), ("l40s", "L40S"), ("t4", "T4"), ("h200", "H200"),
])
def test_aliases(alias, name):
    assert hardware.get_gpu(alias).name == name


def test_get_gpu_passes_gpu_objects_through():
    gpu = hardware.CATALOG["L4"]
    assert hardware.get_gpu(gpu) is gpu


def test_unknown_gpu_is_a_one_line_error_listing_known_names():
    with pytest.raises(ValueError) as info:
        hardware.get_gpu("rtx-9090")
    message = str(info.value)
    assert "\n" not in message
    assert "H100" in message and "MI300X" in message


def test_gpu_table_lists_everything():
    table = hardware.gpu_table()
    for name in REQUIRED:
        assert name in table


def test_gpus_are_frozen():
    with pytest.raises(Exception):
        hardware.CATALOG["H100"].memory_gib = 1
