"""inferlab.bench: metric definitions on synthetic timelines with known answers, the same numbers as
vLLM's own calculate_metrics, arrivals, offline workloads, and the load generator against a scripted
streaming server (tests/stub_openai.py)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from inferlab import bench, metrics, models
from stub_openai import StubServer

T = 500.0   # an arbitrary clock reading at which requests are sent


def rec(chunks, usage=None, error="", sent=T, index=0):
    return bench.record_from_chunks(index, 10, sent, [(T + dt, text) for dt, text in chunks], usage, error)


# ----------------------------------------------------------------------------- one request

def test_empty_first_chunks_do_not_count_as_the_first_token():
    r = rec([(0.05, ""), (0.10, ""), (0.30, "Hel"), (0.35, ""), (0.42, "lo"), (0.50, " you")],
            usage={"prompt_tokens": 12, "completion_tokens": 3})
    assert r.success and r.error == ""
    assert r.ttft == pytest.approx(0.30)
    assert r.itl == pytest.approx([0.12, 0.08])            # gaps between chunks that carry text only
    assert r.latency == pytest.approx(0.50)
    assert r.latency - r.ttft == pytest.approx(sum(r.itl))
    assert r.output_tokens == 3 and r.prompt_len == 12     # the server's counts win
    assert r.tpot == pytest.approx((0.50 - 0.30) / 2)
    assert r.text == "Hello you"


def test_a_trailing_empty_chunk_does_not_extend_the_latency():
    r = rec([(0.2, "a"), (0.3, "b"), (0.9, "")], usage={"completion_tokens": 2})
    assert r.latency == pytest.approx(0.3)


def test_one_token_output_has_no_tpot_and_no_itl():
    r = rec([(0.05, ""), (0.40, "Yes")], usage={"completion_tokens": 1})
    assert r.success and r.ttft == pytest.approx(0.40) and r.itl == []
    assert r.tpot is None
    assert metrics.time_per_output_token(r.latency, r.ttft, 1) is None
    assert metrics.time_per_output_token(1.0, 0.2, 0) is None


def test_a_chunk_may_carry_several_tokens_so_tpot_uses_usage_not_chunks():
    r = rec([(0.1, "ab"), (0.3, "cd"), (0.5, "ef")], usage={"completion_tokens": 6})
    assert r.itl == pytest.approx([0.2, 0.2])
    assert r.tpot == pytest.approx(0.4 / 5)                  # not 0.4 / 2


def test_without_usage_the_text_chunks_are_counted():
    r = rec([(0.1, "a"), (0.2, "b"), (0.3, "")])
    assert r.output_tokens == 2 and r.prompt_len == 10


def test_failed_requests_keep_their_reason_and_no_timings():
    broken = rec([(0.1, "a")], error="APIConnectionError: connection reset")
    silent = rec([(0.1, ""), (0.2, "")], usage={"completion_tokens": 2})
    for r in (broken, silent):
        assert not r.success and r.error and r.ttft is None and r.latency is None and r.tpot is None
    assert "no text" in silent.error


# ----------------------------------------------------------------------------- a run's summary

def timeline():
    """Four requests, one failed, one a single token; every statistic below is worked out by hand."""
    return [
        rec([(0.1, "a"), (0.3, "b"), (0.5, "c")], {"prompt_tokens": 10, "completion_tokens": 3}),   # tpot .2
        rec([(0.0, ""), (0.2, "a"), (0.3, "b")], {"prompt_tokens": 20, "completion_tokens": 2}),    # tpot .1
        rec([(0.4, "a")], {"prompt_tokens": 30, "completion_tokens": 1}),                           # no tpot
        rec([], error="HTTPStatusError: 500"),
    ]


def test_summary_on_a_known_timeline():
    s = bench.summarize(timeline(), duration=2.0, percentiles=(50, 99), slo={"ttft": 250, "tpot": 150})
    assert (s["completed"], s["failed"]) == (3, 1)
    assert (s["total_input_tokens"], s["total_output_tokens"]) == (60, 6)
    assert s["request_throughput"] == pytest.approx(1.5)
    assert s["output_throughput"] == pytest.approx(3.0)
    assert s["total_token_throughput"] == pytest.approx(33.0)
    assert s["mean_ttft_ms"] == pytest.approx((100 + 200 + 400) / 3)
    assert s["median_ttft_ms"] == pytest.approx(200)
    assert s["std_ttft_ms"] == pytest.approx(np.std([100, 200, 400]))
    assert s["p99_ttft_ms"] == pytest.approx(np.percentile([100, 200, 400], 99))
    assert s["mean_tpot_ms"] == pytest.approx(150)           # the one-token request is left out
    assert s["mean_itl_ms"] == pytest.approx((200 + 200 + 100) / 3)   # pooled over all gaps
    assert s["median_e2el_ms"] == pytest.approx(400)
    # good: request 2 (ttft 200, tpot 100) and request 3 (ttft 400 fails); request 1 tpot 200 fails
    assert s["request_goodput"] == pytest.approx(1 / 2.0)
    assert s["slo_attainment"] == pytest.approx(1 / 4)
    assert s["errors"] == ["", "", "", "HTTPStatusError: 500"]


def test_goodput_counts_a_one_token_output_as_tpot_zero_and_failures_never():
    records = timeline()
    assert metrics.request_goodput(records, {"tpot": 1}, 1.0) == pytest.approx(1.0)      # only the 1-token one
    assert metrics.request_goodput(records, {"ttft": 10_000}, 4.0) == pytest.approx(3 / 4)


def test_summary_keys_match_vllm_where_they_overlap():
    s = bench.summarize(timeline(), 2.0, slo={"ttft": 500})
    for key in ("completed", "failed", "duration", "request_throughput", "output_throughput", "request_goodput",
                "total_input_tokens", "total_output_tokens", "total_token_throughput", "errors"):
        assert key in s
    for stat in ("mean", "median", "std", "p99"):
        for metric in ("ttft", "tpot", "itl", "e2el"):
            assert f"{stat}_{metric}_ms" in s


def test_same_numbers_as_vllms_calculate_metrics():
    """The definitions are vLLM's: feed one synthetic run to both and compare every shared value."""
    serve = pytest.importorskip("vllm.benchmarks.serve")
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncOutput
    rng = np.random.default_rng(3)
    records, outputs = [], []
    for i in range(40):
        if i % 9 == 4:
            records.append(bench.RequestRecord(index=i, prompt_len=0, error="boom"))
            outputs.append(RequestFuncOutput(success=False, error="boom"))
            continue
        n = int(rng.integers(1, 30))
        ttft = float(rng.uniform(0.05, 2.0))
        itl = list(rng.uniform(0.01, 0.2, size=n - 1))
        r = bench.RequestRecord(index=i, prompt_len=int(rng.integers(5, 50)), success=True, ttft=ttft, itl=itl,
                                latency=ttft + sum(itl), output_tokens=n, start_time=float(i))
        records.append(r)
        outputs.append(RequestFuncOutput(success=True, latency=r.latency, output_tokens=n, ttft=ttft, itl=itl,
                                         prompt_len=r.prompt_len, start_time=float(i)))
    slo = {"ttft": 1200.0, "tpot": 110.0, "e2el": 2500.0}
    ours = bench.summarize(records, 17.0, percentiles=(50, 90, 99), slo=slo)
    theirs, _ = serve.calculate_metrics(input_requests=[], outputs=outputs, dur_s=17.0, tokenizer=None,
                                        selected_percentiles=[50, 90, 99], goodput_config_dict=slo)
    for key in ("completed", "failed", "total_input", "total_output", "request_throughput", "request_goodput",
                "output_throughput", "total_token_throughput"):
        ours_key = {"total_input": "total_input_tokens", "total_output": "total_output_tokens"}.get(key, key)
        assert ours[ours_key] == pytest.approx(getattr(theirs, key)), key
    for metric in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "std"):
            assert ours[f"{stat}_{metric}_ms"] == pytest.approx(getattr(theirs, f"{stat}_{metric}_ms")), (stat, metric)
        for p, value in getattr(theirs, f"percentiles_{metric}_ms"):
            assert ours[f"p{int(p)}_{metric}_ms"] == pytest.approx(value), (p, metric)
    # vLLM's saved per-request data (--save-detailed) read back into our records gives the same summary
    saved = {"duration": 17.0, "input_lens": [o.prompt_len for o in outputs], "output_lens": [o.output_tokens for o in outputs],
             "ttfts": [o.ttft for o in outputs], "itls": [o.itl for o in outputs], "latencies": [o.latency for o in outputs],
             "start_times": [o.start_time for o in outputs], "errors": [o.error for o in outputs]}
    again = bench.pooled([saved], percentiles=(50, 90, 99), slo=slo)
    for key in ("completed", "failed", "median_ttft_ms", "p99_tpot_ms", "mean_itl_ms", "request_goodput",
                "output_throughput"):
        assert again[key] == pytest.approx(ours[key]), key


def test_pooling_runs_merges_samples_not_percentiles():
    a = [rec([(0.1, "a"), (0.2, "b")], {"completion_tokens": 2}), rec([(0.3, "a"), (0.5, "b")], {"completion_tokens": 2})]
    b = [rec([(0.9, "a"), (1.0, "b")], {"completion_tokens": 2})]
    runs = [{"duration": 2.0, "records": [r.__dict__ for r in a]}, {"duration": 1.0, "records": [r.__dict__ for r in b]}]
    merged = bench.pooled(runs)
    assert merged["completed"] == 3 and merged["request_throughput"] == pytest.approx(1.0)
    assert merged["median_ttft_ms"] == pytest.approx(300)          # median of 100, 300, 900 -- not of run medians
    with pytest.raises(ValueError, match="save-detailed"):
        bench.records_of({"duration": 1.0, "latencies": []})


def test_goodput_knee_is_the_last_load_before_the_first_miss():
    def result(rate, ttfts):
        records = [bench.RequestRecord(index=i, prompt_len=1, success=True, ttft=t, latency=t, output_tokens=1)
                   for i, t in enumerate(ttfts)]
        from dataclasses import asdict
        return {"request_rate": rate, "records": [asdict(r) for r in records]}
    runs = [result(4, [0.1] * 8 + [0.9] * 2), result(1, [0.1] * 10), result(2, [0.1] * 9 + [0.9]),
            result(8, [0.1] * 10)]                       # a lucky run past the knee does not count
    knee = bench.goodput_knee(runs, {"ttft": 500}, attainment=0.9)
    assert knee["request_rate"] == 2
    assert bench.goodput_knee(runs[:1], {"ttft": 500}, attainment=0.9) is None


# ----------------------------------------------------------------------------- arrivals

@pytest.mark.parametrize("rate,k", [(1.0, 1.0), (10.0, 0.2), (0.25, 5.0)])
def test_arrivals_have_the_asked_rate_and_burstiness(rate, k):
    times = bench.arrival_times(50_001, rate, k, seed=1)
    gaps = np.diff(times)
    assert times[0] == 0 and np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(k), rel=0.06)


def test_arrivals_are_seeded_and_inf_is_a_burst():
    assert np.array_equal(bench.arrival_times(20, 2, 1, 4), bench.arrival_times(20, 2, 1, 4))
    assert not np.array_equal(bench.arrival_times(20, 2, 1, 4), bench.arrival_times(20, 2, 1, 5))
    assert np.array_equal(bench.arrival_times(5, math.inf), np.zeros(5))
    with pytest.raises(ValueError, match="burstiness"):
        bench.arrival_times(5, 1.0, 0)
    with pytest.raises(ValueError, match="rate"):
        bench.arrival_times(5, 0.0)


# ----------------------------------------------------------------------------- workloads

def test_random_prompts_have_exact_token_lengths(tokenizer):
    reqs = bench.random_requests(tokenizer, 6, 97, 5, seed=2)
    assert [len(tokenizer(r.prompt, add_special_tokens=False).input_ids) for r in reqs] == [97] * 6
    assert len({r.prompt[:40] for r in reqs}) == 6                      # no shared prefixes
    assert [r.prompt for r in reqs] == [r.prompt for r in bench.random_requests(tokenizer, 6, 97, 5, seed=2)]


def test_shared_prefix_prompts(tokenizer):
    reqs = bench.shared_prefix_requests(tokenizer, 6, prefix_len=40, suffix_len=9, output_len=3, num_prefixes=2)
    ids = [tokenizer(r.prompt, add_special_tokens=False).input_ids for r in reqs]
    assert all(len(i) == 49 for i in ids)
    assert ids[0][:40] == ids[2][:40] == ids[4][:40] != ids[1][:40]
    assert ids[0][40:] != ids[2][40:]


def test_conversations_are_ours_and_counted_after_the_template(tokenizer):
    reqs = bench.conversation_requests(tokenizer, 30)
    assert all(isinstance(r.prompt, list) and r.prompt[-1]["role"] == "user" for r in reqs)
    first = reqs[0]
    ids = tokenizer.apply_chat_template(first.prompt, add_generation_prompt=True, tokenize=False)
    assert first.prompt_len == len(tokenizer(ids, add_special_tokens=False).input_ids)
    assert len({json.dumps(r.prompt) for r in reqs}) == 24                # the set repeats past its size


def test_workload_as_vllm_custom_dataset(tmp_path, tokenizer):
    reqs = bench.random_requests(tokenizer, 3, 8, 4)
    path = bench.write_jsonl(reqs, tmp_path / "w.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"prompt": r.prompt, "output_tokens": 4} for r in reqs]
    with pytest.raises(ValueError, match="text prompts"):
        bench.write_jsonl(bench.conversation_requests(tokenizer, 2), tmp_path / "c.jsonl")


def test_vllm_bench_command_carries_the_same_workload_and_options():
    cmd = bench.vllm_bench_command("http://127.0.0.1:9/v1", "m", "/tok", "/w.jsonl", "/out/r.json", num_prompts=7,
                                   max_concurrency=3, request_rate=2.5, burstiness=0.5, seed=9,
                                   slo={"ttft": 300, "tpot": 40})
    args = " ".join(cmd[3:])
    for part in ("--base-url http://127.0.0.1:9 ", "--dataset-name custom", "--dataset-path /w.jsonl",
                 "--custom-output-len -1", "--skip-chat-template", "--disable-shuffle", "--num-prompts 7",
                 "--max-concurrency 3", "--request-rate 2.5", "--burstiness 0.5", "--seed 9", "--ignore-eos",
                 "--goodput ttft:300 tpot:40", "--save-detailed", "--result-dir /out", "--result-filename r.json",
                 "--metric-percentiles 50,90,99"):
        assert part in args, part


# ----------------------------------------------------------------------------- the load generator

def fixed_requests(n, output_len=4, prompt="hello"):
    return [bench.BenchRequest(prompt, 1, output_len) for _ in range(n)]


def test_run_counts_failures_and_measures_from_the_first_text():
    with StubServer(first_delay=0.05, gap=0.01, fail_every=3) as stub:
        result = bench.run(stub.url, "m", fixed_requests(9), max_concurrency=2, progress=False)
    assert (result["completed"], result["failed"]) == (6, 3)
    assert sum("500" in e for e in result["errors"]) == 3
    ok = [r for r in result["records"] if r["success"]]
    assert all(r["ttft"] >= 0.05 for r in ok)                 # the empty first chunk did not stop the clock
    assert all(r["output_tokens"] == 4 and len(r["itl"]) == 3 and r["prompt_len"] == 7 for r in ok)
    assert all(body["ignore_eos"] is True and body["stream_options"] == {"include_usage": True}
               for body in stub.seen)


def test_run_reports_streams_without_text_and_without_usage():
    reqs = [bench.BenchRequest("SILENT", 1, 3), bench.BenchRequest("NOUSAGE", 1, 3)]
    with StubServer(first_delay=0.0, gap=0.0) as stub:
        result = bench.run(stub.url + "/v1", "m", reqs, progress=False)
    silent, nousage = result["records"]
    assert not silent["success"] and "no text" in silent["error"]
    assert nousage["success"] and nousage["output_tokens"] == 3
    assert result["failed"] == 1


def test_chat_endpoint_and_open_loop_arrivals():
    reqs = [bench.BenchRequest([{"role": "user", "content": "hi"}], 3, 2) for _ in range(6)]
    with StubServer(first_delay=0.0, gap=0.0) as stub:
        result = bench.run(stub.url, "m", reqs, endpoint="chat", request_rate=20.0, seed=3, progress=False)
    offsets = bench.arrival_times(6, 20.0, 1.0, 3)
    starts = [r["start_time"] for r in result["records"]]
    assert all(s >= o for s, o in zip(starts, offsets))        # nobody is sent before its arrival time
    assert result["completed"] == 6 and stub.seen[0]["max_completion_tokens"] == 2


def test_run_against_nothing_fails_every_request_cleanly():
    result = bench.run("http://127.0.0.1:9", "m", fixed_requests(3), progress=False, timeout=5)
    assert result["completed"] == 0 and result["failed"] == 3
    assert all("Connection" in e for e in result["errors"])


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="endpoint"):
        bench.run("http://x", "m", fixed_requests(1), endpoint="embeddings")
    with pytest.raises(ValueError, match="empty"):
        bench.run("http://x", "m", [])
    with pytest.raises(ValueError, match="max_concurrency"):
        bench.run("http://x", "m", fixed_requests(1), max_concurrency=0)


# ----------------------------------------------------------------------------- the CLI

def cli(*args, timeout=180):
    tokenizer = str(models.prepare_embedded())
    return subprocess.run([sys.executable, "-m", "inferlab", "bench", "--tokenizer", tokenizer, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_writes_a_vllm_keyed_json_and_reports_failures(tmp_path):
    out = tmp_path / "r.json"
    with StubServer(first_delay=0.01, gap=0.0, fail_every=4) as stub:
        proc = cli("--base-url", stub.url, "--model", "m", "--num-prompts", "8", "--input-len", "12",
                   "--output-len", "3", "--max-concurrency", "2", "--goodput", "ttft:5000", "tpot:1000",
                   "--seed", "1", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert (result["completed"], result["failed"]) == (6, 2)
    assert result["request_goodput"] > 0 and "median_ttft_ms" in result and len(result["records"]) == 8
    assert "Failed requests:" in proc.stdout and "scripted failure" in proc.stdout + proc.stderr


def test_cli_bad_input_is_one_clear_line(tmp_path):
    proc = cli("--base-url", "http://127.0.0.1:9", "--model", "m", "--goodput", "latency:5")
    assert proc.returncode == 2 and "ttft" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("--base-url", "http://127.0.0.1:9", "--model", "m", "--cpus", "4096")
    assert proc.returncode == 2 and "may only use CPUs" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("--base-url", "http://127.0.0.1:9", "--model", "m", "--num-prompts", "2", "--input-len", "4",
               "--output-len", "2", "--json", str(tmp_path / "x.json"))
    assert proc.returncode == 1 and "every request failed" in proc.stderr
    assert not (tmp_path / "x.json").exists() or json.loads((tmp_path / "x.json").read_text())["failed"] == 2


def test_client_pinning_applies_to_the_run_and_is_undone(monkeypatch):
    import os
    from inferlab.bench import loadgen
    before = os.sched_getaffinity(0)
    seen = []
    original = loadgen._one_request

    async def spy(*args, **kwargs):
        seen.append(os.sched_getaffinity(0))
        return await original(*args, **kwargs)
    monkeypatch.setattr(loadgen, "_one_request", spy)
    with StubServer(first_delay=0.0, gap=0.0) as stub:
        result = bench.run(stub.url, "m", fixed_requests(2), progress=False, cpus={min(before)})
    assert result["completed"] == 2
    assert seen and all(cpus == {min(before)} for cpus in seen)
    assert os.sched_getaffinity(0) == before


def test_no_engine_running_means_no_client_pinning():
    from inferlab import engines
    if engines.engine_processes():
        pytest.skip("an engine is running on this machine")
    assert engines.client_cpus() is None


def test_a_ramp_sends_each_phase_at_its_own_rate():
    times = bench.ramp([(1.0, 20), (10.0, 20), (1.0, 20)], seed=3)
    assert np.all(np.diff(times) >= 0) and times[0] == 0 and times[-1] < 60
    counts = [np.sum((times >= a) & (times < a + 20)) for a in (0, 20, 40)]
    assert counts[1] > 5 * max(counts[0], counts[2])              # the middle phase is ten times busier
    assert np.array_equal(times, bench.ramp([(1.0, 20), (10.0, 20), (1.0, 20)], seed=3))
    with pytest.raises(ValueError, match="phase 1"):
        bench.ramp([(1.0, 5), (0.0, 5)])
