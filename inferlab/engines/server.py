"""A running engine: its URLs, an OpenAI client, its log, its metrics and KV-cache report, and stop()."""
from __future__ import annotations

import contextlib
import subprocess
import time
import weakref
from pathlib import Path

from inferlab.engines.endpoints import HOST, Metrics, http_get, parse_engine_dtype, parse_kv_report, parse_metrics
from inferlab.engines.errors import ANSI, EngineStartError, root_cause
from inferlab.engines.processes import _stop_and_clean, kill_group


class Server:
    """A running engine: its URLs, an OpenAI client, its log, its metrics, and stop()."""

    def __init__(self, engine: str, model: str, model_name: str, port: int, proc: subprocess.Popen,
                 workdir: Path, command: list[str]):
        self.engine, self.model, self.model_name, self.port = engine, model, model_name, port
        self.proc, self.pid, self.command = proc, proc.pid, command
        self.workdir, self.log_path = Path(workdir), Path(workdir) / "engine.log"
        self.url = f"http://{HOST}:{port}"           # /health, /metrics, /version live here
        self.health_path = "/health"                 # another server (KServe's) may answer health elsewhere
        self.base_url = f"{self.url}/v1"             # what OpenAI clients take as base_url
        self.startup_seconds: float | None = None
        self._client = None
        self._final_log: str | None = None          # the log as it was when the engine stopped
        # Runs once: on stop(), on garbage collection, or at interpreter exit (atexit).
        self._finalizer = weakref.finalize(self, _stop_and_clean, proc, self.workdir)

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<Server {self.engine} {self.model_name} on port {self.port}, {state}>"

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop the engine and every process it started, keep its log text, remove its files (idempotent)."""
        if self._finalizer.alive:
            kill_group(self.proc)
            self._final_log = self.log_text()
        self._finalizer()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    @property
    def client(self):
        """An ``openai.OpenAI`` client for this server (vLLM accepts any API key)."""
        if self._client is None:
            import openai
            self._client = openai.OpenAI(base_url=self.base_url, api_key="EMPTY", timeout=600, max_retries=0)
        return self._client

    def log_text(self) -> str:
        """The engine's log so far (colour codes removed); after stop(), the whole log."""
        if self._final_log is not None:
            return self._final_log
        try:
            return ANSI.sub("", self.log_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    @property
    def dtype(self) -> str | None:
        """The dtype the engine computes and caches in, as its own log states it ("float32", ...)."""
        return parse_engine_dtype(self.log_text())

    def healthy(self) -> bool:
        return http_get(f"{self.url}{self.health_path}", timeout=2)[0] == 200

    def metrics(self) -> Metrics:
        status, body = http_get(f"{self.url}/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics answered {status or 'nothing'}")
        return parse_metrics(body)

    def cache_config(self) -> dict:
        """The labels of ``vllm:cache_config_info``: block size, block count, KV bytes, ..."""
        info = self.metrics().labelled("vllm:cache_config_info")
        return dict(info[0][0]) if info else {}

    def kv_report(self) -> dict:
        """What the engine says about its KV cache: the start-up log line plus its cache config.

        Keys: device, tokens, max_model_len, max_concurrency, dtype (from the log), block_size,
        num_blocks, kv_cache_memory_bytes (from /metrics; None where the engine does not say).
        """
        report = parse_kv_report(self.log_text()) or {}
        report["dtype"] = self.dtype
        info = self.cache_config()

        def number(key):
            value = info.get(key)
            return int(value) if value not in (None, "None", "") else None
        report.update(block_size=number("block_size"), num_blocks=number("num_gpu_blocks"),
                      kv_cache_memory_bytes=number("kv_cache_memory_bytes"))
        return report

    def wait_healthy(self, timeout: float, since: float | None = None) -> float:
        """Block until /health answers 200; return the seconds it took, counted from ``since`` (a
        ``time.perf_counter()`` reading: when the process started) or from now. Raise on death or timeout."""
        start = time.perf_counter() if since is None else since
        while (seconds := self.poll_healthy(timeout, start)) is None:
            time.sleep(0.5)
        return seconds

    def poll_healthy(self, timeout: float, since: float) -> float | None:
        """One look: the seconds since ``since`` if the engine is healthy now, None if not yet. Raise if
        it died or ``timeout`` seconds have passed (then it is stopped)."""
        if self.proc.poll() is not None:
            raise self._start_error(f"the {self.engine} process exited with code {self.proc.returncode} "
                                    "before it became healthy")
        if self.healthy() and http_get(f"{self.base_url}/models", timeout=5)[0] == 200:
            return time.perf_counter() - since
        if time.perf_counter() - since > timeout:
            raise self._start_error(f"{self.engine} was not healthy after {timeout:.0f} s")
        return None

    def _start_error(self, what: str) -> EngineStartError:
        self.stop()
        cause = root_cause(self.log_text())
        reason = f"{what}; it has been stopped" + (f". The engine said: {cause}" if cause else "")
        return EngineStartError(reason, self.log_tail(30) or "(the log is empty)")
