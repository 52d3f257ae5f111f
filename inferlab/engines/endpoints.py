"""Talking to a running engine over HTTP: ports, GET, Prometheus metrics, a streamed chat, and what its
log says about its KV cache and dtype."""
from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the OS picks it when we bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, OSError):
        return 0, ""


class Metrics(dict):
    """Prometheus samples by name, each summed over its label sets; ``samples`` keeps them all."""

    def __init__(self, samples: list[tuple[str, dict, float]]):
        super().__init__()
        self.samples = samples
        for name, _, value in samples:
            self[name] = self.get(name, 0.0) + value

    def labelled(self, name: str) -> list[tuple[dict, float]]:
        """Every (labels, value) of one sample name, e.g. a counter split by finish reason."""
        return [(labels, value) for n, labels, value in self.samples if n == name]


def parse_metrics(text: str) -> Metrics:
    """Parse the Prometheus text format that ``/metrics`` serves."""
    from prometheus_client.parser import text_string_to_metric_families
    samples = [(s.name, dict(s.labels), float(s.value))
               for family in text_string_to_metric_families(text) for s in family.samples]
    return Metrics(samples)


KV_REPORT = re.compile(r"(?P<device>[A-Za-z]+)(?: \+ host)? KV cache size: (?P<tokens>[\d,]+) tokens, "
                       r"Maximum concurrency for (?P<max_model_len>[\d,]+) tokens per request: "
                       r"(?P<max_concurrency>[\d.]+)x")


def parse_kv_report(log_text: str) -> dict | None:
    """The KV-cache line vLLM logs at start-up, e.g.
    ``CPU KV cache size: 2,816 tokens, Maximum concurrency for 512 tokens per request: 5.50x``.
    Returns {"device", "tokens", "max_model_len", "max_concurrency"} or None when absent.
    """
    match = None
    for match in KV_REPORT.finditer(log_text):
        pass                                     # keep the last one: a restart logs again
    if match is None:
        return None
    return {"device": match["device"], "tokens": int(match["tokens"].replace(",", "")),
            "max_model_len": int(match["max_model_len"].replace(",", "")),
            "max_concurrency": float(match["max_concurrency"])}


ENGINE_DTYPE = re.compile(r"\bdtype=torch\.(\w+)")


def parse_engine_dtype(log_text: str) -> str | None:
    """The dtype an engine computes in, from its start-up config line (``dtype=torch.float32``)."""
    found = ENGINE_DTYPE.findall(log_text)
    return found[-1] if found else None


def stream_chat(client, model: str, messages: list[dict], max_tokens: int, **params) -> tuple[float, list]:
    """Send one streamed chat request; return (t_start, [(arrival time, chunk), ...]).

    Times come from time.perf_counter(). The final chunk carries ``usage`` (no choices),
    because the request sets stream_options={"include_usage": True}.
    """
    t_start = time.perf_counter()
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, stream=True,
                                            stream_options={"include_usage": True}, **params)
    events = [(time.perf_counter(), chunk) for chunk in stream]
    return t_start, events
