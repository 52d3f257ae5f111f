"""inferlab.scaling for real: the SageMaker container's routes and its SIGTERM drain on a real vLLM, Ray
Serve replicas replaced after a kill under load, and a local Ray cluster that leaves nothing behind
-- also when the code using it fails. Each test counts processes before and after."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from inferlab import bench, engines, models, profiles
from inferlab.scaling import replicas, sagemaker


def engine_count() -> int:
    return len(engines.engine_processes())


# -- SageMaker ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cpu():
    return profiles.resolve("cpu")


def container(port: int, **options):
    env = sagemaker.local_env(port, profile="cpu", max_model_len=512, **options)
    return sagemaker.container_command(["serve"], env), env


@pytest.fixture(scope="module")
def containers(cpu):
    """Two containers started together (their start-ups overlap): the default drain, and none."""
    before = engine_count()
    configs = {}
    for name, options in (("drain", {}), ("no drain", {"shutdown_timeout": 0})):
        port = next(p for p in iter(engines.free_port, None) if p not in {c["port"] for c in configs.values()})
        configs[name] = sagemaker.local_config(*container(port, **options))
    servers = engines.start_all(configs, profile=cpu)
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()
    assert engine_count() <= before


def test_the_container_answers_ping_and_invocations_and_drains_on_sigterm(containers):
    server = containers["drain"]
    status, seconds = sagemaker.ping(server.url)
    assert status == 200 and seconds < 2
    status, reply = sagemaker.invoke(server.url, {"prompt": "The capital of France is", "max_tokens": 4})
    assert status == 200 and reply["usage"]["completion_tokens"] == 4 and reply["choices"][0]["text"]
    status, reply = sagemaker.invoke(server.url, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3})
    assert status == 200 and reply["choices"][0]["message"]["content"] is not None
    # a long request in flight when SIGTERM comes: it finishes, then the server exits before SIGKILL
    drained = sagemaker.stop_like_sagemaker(server, {"prompt": "Count: 1, 2, 3,", "max_tokens": 120,
                                                     "ignore_eos": True}, after_s=1.0)
    assert drained["status"] == 200 and drained["completion_tokens"] == 120, drained
    assert not drained["sigkill"] and drained["exit_seconds"] < sagemaker.SIGKILL_AFTER_S
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE


def test_without_a_drain_the_request_in_flight_is_cut_off(containers):
    server = containers["no drain"]
    cut = sagemaker.stop_like_sagemaker(server, {"prompt": "Count: 1, 2, 3,", "max_tokens": 400,
                                                 "ignore_eos": True}, after_s=1.0)
    assert cut["status"] != 200 or cut["completion_tokens"] != 400, cut     # aborted, not finished
    assert cut["sigkill"] or cut["exit_seconds"] < sagemaker.SIGKILL_AFTER_S   # and the process is gone either way
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == psutil.STATUS_ZOMBIE


def test_the_dockerfile_is_clean_for_hadolint_and_a_bad_one_is_not():
    assert sagemaker.hadolint(sagemaker.DOCKERFILE) == []
    bad = "FROM python:latest\nRUN pip install vllm\nENTRYPOINT python -m inferlab.scaling.entrypoint\n"
    codes = {f["code"] for f in sagemaker.hadolint(bad)}
    assert {"DL3007", "DL3025"} <= codes, codes        # a latest tag; a shell-form ENTRYPOINT (no SIGTERM)


# -- Ray Serve ----------------------------------------------------------------------------------------

LEAVES_NOTHING = textwrap.dedent("""
    import sys
    from inferlab import models
    from inferlab.scaling import replicas
    with replicas.local_cluster() as cluster:
        print(cluster.workdir, flush=True)
        replicas.deploy(cluster, str(models.prepare_embedded(verbose=False)), "m", num_replicas=1)
        print(len(cluster.replica_pids()), flush=True)
        raise RuntimeError("a cell failed")
""")


def test_a_local_cluster_leaves_no_process_and_no_file_even_when_the_block_fails():
    done = subprocess.run([sys.executable, "-c", LEAVES_NOTHING], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "a cell failed" in done.stderr, done.stderr[-2000:]
    workdir, started = done.stdout.split()[:2]
    assert started == "1"
    assert not Path(workdir).exists()
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if workdir in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_a_killed_replica_is_replaced_and_every_request_is_accounted_for(tokenizer):
    model_dir = str(models.prepare_embedded(verbose=False))
    requests = bench.random_requests(tokenizer, 16, 16, 24, seed=1)
    with replicas.local_cluster() as cluster:
        replicas.deploy(cluster, model_dir, "m", num_replicas=2)
        first = cluster.replica_pids()
        assert len(first) == 2
        assert replicas.listening_addresses(cluster) <= {"127.0.0.1", "::ffff:127.0.0.1"}   # loopback only
        victim = first[0]
        killer = threading.Timer(1.5, os.kill, (victim, signal.SIGKILL))
        with replicas.sample_replicas(0.25) as states:
            killer.start()
            result = bench.run(cluster.url, "m", requests, request_rate=4.0, progress=False, cpus=None, timeout=120)
            deadline = time.monotonic() + 120
            while (victim in cluster.replica_pids() or len(cluster.replica_pids()) < 2) and time.monotonic() < deadline:
                time.sleep(0.5)
        killer.join()
        records = result["records"]
        failed = [r for r in records if not r["success"]]
        assert [r for r in records if r["success"] and r["output_tokens"] == 0] == []   # nothing lost silently
        assert all(r["error"] for r in failed)
        assert victim not in cluster.replica_pids() and len(cluster.replica_pids()) == 2
        assert any(row.get("RUNNING", 0) < 2 for row in states)        # Ray saw the replica go
        again = [requests[r["index"]] for r in failed] or requests[:1]
        retried = bench.run(cluster.url, "m", again, max_concurrency=4, progress=False, cpus=None, timeout=120)
        assert retried["completed"] == len(again)
    assert not cluster.workdir.exists()


# -- KServe's model server ----------------------------------------------------------------------------

def test_kserve_answers_v1_and_v2_with_the_models_greedy_text_on_loopback_and_stops_completely(cpu):
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inferlab.scaling import modelserver
    model_dir = models.prepare_embedded(verbose=False)
    prompts = ["The capital of France is", "Water boils at"]
    with modelserver.start(model_dir, "smol", profile=cpu) as server:
        pid = server.pid
        assert modelserver.listening_addresses(server) == {"127.0.0.1"}
        s1, a1, _ = modelserver.predict_v1(server, prompts, max_tokens=6)
        s2, a2, _ = modelserver.infer_v2(server, prompts, max_tokens=6, request_id="t1")
        bad = modelserver.post(f"{server.url}/v2/models/smol/infer",
                               {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]})
    assert s1 == s2 == 200 and a2["id"] == "t1"
    assert modelserver.v1_texts(a1) == modelserver.v2_texts(a2)
    assert bad[0] == 400 and "text_input" in json.dumps(bad[1])
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    for prompt, text in zip(prompts, modelserver.v1_texts(a1)):
        ids = tok(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.eos_token_id)
        assert text == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
