"""What a benchmark sends and what it keeps: one request of a workload, one measured request."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inferlab.metrics import time_per_output_token


@dataclass
class BenchRequest:
    """One request of a workload: a text prompt or token ids (completions), or a message list (chat)."""
    prompt: str | list[int] | list[dict]
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


def write_atomically(path: Path, text: str) -> Path:
    """Write to a hidden temporary file beside path, then rename it over path (readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
