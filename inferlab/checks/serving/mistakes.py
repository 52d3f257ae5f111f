"""Lab 04's catalogue: answers a learner could write, and what the checks must say to each.

No engine runs here: the engine-report check gets the figures a real vLLM 0.32 CPU server
logged (tests/test_engines.py starts a real one and compares the same way).
"""
from __future__ import annotations

import math
import statistics

from inferlab import memory, metrics
from inferlab.checks import right, wrong
from inferlab.checks.serving import (check_kv_capacity, check_kv_matches_engine, check_load_summary,
                                     check_ttft_from_stream, check_usage_tokens)

# What vLLM 0.32 (CPU) logged in lab 04's reference run (solutions/04-vllm.ipynb), float32 on a CPU
# without bfloat16 hardware: "CPU KV cache size: 5,760 tokens; maximum concurrency for 512 tokens per
# request: 11.25x", and /metrics: 45 blocks of 128 tokens, 268,435,456 bytes.
BF16_BYTES_PER_TOKEN = 2 * 30 * 3 * 64 * 2
REPORT_FP32 = {"device": "CPU", "tokens": 5760, "max_model_len": 512, "max_concurrency": 11.25, "block_size": 128,
               "num_blocks": 45, "kv_cache_memory_bytes": 2**28, "dtype": "float32"}
# An earlier run in bfloat16 with a 64 MiB cache: "CPU KV cache size: 2,816 tokens, Maximum concurrency
# for 512 tokens per request: 5.50x", 22 blocks of 128.
REPORT_BF16 = {"device": "CPU", "tokens": 2816, "max_model_len": 512, "max_concurrency": 5.5, "block_size": 128,
               "num_blocks": 22, "kv_cache_memory_bytes": 64 * 2**20, "dtype": "bfloat16"}
GIVEN = {"bytes_per_token": 2 * BF16_BYTES_PER_TOKEN, 'reports["baseline"]': REPORT_FP32}
TINY = dict(REPORT_BF16, kv_cache_memory_bytes=5 * 128 * BF16_BYTES_PER_TOKEN + 100_000, num_blocks=5, tokens=640,
            max_concurrency=1.25)


def _bf16(report):
    return {"bytes_per_token": BF16_BYTES_PER_TOKEN, 'reports["baseline"]': report}


def _text_of(choice):
    delta = getattr(choice, "delta", None)
    return delta.content if delta is not None else getattr(choice, "text", None)


def ttft_first_event(events, t_start):
    return events[0][0] - t_start


def ttft_clock_reading(events, t_start):
    for t, chunk in events:
        for choice in chunk.choices:
            if _text_of(choice):
                return t
    return None


def ttft_chat_only(events, t_start):
    for t, chunk in events:
        for choice in chunk.choices:
            if choice.delta.content:                 # completions chunks have .text, not .delta
                return t - t_start
    return None


def ttft_assumes_one_choice(events, t_start):
    for t, chunk in events:
        if _text_of(chunk.choices[0]):               # the usage chunk has no choices
            return t - t_start
    return None


def ttft_empty_string_counts(events, t_start):
    for t, chunk in events:
        for choice in chunk.choices:
            if _text_of(choice) is not None:         # the role chunk carries "" and is not a token
                return t - t_start
    return None


def ttft_last_text(events, t_start):
    found = None
    for t, chunk in events:
        for choice in chunk.choices:
            if _text_of(choice):
                found = t - t_start
    return found


def make_stats(count_chunks=False, tpot_over_n=False, e2el_last_text=False, none_without_usage=False,
               ttft_first_event=False):
    """A stream_stats built from the reference pieces, with one thing changed."""
    def stats(events, t_start):
        usage, pieces, last_text = None, [], None
        for t, chunk in events:
            if getattr(chunk, "usage", None) is not None:
                usage = chunk.usage
            for choice in chunk.choices or []:
                text = _text_of(choice)
                pieces.append(text or "")
                if text:
                    last_text = t
        if usage is None:
            if none_without_usage:
                return {"text": "".join(pieces), "prompt_tokens": None, "completion_tokens": None,
                        "ttft": None, "e2el": events[-1][0] - t_start, "tpot": None}
            raise ValueError("no usage")
        ttft = (events[0][0] - t_start) if ttft_first_event else metrics.time_to_first_token(events, t_start)
        e2el = (last_text if e2el_last_text and last_text else events[-1][0]) - t_start
        n = sum(1 for _, c in events for ch in c.choices if _text_of(ch)) if count_chunks else usage.completion_tokens
        gaps = n if tpot_over_n else n - 1
        tpot = (e2el - ttft) / gaps if ttft is not None and n > 1 else None
        return {"text": "".join(pieces), "prompt_tokens": usage.prompt_tokens, "completion_tokens": n,
                "ttft": ttft, "e2el": e2el, "tpot": tpot}
    return stats


def stats_join_none(events, t_start):
    stats = make_stats()(events, t_start)
    stats["text"] = "".join(str(_text_of(ch)) for _, c in events for ch in c.choices)   # "None" for empty deltas
    return stats


def kv_ceil_blocks(kv_bytes, bpt, block, mml):
    blocks = math.ceil(kv_bytes / (block * bpt))
    return {"num_blocks": blocks, "tokens": blocks * block, "max_concurrency": blocks / math.ceil(mml / block)}


def kv_tokens_without_blocks(kv_bytes, bpt, block, mml):
    blocks = kv_bytes // (block * bpt)
    return {"num_blocks": blocks, "tokens": kv_bytes // bpt, "max_concurrency": blocks / math.ceil(mml / block)}


def kv_concurrency_from_tokens(kv_bytes, bpt, block, mml):
    blocks = kv_bytes // (block * bpt)
    return {"num_blocks": blocks, "tokens": blocks * block, "max_concurrency": blocks * block / mml}


def kv_concurrency_rounded_down(kv_bytes, bpt, block, mml):
    blocks = kv_bytes // (block * bpt)
    return {"num_blocks": blocks, "tokens": blocks * block, "max_concurrency": blocks // math.ceil(mml / block)}


def kv_floor_blocks_per_request(kv_bytes, bpt, block, mml):
    blocks = kv_bytes // (block * bpt)
    return {"num_blocks": blocks, "tokens": blocks * block, "max_concurrency": blocks / max(mml // block, 1)}


def kv_gib_not_bytes(kv_bytes, bpt, block, mml):
    blocks = int(kv_bytes / 2**30 * 1e9) // (block * bpt)      # treats GiB as 10**9 bytes
    return {"num_blocks": blocks, "tokens": blocks * block, "max_concurrency": blocks / math.ceil(mml / block)}


def load_over_latencies(results, wall):
    out = metrics.load_summary(results, wall)
    out["throughput"] = out["output_tokens"] / sum(r["e2el"] for r in results)
    return out


def load_counts_prompt_tokens(results, wall):
    out = metrics.load_summary(results, wall)
    out["throughput"] = sum(r["completion_tokens"] + r["prompt_tokens"] for r in results) / wall
    return out


def load_none_tpot_as_zero(results, wall):
    out = metrics.load_summary(results, wall)
    out["tpot_mean"] = statistics.fmean(r["tpot"] or 0.0 for r in results)
    return out


def load_median_unsorted(results, wall):
    out = metrics.load_summary(results, wall)
    ttfts = [r["ttft"] for r in results]
    out["ttft_median"] = ttfts[len(ttfts) // 2]
    return out


def load_mean_as_median(results, wall):
    out = metrics.load_summary(results, wall)
    out["ttft_median"] = out["ttft_mean"]
    return out


CATALOGUE = [
    wrong(check_ttft_from_stream, "that chunk carries no text", ttft_first_event),
    wrong(check_ttft_from_stream, "you returned a clock reading", ttft_clock_reading),
    wrong(check_ttft_from_stream, "your code raised AttributeError", ttft_chat_only),
    wrong(check_ttft_from_stream, "your code raised IndexError", ttft_assumes_one_choice),
    wrong(check_ttft_from_stream, "that chunk carries no text", ttft_empty_string_counts),
    wrong(check_ttft_from_stream, "expected 0.41 s, you returned 0.6", ttft_last_text),
    right(check_ttft_from_stream, metrics.time_to_first_token, label="library-reference"),
    wrong(check_usage_tokens, "that is the number of chunks, not of tokens", make_stats(count_chunks=True), label="chunks-as-tokens"),
    wrong(check_usage_tokens, "divide by completion_tokens - 1", make_stats(tpot_over_n=True), label="tpot-over-n"),
    wrong(check_usage_tokens, "e2el 0.6", make_stats(e2el_last_text=True), label="e2el-at-last-text"),
    wrong(check_usage_tokens, "must raise ValueError", make_stats(none_without_usage=True), label="no-error-without-usage"),
    wrong(check_usage_tokens, "ttft 0.0499", make_stats(ttft_first_event=True), label="ttft-first-event"),
    wrong(check_usage_tokens, "text 'NoneBonjour", stats_join_none),
    right(check_usage_tokens, make_stats(), label="reference-pieces"),
    wrong(check_kv_capacity, "round the block count down", kv_ceil_blocks),
    wrong(check_kv_capacity, "the cache is made of whole blocks", kv_tokens_without_blocks),
    wrong(check_kv_capacity, "divide the block count by", kv_concurrency_from_tokens),
    wrong(check_kv_capacity, "do not round it", kv_concurrency_rounded_down),
    wrong(check_kv_capacity, "the last one partly", kv_floor_blocks_per_request),
    wrong(check_kv_capacity, "do not convert it", kv_gib_not_bytes),
    right(check_kv_capacity, memory.kv_capacity, label="library-reference"),
    wrong(check_kv_matches_engine, "you predict 6 blocks, the engine allocated 5", kv_ceil_blocks, given=_bf16(TINY)),
    wrong(check_kv_matches_engine, "the engine logged 1.25x", kv_concurrency_rounded_down, given=_bf16(TINY)),
    wrong(check_kv_matches_engine, "expected 5 blocks x 128", kv_tokens_without_blocks, given=_bf16(TINY)),
    wrong(check_kv_matches_engine, "bytes_per_token is too large; compute it in the dtype the engine runs (bfloat16)",
          label="checkpoint-dtype-for-a-bf16-engine",
          given={"bytes_per_token": 2 * BF16_BYTES_PER_TOKEN, 'reports["baseline"]': REPORT_BF16}),
    wrong(check_kv_matches_engine, "bytes_per_token is too small; compute it in the dtype the engine runs (float32)",
          label="bf16-bytes-for-an-fp32-engine",
          given={"bytes_per_token": BF16_BYTES_PER_TOKEN, 'reports["baseline"]': REPORT_FP32}),
    wrong(check_kv_matches_engine, "explicit KV-cache size", label="no-explicit-cache-size",
          given={'reports["baseline"]': dict(REPORT_FP32, kv_cache_memory_bytes=None)}),
    right(check_kv_matches_engine, label="bf16-engine", given=_bf16(REPORT_BF16)),
    right(check_kv_matches_engine, label="context-not-a-block-multiple",
          given=_bf16(dict(REPORT_BF16, max_model_len=500, tokens=int(5.5 * 500)))),
    wrong(check_load_summary, "not the sum of latencies", load_over_latencies),
    wrong(check_load_summary, "count output (completion) tokens only", load_counts_prompt_tokens),
    wrong(check_load_summary, "leave out requests whose tpot is None", load_none_tpot_as_zero),
    wrong(check_load_summary, "ttft_median 0.25", load_median_unsorted),
    wrong(check_load_summary, "ttft_median 0.608", load_mean_as_median),
    right(check_load_summary, metrics.load_summary, label="library-reference"),
]
