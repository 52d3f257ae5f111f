"""Watching a server under load: its running and waiting requests and KV-cache use, sampled in a thread."""
from __future__ import annotations

import contextlib
import threading
import time

from inferlab.engines.server import Server


WATCHED = {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
           "kv_usage": "vllm:kv_cache_usage_perc", "preemptions": "vllm:num_preemptions_total"}


@contextlib.contextmanager
def watch(server: Server, interval: float = 0.5, names: dict | None = None):
    """Scrape /metrics every ``interval`` seconds in a background thread while the block runs.

    Yields a list that fills with rows {"t": seconds since the block started, "running": ...,
    "waiting": ..., "kv_usage": ..., "preemptions": ...} (or the short names you pass).
    """
    names = names or WATCHED
    rows: list[dict] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def loop():
        while not done.is_set():
            try:
                m = server.metrics()
            except Exception:              # the server is going away: stop quietly
                return
            rows.append({"t": time.perf_counter() - t0, **{k: m.get(v, 0.0) for k, v in names.items()}})
            done.wait(interval)

    thread = threading.Thread(target=loop, daemon=True, name="inferlab-metrics")
    thread.start()
    try:
        yield rows
    finally:
        done.set()
        thread.join(timeout=10)
        with contextlib.suppress(Exception):      # one last scrape: the state the block left behind
            m = server.metrics()
            rows.append({"t": time.perf_counter() - t0, **{k: m.get(v, 0.0) for k, v in names.items()}})
