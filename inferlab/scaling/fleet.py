"""A client-side router over real servers, the prefix-cache counters it is judged by, and what was in
flight when -- the measuring side of lab 10's routing and autoscaling."""
from __future__ import annotations

import threading
import time
from typing import Sequence

from inferlab.scaling.routing import Router


def cache_counters(server) -> tuple[float, float]:
    """vLLM's prefix-cache counters: (prompt tokens looked up, tokens found cached)."""
    m = server.metrics()
    return m.get("vllm:prefix_cache_queries_total", 0.0), m.get("vllm:prefix_cache_hits_total", 0.0)


def send_routed(servers: Sequence, prompts: Sequence[str], token_ids: Sequence[Sequence[int]], router: Router,
                max_tokens: int, concurrency: int = 2, progress=None) -> list[dict]:
    """Send every prompt, in order, to the server the router picks, ``concurrency`` at a time.

    A request is routed when a sender is free to send it, so the router sees what is really in flight.
    Returns one row per request: replica, latency (s), output tokens, error ("" when it succeeded).
    """
    lock, rows = threading.Lock(), [None] * len(prompts)
    queue = iter(range(len(prompts)))

    def sender():
        while True:
            with lock:
                i = next(queue, None)
                if i is None:
                    return
                replica = router.send(token_ids[i])
            server, t0 = servers[replica], time.perf_counter()
            try:
                reply = server.client.completions.create(model=server.model_name, prompt=prompts[i],
                                                         max_tokens=max_tokens, temperature=0.0)
                row = {"replica": replica, "latency (s)": time.perf_counter() - t0,
                       "output tokens": reply.usage.completion_tokens, "error": ""}
            except Exception as exc:  # a failed request is a result, kept with its reason
                row = {"replica": replica, "latency (s)": time.perf_counter() - t0, "output tokens": 0,
                       "error": f"{type(exc).__name__}: {exc}"[:200]}
            with lock:
                router.done(replica)
                rows[i] = row
            if progress is not None:
                progress.update(1)

    threads = [threading.Thread(target=sender, name=f"router-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return rows


def in_flight(records: Sequence[dict], times: Sequence[float]) -> list[int]:
    """How many of a benchmark run's requests were in flight at each time (s since the run's start)."""
    spans = [(r["start_time"], r["start_time"] + (r["latency"] or 0.0)) for r in records]
    return [sum(start <= t < end for start, end in spans) for t in times]
