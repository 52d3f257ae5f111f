"""Benchmarking an OpenAI-compatible server: workloads, arrivals, a load generator, serving metrics.

    requests = bench.random_requests(tokenizer, num_prompts=200, input_len=256, output_len=64)
    result = bench.run(server.base_url, server.model_name, requests, max_concurrency=16)
    print(result["median_ttft_ms"], result["output_throughput"])

The metrics (TTFT, ITL, TPOT, E2EL, goodput) are defined once, in ``inferlab.metrics``, as vLLM's
serving benchmark defines them, and the result's keys are vLLM's where the two overlap, so
``inferlab bench`` and ``vllm bench serve`` can be compared key by key. Output tokens are the
server's ``usage.completion_tokens`` (asked for with ``include_usage``), or the number of non-empty
chunks when a server sends no usage; throughputs are over the whole run (first request sent to last
request finished).

Failed requests (HTTP errors, broken streams, no text at all, time-outs) stay in the records with
their error and are counted in ``failed``; they never count as good.
"""
from inferlab.bench import compare
from inferlab.bench.arrivals import arrival_times, ramp
from inferlab.bench.loadgen import ENDPOINTS, openai_base_url, resolve_cpus, run, sweep
from inferlab.bench.records import BenchRequest, RequestRecord, record_from_chunks, records_of
from inferlab.bench.results import failed_errors, goodput_knee, mean_latency_limit, pooled, report_table, summarize, write_json
from inferlab.bench.vllm_bench import run_vllm_bench, vllm_bench_command
from inferlab.bench.workloads import (build_workload, conversation_requests, describe, load_tokenizer,
                                      multi_turn_requests, random_requests, shared_prefix_requests, word_tokens,
                                      write_jsonl)

__all__ = ["BenchRequest", "ENDPOINTS", "RequestRecord", "arrival_times", "build_workload", "compare", "conversation_requests",
           "describe", "failed_errors", "goodput_knee", "load_tokenizer", "mean_latency_limit", "multi_turn_requests", "openai_base_url", "pooled",
           "ramp", "random_requests", "record_from_chunks", "resolve_cpus", "records_of", "report_table", "run",
           "run_vllm_bench",
           "shared_prefix_requests", "summarize", "sweep", "vllm_bench_command", "word_tokens", "write_json",
           "write_jsonl"]
