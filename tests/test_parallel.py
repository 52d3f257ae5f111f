"""inferlab.parallel and memory per device: layout errors, distributed workers (and their cleanup after
a failure), tensor parallelism by hand equal to the unsharded model, per-device bytes."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from inferlab import engines, memory, parallel
from inferlab.parallel import ParallelLayoutError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("heads, kv, layers, tp, pp, words", [
    (9, 3, 30, 2, 1, "9 attention heads are not divisible by 2; use 1, 3 or 9"),
    (12, 8, 4, 3, 1, "8 KV heads can be neither split nor replicated evenly over 3 ranks; use 1, 2 or 4"),
    (8, 8, 4, 1, 5, "a pipeline of 5 stages needs at least 5 layers; this model has 4"),
    (8, 8, 4, 0, 1, "the tensor parallel size must be a positive integer, got 0"),
    (8, 8, 4, 1, -2, "the pipeline parallel size must be a positive integer, got -2"),
])
def test_bad_layouts_get_one_line_errors(heads, kv, layers, tp, pp, words):
    with pytest.raises(ParallelLayoutError) as exc:
        parallel.validate_layout(heads, kv, layers, tp, pp)
    assert str(exc.value) == words and "\n" not in str(exc.value)


def test_good_layouts_and_their_shares():
    parallel.validate_layout(9, 3, 30, 3, 2)
    parallel.validate_layout(9, 3, 30, 9)                 # three ranks share each KV head
    assert parallel.kv_heads_per_rank(8, 2) == 4 and parallel.kv_heads_per_rank(2, 8) == 1
    # vLLM's get_pp_indices: the remainder goes to the stages before the last
    assert parallel.stage_layers(30, 4) == [7, 8, 8, 7]
    assert parallel.stage_layers(32, 3) == [11, 11, 10]
    assert parallel.stage_layers(30, 1) == [30]


def test_ring_allreduce_bytes():
    assert parallel.ring_allreduce_bytes(1000, 4) == 1500
    assert parallel.ring_allreduce_bytes(1000, 1) == 0


def _sum_ranks(rank, world):
    import torch
    import torch.distributed as dist
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    return t.item(), os.getpid()


def test_workers_join_a_group_and_return_in_rank_order():
    results = parallel.run_workers(_sum_ranks, 3, timeout=120)
    assert [r[0] for r in results] == [6.0, 6.0, 6.0] and len({r[1] for r in results}) == 3


def _one_rank_fails(rank, world):
    import time
    if rank == 1:
        raise RuntimeError("rank one broke")
    time.sleep(120)


def test_a_failing_rank_stops_the_others_and_leaves_nothing_behind():
    before = set(os.listdir(tempfile.gettempdir()))
    start = time.monotonic()
    with pytest.raises(parallel.WorkerError, match="rank 1 of 3 failed .*: RuntimeError: rank one broke"):
        parallel.run_workers(_one_rank_fails, 3, timeout=120)
    assert time.monotonic() - start < 60
    assert not [p for p in engines.engine_processes() if "inferlab.parallel.worker" in " ".join(p.cmdline())]
    assert not [n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("inferlab-parallel-")]


def _tp_logits(rank, world, model, ids):
    comm = parallel.CountingComm()
    parallel.shard_model(model, rank, world, comm.all_reduce)
    with torch.inference_mode():
        return model(input_ids=ids).logits, comm.calls, comm.buffer_bytes


def test_tensor_parallel_model_equals_the_unsharded_one():
    from inferlab.checks.quantization.models import tiny_llama
    model = tiny_llama(seed=4)           # 4 heads, 2 KV heads, 2 layers, hidden 32
    ids = torch.randint(0, 67, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model(input_ids=ids).logits
    for world in (2, 4):                 # KV heads split, then replicated
        results = parallel.run_workers(_tp_logits, world, model, ids, timeout=120)
        for logits, calls, nbytes in results:
            assert torch.allclose(logits, want, atol=1e-5)
            assert calls == 2 * 2 and nbytes == 2 * 2 * 7 * 32 * 4


def test_shard_model_refuses_a_size_that_does_not_divide_the_heads():
    from inferlab.checks.quantization.models import tiny_llama
    with pytest.raises(ParallelLayoutError, match="4 attention heads are not divisible by 3"):
        parallel.shard_model(tiny_llama(), 0, 3, lambda t: t)


def test_per_device_bytes_add_up():
    one = memory.per_device("llama-3.1-8b", tensor_parallel=1, pipeline_parallel=1, context=4096, batch=2)
    assert one["weight_bytes"] == memory.weight_bytes("llama-3.1-8b")
    assert one["kv_bytes"] == memory.kv_bytes_per_token("llama-3.1-8b") * 4096 * 2
    tp8 = memory.per_device("llama-3.1-8b", tensor_parallel=8, context=4096, batch=2)
    assert tp8["kv_bytes"] * 8 == one["kv_bytes"]          # 8 KV heads: one per rank
    tp16 = memory.per_device("llama-3.1-8b", tensor_parallel=16, context=4096, batch=2)
    assert tp16["kv_bytes"] == tp8["kv_bytes"]             # 16 ranks: each KV head on two ranks
    pp2 = memory.per_device("llama-3.1-8b", pipeline_parallel=2, context=4096, batch=2)
    assert sum(s["weight_bytes"] for s in pp2["stages"]) == one["weight_bytes"]
    tied = memory.per_device("smollm2-135m-instruct", pipeline_parallel=2)
    assert sum(s["params"] for s in tied["stages"]) == memory.param_count("smollm2-135m-instruct") + 49152 * 576


def test_smallest_layout_prefers_tensor_parallelism_in_a_node():
    from inferlab import hardware
    h100 = hardware.get_gpu("H100").memory_bytes
    assert memory.smallest_layout("llama-3.1-8b", h100, context=8192, batch=8) == (1, 1)
    assert memory.smallest_layout("llama-3.1-70b", h100, context=8192, batch=8) == (4, 1)   # TP 2: 77.5 GiB > 72
    t4 = hardware.get_gpu("T4").memory_bytes                # 16 GiB: one node of 8 is not enough
    tp, pp = memory.smallest_layout("llama-3.1-70b", t4, context=8192, batch=8)
    assert tp == 8 and pp >= 2 and not memory.layout_fits("llama-3.1-70b", t4, tensor_parallel=8,
                                                          pipeline_parallel=pp - 1, context=8192, batch=8)


def test_engines_refuse_a_layout_before_starting_anything():
    from inferlab import profiles
    p = profiles.resolve("cpu")
    with pytest.raises(ParallelLayoutError, match="^9 attention heads are not divisible by 2; use 1, 3 or 9$"):
        engines.start("vllm", model=p.model, profile=p, tensor_parallel_size=2)
    assert not engines.engine_processes()


def test_vram_cli_per_device_and_its_error():
    ok = subprocess.run([sys.executable, "-m", "inferlab", "vram", "--config", "llama-3.1-70b", "--tensor-parallel",
                         "4", "--pipeline-parallel", "2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert ok.returncode == 0 and "busiest device" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "inferlab", "vram", "--config", "smollm2-135m-instruct",
                          "--tensor-parallel", "2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "inferlab vram: error: 9 attention heads are not divisible by 2; use 1, 3 or 9"


def test_multi_worker_vllm_on_cpu_gets_a_core_binding_per_worker():
    from inferlab import host
    from inferlab.engines import launch
    assert host.worker_cpu_binding(3, [0, 1]) == "0|1|0"
    assert host.worker_cpu_binding(2, [0, 1, 2, 3, 4]) == "0,1|2,3"
    _, args, env = launch._defaults(True, None, {"tensor_parallel_size": 3})
    assert env["VLLM_CPU_OMP_THREADS_BIND"].count("|") == 2 and "distributed_executor_backend" not in args
    _, _, chosen = launch._defaults(True, None, {"pipeline_parallel_size": 2}, {"VLLM_CPU_OMP_THREADS_BIND": "nobind"})
    assert chosen["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"          # a layout the caller chose stays
