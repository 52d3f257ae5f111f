"""The host's ISA class and the engine settings the CPU profile derives from it."""
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from inferlab import engines, host
from inferlab.engines import launch

REPO = Path(__file__).resolve().parent.parent
AVX2_LAPTOP = {"avx", "avx2", "fma", "f16c"}                                    # AMD Zen 3, Intel Core
AVX512_SERVER = AVX2_LAPTOP | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}   # Ice Lake
AVX512_BF16 = AVX512_SERVER | {"avx512_bf16"}                                     # Zen 4, Cooper Lake
AMX = AVX512_BF16 | {"amx_tile", "amx_bf16", "amx_int8"}                          # Sapphire Rapids


@pytest.mark.parametrize("machine, flags, expected", [
    ("x86_64", AVX2_LAPTOP, "avx2"),
    ("x86_64", AVX512_SERVER, "avx512"),
    ("x86_64", AVX512_BF16, "avx512_bf16"),
    ("x86_64", AMX, "amx"),
    ("x86_64", {"sse4_2", "avx"}, "other"),                   # x86-64 without AVX2
    ("AMD64", AVX2_LAPTOP, "avx2"),                           # Windows spells the architecture so
    ("aarch64", {"asimd", "bf16"}, "arm64"),
    ("arm64", set(), "arm64"),
    ("riscv64", set(), "other"),
])
def test_isa_class_from_cpuinfo_flags(machine, flags, expected):
    assert host.isa_class(machine, flags) == expected


def test_isa_class_reads_torchs_flag_names_too():
    torch_names = {"avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_tile": False}
    assert host.isa_class("x86_64", {k for k, v in torch_names.items() if v}) == "avx512_bf16"


def _host(isa, cores=2):
    return host.Host(cpu_model="test CPU", isa=isa, physical_cores=cores, system="Linux", machine="x86_64")


@pytest.mark.parametrize("isa, dtype", [("avx2", "float32"), ("avx512", "float32"),
                                        ("avx512_bf16", "bfloat16"), ("amx", "bfloat16")])
def test_bfloat16_only_where_the_cpu_multiplies_it_in_hardware(isa, dtype):
    assert host.engine_settings(_host(isa)).dtype == dtype


@pytest.mark.parametrize("cores, compact", [(1, True), (2, True), (4, True), (5, False), (64, False)])
def test_on_few_cores_the_worker_runs_inside_the_engine_core(cores, compact):
    settings = host.engine_settings(_host("avx2", cores))
    assert settings.compact == compact
    if compact:
        assert settings.env() == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
        assert settings.args() == {"distributed_executor_backend": "uni"}
    else:
        assert settings.env() == {} and settings.args() == {}
    assert f"{cores} cores" in settings.reason


def test_this_host_is_described_with_model_isa_and_cores():
    here = host.detect()
    assert here.isa in host.ISA_CLASSES
    assert here.physical_cores >= 1
    line = here.describe()
    assert here.cpu_model in line and host.ISA_NAMES[here.isa] in line and f"{here.physical_cores} cores" in line


def test_an_avx2_host_can_be_emulated_on_any_x86_machine():
    """tools/as-avx2-host: torch, vLLM's checks and inferlab.host all see an AVX2 machine."""
    code = ("import torch, json; from inferlab import host; h = host.detect(); "
            "print(json.dumps([h.isa, h.emulated, torch.backends.cpu.get_cpu_capability(), "
            "torch.cpu._is_avx512_supported(), torch.cpu._is_amx_tile_supported()]))")
    out = subprocess.run([str(REPO / "tools" / "as-avx2-host"), sys.executable, "-c", code], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    isa, emulated, capability, avx512, amx = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("AVX2 emulation only applies to x86-64 hosts")
    assert (isa, capability, avx512, amx) == ("avx2", "AVX2", False, False)
    hardware = host.isa_class(platform.machine(), host._cpuinfo()[1])    # not detect(): it may be emulated too
    assert emulated == (hardware != "avx2")


def test_engines_take_dtype_and_layout_from_the_host(monkeypatch):
    monkeypatch.setattr(host, "detect", lambda: _host("avx2"))
    for name in engines.LAYOUT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    _, args, env = launch._defaults(True, None, {})
    assert args["dtype"] == "float32" and args["distributed_executor_backend"] == "uni"
    assert env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    assert launch._defaults(True, None, {"dtype": None})[1]["dtype"] == "float32"    # None: the host's choice
    assert launch._defaults(True, None, {"dtype": "bfloat16"})[1]["dtype"] == "bfloat16"   # explicit wins
    monkeypatch.setattr(host, "detect", lambda: _host("amx", cores=32))
    _, args, env = launch._defaults(True, None, {})
    assert args["dtype"] == "bfloat16" and "distributed_executor_backend" not in args and env == {}


def test_a_layout_the_caller_chose_is_left_alone(monkeypatch):
    monkeypatch.setattr(host, "detect", lambda: _host("avx2"))
    for name in engines.LAYOUT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")             # the caller binds the worker itself
    _, args, env = launch._defaults(True, None, {})
    assert "distributed_executor_backend" not in args and env == {}
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND")
    _, args, env = launch._defaults(True, None, {}, {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    assert "distributed_executor_backend" not in args and env == {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    _, args, env = launch._defaults(True, None, {"tensor_parallel_size": 2})    # in-process cannot shard
    assert "distributed_executor_backend" not in args and set(env) == {"VLLM_CPU_OMP_THREADS_BIND"}  # core per worker
    _, args, _ = launch._defaults(True, None, {"distributed_executor_backend": "mp"})
    assert args["distributed_executor_backend"] == "mp"


def test_the_gpu_profile_keeps_the_engines_own_dtype_and_layout():
    _, args, env = launch._defaults(False, None, {})
    assert "dtype" not in args and "distributed_executor_backend" not in args and env == {}


def test_the_engine_dtype_is_read_from_its_log():
    line = ("(EngineCore pid=1) INFO [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: "
            "model='/m', tokenizer='/m', dtype=torch.float32, max_seq_len=1024, kv_cache_dtype=auto")
    assert engines.parse_engine_dtype("noise\n" + line) == "float32"
    assert engines.parse_engine_dtype("no config line") is None
