"""The load generator: streamed requests from asyncio, closed loop (a concurrency) or open loop
(arrival times), with the client pinned away from a local engine's cores."""
from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import sys
import time
from dataclasses import asdict

import numpy as np

from inferlab.bench.arrivals import arrival_times
from inferlab.bench.records import BenchRequest, RequestRecord, record_from_chunks
from inferlab.bench.results import summarize
from inferlab.metrics import PERCENTILES

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


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

    restore = pin_this_thread(cpus)
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
        pin_this_thread(restore)


def resolve_cpus(cpus) -> set[int] | None:
    """The CPUs a client runs on: "auto" (those no local engine is pinned to, ``engines.client_cpus``),
    None or "none" (anywhere), a set of CPU numbers, or text such as "1,3". Bad input: ValueError."""
    if cpus is None or cpus == "none":
        return None
    if cpus == "auto":
        from inferlab.engines import client_cpus
        return client_cpus()
    try:
        chosen = {int(c) for c in cpus.split(",") if c.strip()} if isinstance(cpus, str) else {int(c) for c in cpus}
    except (TypeError, ValueError):
        raise ValueError(f"cpus takes auto, none or CPU numbers such as 1,3 (got {cpus!r})") from None
    usable = os.sched_getaffinity(0)
    if not chosen or not chosen <= usable:
        raise ValueError(f"cpus {cpus!r}: this process may only use CPUs {sorted(usable)}")
    return chosen


def pin_this_thread(cpus):
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
        progress: bool = True, label: str = "", arrivals=None, cpus="auto") -> dict:
    """Send the workload, return summarize()'s result plus the run's settings and per-request records.

    Closed loop: request_rate=inf with max_concurrency=C keeps C requests in flight. Open loop: a
    finite request_rate sends on a seeded gamma arrival process whatever the server's state
    (max_concurrency, if given, still caps what is in flight). arrivals: your own send times in
    seconds, one per request, instead of the gamma process. cpus: where the client runs (see
    resolve_cpus; by default away from a local engine's cores, as ``inferlab bench``). Progress goes
    to a tqdm bar.
    """
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}")
    if not requests:
        raise ValueError("the workload is empty: ask for at least one prompt")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    cpus = resolve_cpus(cpus)
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
