"""Watching a server under load: its running and waiting requests and KV-cache use, sampled in a thread."""
from __future__ import annotations

import contextlib
import threading
import time

from inferlab.engines.server import Server


WATCHED = {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
           "kv_usage": "vllm:kv_cache_usage_perc", "preemptions": "vllm:num_preemptions_total"}


@contextlib.contextmanager
def sample(read, interval: float = 0.5, name: str = "inferlab-sampler"):
    """Call ``read()`` (a dict) every ``interval`` seconds in a background thread while the block runs.

    Yields a list that fills with rows {"t": seconds since the block started, **read()}. Sampling stops
    quietly when ``read`` raises (what it watches is going away); one last row is taken at the end.
    """
    rows: list[dict] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def loop():
        while not done.is_set():
            try:
                row = read()
            except Exception:
                return
            rows.append({"t": time.perf_counter() - t0, **row})
            done.wait(interval)

    thread = threading.Thread(target=loop, daemon=True, name=name)
    thread.start()
    try:
        yield rows
    finally:
        done.set()
        thread.join(timeout=10)
        with contextlib.suppress(Exception):      # one last row: the state the block left behind
            rows.append({"t": time.perf_counter() - t0, **read()})


@contextlib.contextmanager
def watch(server: Server, interval: float = 0.5, names: dict | None = None):
    """Scrape /metrics every ``interval`` seconds in a background thread while the block runs.

    Yields a list that fills with rows {"t": seconds since the block started, "running": ...,
    "waiting": ..., "kv_usage": ..., "preemptions": ...} (or the short names you pass).
    """
    names = names or WATCHED

    def scrape():
        m = server.metrics()
        return {k: m.get(v, 0.0) for k, v in names.items()}

    with sample(scrape, interval, "inferlab-metrics") as rows:
        yield rows
