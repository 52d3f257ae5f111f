"""inferlab.engines: flags, parsers and process handling on canned input, then a few real vLLM starts.

The real-engine tests are few on purpose (each start costs about half a minute on two cores):
a start that must fail (a model path that does not exist), a port that is taken, one real
start with a chat request, and the `inferlab serve` command stopped with SIGTERM. Each one
counts engine processes before and after.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from inferlab import engines, host, memory, metrics, models, profiles
from inferlab.engines import launch, processes
from inferlab.checks import serving

REPO = Path(__file__).resolve().parent.parent


def engine_count() -> int:
    return len(engines.engine_processes())


def wait_for_no_new_engines(before: int, seconds: float = 15) -> int:
    deadline = time.monotonic() + seconds
    while engine_count() > before and time.monotonic() < deadline:
        time.sleep(0.5)
    return engine_count()


# ----------------------------------------------------------------------------- flags

def test_engine_args_become_vllm_flags():
    flags = engines.engine_flags({"max_model_len": 512, "enforce_eager": True, "enable_prefix_caching": False,
                                  "disable_log_stats": False, "seed": None, "served_model_name": ["a", "b"],
                                  "gpu_memory_utilization": 0.5})
    assert flags == ["--max-model-len", "512", "--enforce-eager", "--no-enable-prefix-caching",
                     "--served-model-name", "a", "b", "--gpu-memory-utilization", "0.5"]


def test_generated_flags_are_accepted_by_vllms_own_parser():
    """Flag names are checked against the installed vLLM, not against what we believe they are."""
    _, args, _ = launch._defaults(True, 0.25, {"max_model_len": 512, "max_num_seqs": 8, "max_num_batched_tokens": 64,
                                              "enable_prefix_caching": False, "dtype": "bfloat16",
                                              "disable_uvicorn_access_log": True})
    flags = ["--model", "m", "--served-model-name", "m", "--host", engines.HOST, "--port", "8000",
             *engines.engine_flags(args)]
    code = ("import json, sys\n"
            "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
            "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
            "a = make_arg_parser(FlexibleArgumentParser()).parse_args(json.loads(sys.argv[1]))\n"
            "print(json.dumps({k: getattr(a, k) for k in ['max_model_len', 'max_num_seqs', 'max_num_batched_tokens',"
            " 'enable_prefix_caching', 'dtype', 'kv_cache_memory_bytes', 'enforce_eager',"
            " 'distributed_executor_backend', 'block_size']}))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(flags)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed == {"max_model_len": 512, "max_num_seqs": 8, "max_num_batched_tokens": 64,
                      "enable_prefix_caching": False, "dtype": "bfloat16",
                      "kv_cache_memory_bytes": round(0.25 * 2**30), "enforce_eager": True,
                      "distributed_executor_backend": args.get("distributed_executor_backend"),
                      "block_size": args.get("block_size")}


def test_cpu_defaults_give_an_explicit_cache_and_eager_mode():
    gib, args, _ = launch._defaults(True, None, {})
    assert gib == 1.0 and args["enforce_eager"] is True and args["kv_cache_memory_bytes"] == 2**30
    gib, args, env = launch._defaults(False, None, {"gpu_memory_utilization": 0.5})
    assert gib is None and args == {"gpu_memory_utilization": 0.5} and env == {}
    _, args, _ = launch._defaults(True, 0.5, {"kv_cache_memory_bytes": 1234, "enforce_eager": False})
    assert args["kv_cache_memory_bytes"] == 1234 and args["enforce_eager"] is False   # explicit arguments win


def test_engine_env_keeps_the_whole_gib_variable_from_overriding_the_exact_size(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "4")
    env = engines.engine_env(on_cpu=True, kv_cache_gib=0.25)
    assert "VLLM_CPU_KVCACHE_SPACE" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["HF_HUB_OFFLINE"] == "1"
    assert engines.engine_env(on_cpu=True, kv_cache_gib=0.25, env={"X_TEST": "1"})["X_TEST"] == "1"


def test_served_name_never_shows_a_path():
    assert engines.served_name("/somewhere/models/SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"
    assert engines.served_name("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"


# ----------------------------------------------------------------------------- parsers

METRICS_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 7.0
vllm:num_preemptions_created{engine="0",model_name="m"} 1.7e+09
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 2.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 5.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 4.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 7.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 7.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="128",engine="0",kv_cache_memory_bytes="67108864",num_gpu_blocks="22"} 1.0
"""


def test_metrics_are_parsed_and_summed_over_labels():
    m = engines.parse_metrics(METRICS_TEXT)
    assert m["vllm:num_requests_running"] == 3.0
    assert m["vllm:kv_cache_usage_perc"] == 0.25
    assert m["vllm:num_preemptions_total"] == 7.0
    assert m["vllm:request_success_total"] == 7.0
    assert sorted(v for _, v in m.labelled("vllm:request_success_total")) == [2.0, 5.0]
    assert m["vllm:time_to_first_token_seconds_count"] == 7.0
    labels, value = m.labelled("vllm:cache_config_info")[0]
    assert value == 1.0 and labels["num_gpu_blocks"] == "22" and labels["block_size"] == "128"


LOG_TEXT = """\
(EngineCore pid=1) INFO 11-23 01:11:54 [cpu_worker.py:260] Explicitly set (0.06/12.34) GiB for KV cache on node 0.
(EngineCore pid=1) INFO 11-23 01:11:54 [kv_cache_utils.py:2327] CPU KV cache size: 2,816 tokens, Maximum concurrency for 512 tokens per request: 5.50x
(APIServer pid=2) INFO 11-23 01:11:58 [entry.py:140] Starting vLLM server on http://127.0.0.1:18123
"""


def test_kv_report_is_read_from_the_log():
    assert engines.parse_kv_report(LOG_TEXT) == {"device": "CPU", "tokens": 2816, "max_model_len": 512,
                                                 "max_concurrency": 5.5}
    gpu = "INFO [kv_cache_utils.py:1] GPU KV cache size: 1,234,560 tokens, Maximum concurrency for 32,768 tokens per request: 37.68x"
    assert engines.parse_kv_report(gpu) == {"device": "GPU", "tokens": 1234560, "max_model_len": 32768,
                                            "max_concurrency": 37.68}
    assert engines.parse_kv_report("no such line") is None
    assert engines.parse_kv_report(LOG_TEXT + LOG_TEXT.replace("2,816", "1,024"))["tokens"] == 1024


def test_root_cause_skips_the_generic_wrapper():
    log = ("(EngineCore pid=3) ERROR [core.py:1] ValueError: To serve at least one request with the model's max seq "
           "len (1024), (0.02 GiB KV cache is needed\n"
           "Traceback (most recent call last):\n"
           "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}\n")
    assert engines.root_cause(log).startswith("ValueError: To serve at least one request")
    assert engines.root_cause("huggingface_hub.errors.HFValidationError: Repo id must be ...") == \
        "HFValidationError: Repo id must be ..."
    assert engines.root_cause("all fine") is None


def test_reference_ttft_and_kv_capacity_agree_with_the_check_module():
    chunks = serving._streams()["a chat stream (role chunk first, an empty delta, a held-back token)"][0]
    assert metrics.time_to_first_token(chunks, serving.T0) == pytest.approx(0.41)
    cap = memory.kv_capacity(64 * 2**20, 23040, 128, 512)
    assert cap == {"num_blocks": 22, "tokens": 2816, "max_concurrency": 5.5}   # what vLLM logged for 64 MiB


# ----------------------------------------------------------------------------- processes, without vLLM

def test_engine_processes_are_recognised_by_module_or_title():
    assert engines.is_engine_process("python", ["/x/.venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"])
    assert engines.is_engine_process("python3.11", ["python3.11", "-m", "sglang.launch_server", "--port", "1"])
    assert engines.is_engine_process("VLLM::EngineCor", ["VLLM::EngineCore"])
    assert engines.is_engine_process("VLLM::Worker", ["VLLM::Worker"])
    assert not engines.is_engine_process("bash", ["bash", "-c", "pgrep -f vllm.entrypoints; make test"])
    assert not engines.is_engine_process("python", ["python", "-m", "inferlab", "serve", "vllm"])
    assert not engines.is_engine_process("python", ["python", "-m", "pytest", "tests/test_engines.py"])


def test_free_port_is_free_and_a_bound_port_is_not():
    port = engines.free_port()
    assert engines.port_is_free(port)
    with socket.socket() as sock:
        sock.bind((engines.HOST, port))
        sock.listen()
        assert not engines.port_is_free(port)


SPAWNER = """
import subprocess, sys, time
from inferlab.engines.processes import _die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], preexec_fn=_die_with_parent)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_an_engine_dies_with_the_process_that_started_it():
    """The Linux parent-death signal: a kernel killed with SIGKILL cannot orphan its engine."""
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True, cwd=REPO)
    child = psutil.Process(int(spawner.stdout.readline()))
    assert os.getpgid(child.pid) == child.pid            # a process group of its own
    spawner.kill()
    spawner.wait()
    gone, _ = psutil.wait_procs([child], timeout=10)
    assert gone, "the child outlived its parent"


def test_kill_group_takes_the_whole_tree():
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], preexec_fn=processes._die_with_parent)
    deadline = time.monotonic() + 20
    while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
        time.sleep(0.1)
    tree = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    assert len(tree) == 2
    engines.kill_group(proc, grace=2)                     # the grandchild ignores SIGTERM: SIGKILL follows
    gone, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive


def test_a_zombie_counts_as_gone_and_a_running_process_does_not():
    """A stopped engine's helper whose parent died first is a zombie nobody reaps yet (under a
    subreaper): waiting for it to vanish cost every server stop 20 s inside `make run`."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 20
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = time.monotonic()
        assert processes._wait_gone([psutil.Process(zombie.pid)], timeout=10) == []
        assert time.monotonic() - start < 2
        left = processes._wait_gone([psutil.Process(sleeper.pid)], timeout=0.3)
        assert [p.pid for p in left] == [sleeper.pid]
    finally:
        sleeper.kill()
        sleeper.wait()
        zombie.wait()


# ----------------------------------------------------------------------------- SGLang (no GPU needed)

GPU = profiles.Profile(name="gpu", device="cuda", model="/models/some-model", dtype="bfloat16", offline=False)
CPU = profiles.Profile(name="cpu", device="cpu", model="/models/some-model", dtype="float32", offline=True)


def test_dict_engine_args_become_json():
    assert engines.engine_flags({"structured_outputs_config": {"backend": "xgrammar"}}) == [
        "--structured-outputs-config", '{"backend": "xgrammar"}']


def test_sglang_command_line_uses_its_own_python_and_its_own_option_names(tmp_path):
    cmd = engines.sglang_command(tmp_path / "python", "/models/m", "m", 31000,
                                 {"context_length": 1024, "mem_fraction_static": 0.5, "grammar_backend": "xgrammar",
                                  "enable_metrics": True})
    assert cmd == [str(tmp_path / "python"), "-m", "sglang.launch_server", "--model-path", "/models/m",
                   "--served-model-name", "m", "--host", "127.0.0.1", "--port", "31000", "--context-length", "1024",
                   "--mem-fraction-static", "0.5", "--grammar-backend", "xgrammar", "--enable-metrics"]


def test_sglang_says_why_it_cannot_run(monkeypatch, tmp_path):
    assert "GPU tier only" in engines.sglang_unavailable(CPU)
    monkeypatch.setenv("INFERLAB_SGLANG_PYTHON", str(tmp_path / "missing" / "python"))
    reason = engines.sglang_unavailable(GPU)
    assert "make setup-sglang" in reason and "missing" in reason
    with pytest.raises(engines.EngineStartError, match="cannot start SGLang: SGLang runs on the GPU tier only"):
        engines.start("sglang", profile=CPU)
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        engines.start("tgi", profile=CPU)


FAKE_SGLANG = """
import argparse, http.server, os, sys, time
p = argparse.ArgumentParser()
for flag in ("--model-path", "--served-model-name", "--host", "--port", "--context-length"):
    p.add_argument(flag)
p.add_argument("--fail", action="store_true")
a = p.parse_args()
if a.fail:
    sys.exit("ValueError: this GPU has no memory left for --mem-fraction-static 0.9")
ready = time.monotonic() + float(os.environ.get("FAKE_LOAD_SECONDS", 1.5))   # like SGLang: 503 while it loads

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = time.monotonic() > ready and self.path in ("/health", "/v1/models")
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b'{"data": [{"id": "%s"}]}' % a.served_model_name.encode())
    def log_message(self, *args):
        pass

http.server.HTTPServer((a.host, int(a.port)), H).serve_forever()
"""


@pytest.fixture
def fake_sglang(tmp_path, monkeypatch):
    """SGLang's module path, served by a stand-in that behaves like its server's readiness endpoints."""
    (tmp_path / "sglang").mkdir()
    (tmp_path / "sglang" / "__init__.py").write_text("")
    (tmp_path / "sglang" / "launch_server.py").write_text(FAKE_SGLANG)
    monkeypatch.setenv("INFERLAB_SGLANG_PYTHON", sys.executable)
    return {"PYTHONPATH": str(tmp_path)}


def test_sglang_is_started_waited_for_and_stopped_like_vllm(fake_sglang):
    with engines.serve("sglang", profile=GPU, timeout=60, env=fake_sglang, context_length=512) as server:
        assert server.engine == "sglang" and server.model_name == "some-model"
        assert server.startup_seconds >= 1.0                  # it waited through the 503s
        assert server.healthy() and "--context-length" in server.command
        pid = server.pid
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_an_sglang_that_fails_to_start_reports_its_own_error(fake_sglang):
    with pytest.raises(engines.EngineStartError) as info:
        engines.start("sglang", profile=GPU, timeout=60, env=fake_sglang, extra_args=["--fail"])
    assert "exited with code 1" in info.value.reason and "no memory left" in str(info.value)


# ----------------------------------------------------------------------------- real engines

@pytest.fixture(scope="module")
def cpu():
    return profiles.resolve("cpu")


def test_a_missing_model_fails_fast_with_the_log_tail_and_leaves_nothing(cpu, tmp_path):
    before = engine_count()
    missing = tmp_path / "no-such-model"
    start = time.perf_counter()
    with pytest.raises(engines.EngineStartError) as info:
        with engines.serve("vllm", model=str(missing), profile=cpu, timeout=180):
            pass
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 180
    assert "exited with code" in info.value.reason and "before it became healthy" in info.value.reason
    assert "Last lines of the engine log" in message and str(missing) in info.value.log_tail
    assert len(info.value.log_tail.splitlines()) >= 10
    assert wait_for_no_new_engines(before) == before


def test_a_taken_port_is_refused_before_anything_starts(cpu):
    before = engine_count()
    with socket.socket() as sock:
        sock.bind((engines.HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        start = time.perf_counter()
        with pytest.raises(engines.PortInUseError, match=f"port {port}"):
            with engines.serve("vllm", profile=cpu, port=port):
                pass
        assert time.perf_counter() - start < 5
    assert engine_count() == before


def test_a_real_server_answers_reports_its_cache_and_stops_completely(cpu):
    before = engine_count()
    with engines.serve("vllm", profile=cpu, kv_cache_gib=0.0625, max_model_len=512) as server:
        assert server.alive() and server.healthy()
        assert server.dtype == host.engine_settings(host.detect()).dtype      # the host's choice, from the log
        assert server.log_path.is_file() and server.log_path.parent == server.workdir
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.model_name == models.EMBEDDED_NAME
        assert engine_count() > before
        reply = server.client.chat.completions.create(model=server.model_name, max_tokens=8, temperature=0.0,
                                                      messages=[{"role": "user", "content": "Say hello."}])
        assert reply.usage.completion_tokens >= 1 and reply.choices[0].message.content
        t_start, events = engines.stream_chat(server.client, server.model_name,
                                              [{"role": "user", "content": "Count to five."}], 8, temperature=0.0)
        assert events[-1][1].usage.completion_tokens == 8
        assert 0 < metrics.time_to_first_token(events, t_start) < events[-1][0] - t_start
        counters = server.metrics()
        assert counters["vllm:request_success_total"] == 2.0 and "vllm:num_requests_waiting" in counters
        report = server.kv_report()
        assert report["dtype"] == server.dtype
        bytes_per_token = memory.kv_bytes_per_token(memory.load_config(cpu.model), report["dtype"])
        predicted = memory.kv_capacity(report["kv_cache_memory_bytes"], bytes_per_token,
                                       report["block_size"], report["max_model_len"])
        assert report["kv_cache_memory_bytes"] == 2**26
        assert (predicted["num_blocks"], predicted["tokens"]) == (report["num_blocks"], report["tokens"])
        assert predicted["max_concurrency"] == pytest.approx(report["max_concurrency"], abs=0.005)
        assert server.log_tail(5)
    assert not server.alive() and server.proc.returncode is not None
    assert not server.workdir.exists(), "the engine's temporary directory (log, sockets) was left behind"
    assert "Application startup complete" in server.log_text()    # the log text outlives the files
    server.stop()                                           # stopping twice is harmless
    assert wait_for_no_new_engines(before) == before


def test_the_serve_command_prints_the_url_and_stops_on_sigterm():
    before = engine_count()
    proc = subprocess.Popen([sys.executable, "-m", "inferlab", "serve", "vllm", "--kv-cache-gib", "0.05", "--",
                             "--max-model-len", "256"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    try:
        url, lines, deadline = None, [], time.monotonic() + 300
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "ready after" in line:
                url = re.search(r"http://\S+/v1", line)[0]
        assert url and url.startswith("http://127.0.0.1:"), "".join(lines)
        status, body = engines.http_get(f"{url}/models")
        assert status == 200 and json.loads(body)["data"][0]["max_model_len"] == 256
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "stopped." in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_for_no_new_engines(before) == before


def test_start_all_starts_engines_together_and_they_outlive_the_call(fake_sglang):
    t0 = time.perf_counter()
    servers = engines.start_all({name: {"engine": "sglang", "timeout": 60, "env": fake_sglang} for name in "ab"},
                                profile=GPU)
    try:
        together = time.perf_counter() - t0
        assert set(servers) == {"a", "b"} and servers["a"].port != servers["b"].port
        assert together < servers["a"].startup_seconds + servers["b"].startup_seconds   # the starts overlapped
        time.sleep(1.0)
        assert all(s.alive() and s.healthy() for s in servers.values())   # nothing tied them to a finished thread
    finally:
        for server in servers.values():
            server.stop()


def test_start_all_times_each_start_on_its_own(fake_sglang):
    slow, fast = dict(fake_sglang, FAKE_LOAD_SECONDS="6"), dict(fake_sglang, FAKE_LOAD_SECONDS="1")
    servers = engines.start_all({"slow": {"engine": "sglang", "timeout": 60, "env": slow},       # waited on first
                                 "fast": {"engine": "sglang", "timeout": 60, "env": fast}}, profile=GPU)
    try:
        assert servers["fast"].startup_seconds < servers["slow"].startup_seconds - 3
    finally:
        for server in servers.values():
            server.stop()


def test_start_all_stops_every_engine_when_one_fails(fake_sglang):
    before = {p.pid for p in psutil.process_iter()}
    with pytest.raises(engines.EngineStartError, match="exited with code 1"):
        engines.start_all({"good": {"engine": "sglang", "timeout": 60, "env": fake_sglang},
                           "bad": {"engine": "sglang", "timeout": 60, "env": fake_sglang, "extra_args": ["--fail"]}},
                          profile=GPU)
    time.sleep(0.5)
    left = [p for p in psutil.process_iter(["cmdline"]) if p.pid not in before
            and "launch_server" in " ".join(p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE]
    assert not left


def test_start_all_runs_ready_made_commands_too(fake_sglang, tmp_path):
    """A container's command (lab 10) starts beside the others, as one of start_all's configs."""
    fake = tmp_path / "sglang" / "launch_server.py"
    port = engines.free_port()
    command = [sys.executable, str(fake), "--served-model-name", "boxed", "--host", engines.HOST, "--port", str(port)]
    servers = engines.start_all({"built": {"engine": "sglang", "timeout": 60, "env": fake_sglang},
                                 "boxed": {"command": command, "port": port, "served_model_name": "boxed",
                                           "env": {"FAKE_LOAD_SECONDS": "1"}}}, profile=GPU)
    try:
        assert servers["boxed"].port == port and servers["boxed"].command == command
        assert servers["boxed"].healthy() and servers["boxed"].startup_seconds >= 1.0
    finally:
        for server in servers.values():
            server.stop()
    assert not servers["boxed"].alive()


def test_start_all_keep_going_returns_the_failure_in_place_and_keeps_the_rest(fake_sglang):
    servers = engines.start_all({"good": {"engine": "sglang", "timeout": 60, "env": fake_sglang},
                                 "bad": {"engine": "sglang", "timeout": 60, "env": fake_sglang, "extra_args": ["--fail"]}},
                                profile=GPU, keep_going=True)
    try:
        assert isinstance(servers["bad"], engines.EngineStartError) and "exited with code 1" in servers["bad"].reason
        assert servers["good"].alive() and servers["good"].healthy()
    finally:
        servers["good"].stop()


def test_a_ready_made_command_is_healthy_where_it_says(fake_sglang, tmp_path):
    """A server whose health route is not vLLM's (KServe's /v2/health/ready) is waited for on its own route."""
    fake = tmp_path / "sglang" / "launch_server.py"
    port = engines.free_port()
    command = [sys.executable, str(fake), "--served-model-name", "boxed", "--host", engines.HOST, "--port", str(port)]
    with pytest.raises(engines.EngineStartError, match="not healthy after"):
        engines.start_command(command, port, "boxed", profile=GPU, env={"FAKE_LOAD_SECONDS": "0"}, timeout=4,
                              engine="kserve", health_path="/v2/health/ready")
    port = engines.free_port()
    command[-1] = str(port)
    with engines.start_command(command, port, "boxed", profile=GPU, env={"FAKE_LOAD_SECONDS": "0"}, timeout=30,
                               engine="kserve", health_path="/health") as server:
        assert server.healthy() and server.engine == "kserve"
