"""Graded checks of lab 04, serving with vLLM.

The stream checks feed the learner's functions streams the notebook never sends: real
``openai`` chunk objects (built the way the client builds them) for chat and for plain
completions, with a role-only first chunk, empty deltas, chunks that carry no token, a
usage-only final chunk and a stream without any text. The KV-capacity check uses block
sizes, cache sizes, per-token bytes and context lengths other than the notebook's, some of
which round down; one check compares the learner's figure for the running server with
what the engine itself reported.
"""
from __future__ import annotations

import math

from inferlab import memory, metrics
from inferlab.checks import CheckFailed, Exercise, expect, expect_dict, graded, is_close

LAB = "04-vllm"

T0 = 1000.0   # streams start at an arbitrary clock reading, as time.perf_counter() does


# ----------------------------------------------------------------------------- synthetic streams

def _chat(content=None, role=None, finish=None) -> object:
    from openai._models import construct_type
    from openai.types.chat import ChatCompletionChunk
    delta = {"content": content}
    if role:
        delta["role"] = role
    return construct_type(type_=ChatCompletionChunk, value={
        "id": "chatcmpl-check", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _text(text, finish=None) -> object:
    from openai._models import construct_type
    from openai.types import Completion
    return construct_type(type_=Completion, value={
        "id": "cmpl-check", "object": "text_completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]})


def _usage(prompt: int, completion: int, chat: bool = True) -> object:
    from openai._models import construct_type
    from openai.types import Completion
    from openai.types.chat import ChatCompletionChunk
    kind = ChatCompletionChunk if chat else Completion
    return construct_type(type_=kind, value={
        "id": "check", "object": "chat.completion.chunk" if chat else "text_completion", "created": 0,
        "model": "m", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})


def _stream(*timed_chunks) -> list:
    return [(T0 + dt, chunk) for dt, chunk in timed_chunks]


def _streams() -> dict[str, tuple[list, dict]]:
    """Name -> (events, expected stats). Expected values are written out, not computed."""
    chat = _stream((0.05, _chat("", role="assistant")),          # role first, no text yet
                   (0.30, _chat(None)),                           # a delta without content
                   (0.41, _chat("Bon")),
                   (0.47, _chat("")),                             # a token held back (half a character)
                   (0.53, _chat("jour ☀")),
                   (0.60, _chat(" !")),
                   (0.66, _chat("", finish="length")),
                   (0.71, _usage(27, 6)))
    completion = _stream((0.22, _text("")),
                         (0.25, _text("The")),
                         (0.31, _text(" sky")),
                         (0.36, _text(" is", finish="length")),
                         (0.38, _usage(5, 3, chat=False)))
    single = _stream((0.08, _chat("", role="assistant")),
                     (0.90, _chat("Yes", finish="stop")),
                     (0.93, _usage(12, 1)))
    silent = _stream((0.10, _chat("", role="assistant")),
                     (0.50, _chat("", finish="stop")),
                     (0.52, _usage(9, 1)))
    return {
        "a chat stream (role chunk first, an empty delta, a held-back token)":
            (chat, {"text": "Bonjour ☀ !", "prompt_tokens": 27, "completion_tokens": 6, "ttft": 0.41,
                    "e2el": 0.71, "tpot": (0.71 - 0.41) / 5}),
        "a completions stream (choices carry .text, not .delta)":
            (completion, {"text": "The sky is", "prompt_tokens": 5, "completion_tokens": 3, "ttft": 0.25,
                          "e2el": 0.38, "tpot": (0.38 - 0.25) / 2}),
        "a one-token chat stream":
            (single, {"text": "Yes", "prompt_tokens": 12, "completion_tokens": 1, "ttft": 0.90,
                      "e2el": 0.93, "tpot": None}),
        "a chat stream whose only token is a special token (no text at all)":
            (silent, {"text": "", "prompt_tokens": 9, "completion_tokens": 1, "ttft": None,
                      "e2el": 0.52, "tpot": None}),
    }


def _close(a, b, tol=1e-9) -> bool:
    return is_close(a, b, rel_tol=1e-9, abs_tol=tol)


@graded(hint="walk the (time, chunk) events in order; skip chunks without choices (the usage chunk) and "
             "choices without text (chat: choice.delta.content, completions: choice.text); return that "
             "chunk's time minus t_start, or None when no chunk carries text")
def check_ttft_from_stream(first_token_time):
    """first_token_time(events, t_start) -> seconds or None."""
    for label, (events, want) in _streams().items():
        got = first_token_time(list(events), T0)
        if _close(got, want["ttft"]):
            continue
        first = events[0][0] - T0
        if want["ttft"] is not None and _close(got, first):
            raise CheckFailed(f"{label}: you returned the arrival of the first chunk ({first:.2f} s); "
                              f"that chunk carries no text. Expected {want['ttft']:.2f} s")
        if got is not None and want["ttft"] is not None and _close(got, T0 + want["ttft"]):
            raise CheckFailed(f"{label}: you returned a clock reading, not a duration: subtract t_start")
        raise CheckFailed(f"{label}: expected {want['ttft']!r} s, you returned {got!r}")
    return "right on chat and completions streams, a role-only first chunk, held-back tokens and a stream with no text"


@graded(hint="text: join the text of every chunk; token counts: the usage of the last chunk (chunks are not "
             "tokens); ttft from first_token_time; e2el: arrival of the last event minus t_start; "
             "tpot = (e2el - ttft) / (completion_tokens - 1), None for one token or no text; "
             "raise ValueError when the stream has no usage")
def check_usage_tokens(stream_stats):
    """stream_stats(events, t_start) -> {"text", "prompt_tokens", "completion_tokens", "ttft", "e2el", "tpot"}."""
    for label, (events, want) in _streams().items():
        got = stream_stats(list(events), T0)
        expect_dict(got, want, label)
        if got["completion_tokens"] != want["completion_tokens"]:
            n_chunks = sum(1 for _, c in events if c.choices)
            n_text = sum(1 for _, c in events for ch in c.choices
                         if (getattr(getattr(ch, "delta", None), "content", None) or getattr(ch, "text", None)))
            why = (" -- that is the number of chunks, not of tokens: read usage.completion_tokens"
                   if got["completion_tokens"] in (n_chunks, n_text) else "")
            raise CheckFailed(f"{label}: completion_tokens {got['completion_tokens']!r}, expected "
                              f"{want['completion_tokens']}{why}")
        expect(got["prompt_tokens"] == want["prompt_tokens"],
               f"{label}: prompt_tokens {got['prompt_tokens']!r}, expected {want['prompt_tokens']} (from usage)")
        expect(got["text"] == want["text"], f"{label}: text {got['text']!r}, expected {want['text']!r}")
        for key in ("ttft", "e2el", "tpot"):
            if not _close(got[key], want[key]):
                hint = ""
                if key == "tpot" and want[key] is not None and _close(got[key], (want["e2el"] - want["ttft"]) / want["completion_tokens"]):
                    hint = ": divide by completion_tokens - 1 (the gaps after the first token)"
                raise CheckFailed(f"{label}: {key} {got[key]!r}, expected {want[key]!r}{hint}")
    no_usage = [(t, c) for t, c in _streams()["a one-token chat stream"][0] if c.choices]
    try:
        stream_stats(no_usage, T0)
    except ValueError:
        pass
    except Exception as exc:
        raise CheckFailed(f"a stream without a usage chunk raised {type(exc).__name__}; raise ValueError "
                          "saying the request needs stream_options={'include_usage': True}")
    else:
        raise CheckFailed("a stream without a usage chunk must raise ValueError "
                          "(the request forgot stream_options={'include_usage': True})")
    return "token counts from usage, text, ttft, e2el and tpot right on 4 unseen streams; no usage -> ValueError"


# ----------------------------------------------------------------------------- KV capacity

KV_CASES = [  # (what, kv_cache_bytes, bytes_per_token, block_size, max_model_len)
    ("1 GiB, 46,080 B/token (an FP32 cache), blocks of 16, max_model_len 1000", 2**30, 46080, 16, 1000),
    ("3.5 GiB, 28,672 B/token, blocks of 16, max_model_len 4096", int(3.5 * 2**30), 28672, 16, 4096),
    ("0.3 GiB, 131,072 B/token, blocks of 32, max_model_len 8192 (less than one full request)",
     int(0.3 * 2**30), 131072, 32, 8192),
    ("200 MB, 12,288 B/token, blocks of 256, max_model_len 300", 200_000_000, 12288, 256, 300),
    ("exactly 40 blocks of 128 tokens at 23,040 B/token, max_model_len 640", 40 * 128 * 23040, 23040, 128, 640),
    ("less than one block", 128 * 23040 - 1, 23040, 128, 512),
]


def _kv_diagnosis(got: dict, want: dict, kv_bytes, bpt, block, mml) -> str:
    blocks = got.get("num_blocks")
    if blocks == math.ceil(kv_bytes / (block * bpt)) and blocks != want["num_blocks"]:
        return "a partial block holds no tokens: round the block count down"
    if got.get("tokens") == kv_bytes // bpt and got.get("tokens") != want["tokens"]:
        return "the cache is made of whole blocks: count blocks first, then tokens = blocks * block_size"
    if _close(got.get("max_concurrency"), want["tokens"] / mml, 1e-6):
        return ("a request of max_model_len tokens occupies whole blocks: divide the block count by "
                "ceil(max_model_len / block_size)")
    if _close(got.get("max_concurrency"), blocks / max(mml // block, 1) if blocks else None, 1e-6):
        return ("a request of max_model_len tokens occupies whole blocks, the last one partly: divide the block "
                "count by ceil(max_model_len / block_size)")
    if blocks == int(kv_bytes * 1e9 / 2**30) // (block * bpt):
        return "kv_cache_bytes is a count of bytes already: do not convert it (a GiB is 2**30 bytes, not 10**9)"
    if _close(got.get("max_concurrency"), math.floor(want["max_concurrency"])):
        return "vLLM reports the concurrency as a fraction (e.g. 5.50x); do not round it"
    return ""


@graded(hint="num_blocks = kv_cache_bytes // (block_size * bytes_per_token); tokens = num_blocks * block_size; "
             "max_concurrency = num_blocks / ceil(max_model_len / block_size), a fraction as vLLM logs it")
def check_kv_capacity(kv_capacity):
    """kv_capacity(kv_cache_bytes, bytes_per_token, block_size, max_model_len) -> {"num_blocks", "tokens", "max_concurrency"}."""
    for label, kv_bytes, bpt, block, mml in KV_CASES:
        want = memory.kv_capacity(kv_bytes, bpt, block, mml)
        got = kv_capacity(kv_bytes, bpt, block, mml)
        expect_dict(got, want)
        ok = (got["num_blocks"] == want["num_blocks"] and got["tokens"] == want["tokens"]
              and _close(got["max_concurrency"], want["max_concurrency"], 1e-9))
        if not ok:
            shown = {k: got[k] for k in want}
            why = _kv_diagnosis(got, want, kv_bytes, bpt, block, mml)
            raise CheckFailed(f"{label}: you returned {shown}, expected {want}" + (f"; {why}" if why else ""))
    return f"blocks, tokens and max concurrency right on {len(KV_CASES)} unseen caches (partial blocks, partial requests)"


@graded(hint="call kv_capacity(report['kv_cache_memory_bytes'], bytes_per_token, report['block_size'], "
             "report['max_model_len']); bytes_per_token comes from inferlab.memory in the dtype the engine "
             "runs (report['dtype']), not the dtype of the files on disk")
def check_kv_matches_engine(kv_capacity, bytes_per_token, report):
    """The learner's capacity for the running server against the figures the engine logged.

    The verdict names the cache, not the block count: the block count depends on the engine's dtype,
    which follows the CPU (inferlab.host), and a committed verdict must read the same on every host.
    """
    need = ("kv_cache_memory_bytes", "block_size", "max_model_len", "num_blocks", "tokens", "max_concurrency")
    absent = [k for k in need if report.get(k) is None]
    if absent:
        raise CheckFailed(f"the engine report lacks {absent}: pass server.kv_report() of a server started "
                          "with an explicit KV-cache size")
    got = kv_capacity(report["kv_cache_memory_bytes"], bytes_per_token, report["block_size"], report["max_model_len"])
    expect_dict(got, ())
    if got.get("num_blocks") != report["num_blocks"]:
        ratio = report["num_blocks"] / got["num_blocks"] if got.get("num_blocks") else None
        dtype = report.get("dtype") or "its own dtype"
        why = ""
        if ratio and any(abs(ratio - r) < 0.1 * r for r in (2, 4, 0.5, 0.25)):
            size = "large" if ratio > 1 else "small"
            why = (f" -- {ratio:g}x yours: bytes_per_token is too {size}; compute it in the dtype the engine "
                   f"runs ({dtype}), not the dtype of the checkpoint")
        raise CheckFailed(f"you predict {got.get('num_blocks')!r} blocks, the engine allocated "
                          f"{report['num_blocks']}{why}")
    expect(got.get("tokens") == report["num_blocks"] * report["block_size"],
           f"tokens {got.get('tokens')!r}, expected {report['num_blocks']} blocks x {report['block_size']}")
    if report["max_model_len"] % report["block_size"] == 0:
        expect(got["tokens"] == report["tokens"],
               f"tokens {got['tokens']:,}, but the engine logged {report['tokens']:,}")
    expect(abs(float(got["max_concurrency"]) - report["max_concurrency"]) < 0.006,
           f"max_concurrency {got['max_concurrency']!r}, the engine logged {report['max_concurrency']:.2f}x")
    return (f"blocks, tokens and max concurrency equal the engine's own figures for a "
            f"{report['kv_cache_memory_bytes']:,}-byte cache in blocks of {report['block_size']} tokens at "
            f"max_model_len {report['max_model_len']}")


# ----------------------------------------------------------------------------- a load, summarized

def _result(ttft, e2el, n, prompt=40) -> dict:
    return {"text": "x" * n, "prompt_tokens": prompt, "completion_tokens": n, "ttft": ttft, "e2el": e2el,
            "tpot": (e2el - ttft) / (n - 1) if n > 1 and ttft is not None else None}


LOAD_CASES = [
    ("6 requests in 4.0 s, one of them a single token",
     [_result(0.9, 3.1, 48), _result(0.2, 2.0, 48), _result(1.4, 3.9, 40, prompt=300), _result(0.25, 0.25, 1),
      _result(0.6, 2.8, 48), _result(0.3, 1.9, 30)], 4.0),
    ("3 requests in 10.5 s", [_result(4.0, 10.0, 100), _result(0.5, 6.0, 100), _result(2.0, 8.0, 64)], 10.5),
]


@graded(hint="requests and output_tokens (sum of completion_tokens); throughput = output_tokens / wall_seconds; "
             "ttft_mean, ttft_median (statistics.median), ttft_max over requests with a ttft; tpot_mean over "
             "requests whose tpot is not None")
def check_load_summary(summarize_load):
    """summarize_load(results, wall_seconds) -> {"requests", "output_tokens", "throughput", "ttft_mean",
    "ttft_median", "ttft_max", "tpot_mean"}."""
    for label, results, wall in LOAD_CASES:
        want = metrics.load_summary(results, wall)
        got = summarize_load([dict(r) for r in results], wall)
        expect_dict(got, want)
        for key, value in want.items():
            if _close(got[key], value):
                continue
            hint = ""
            if key == "throughput" and _close(got[key], want["output_tokens"] / sum(r["e2el"] for r in results)):
                hint = ": requests overlap, so divide by the wall time of the whole load, not the sum of latencies"
            elif key == "throughput" and _close(got[key], sum(r["completion_tokens"] + r["prompt_tokens"]
                                                              for r in results) / wall):
                hint = ": count output (completion) tokens only"
            elif key == "tpot_mean":
                hint = ": leave out requests whose tpot is None (a single token has no gaps)"
            elif key == "ttft_median":
                hint = ": the median is the middle value of the sorted list (statistics.median)"
            raise CheckFailed(f"{label}: {key} {got[key]!r}, expected {value!r}{hint}")
    return "requests, tokens, throughput, TTFT mean/median/max and TPOT mean right on 2 unseen loads"


EXERCISES = [
    Exercise(check_ttft_from_stream, ("first_token_time",)),
    Exercise(check_usage_tokens, ("stream_stats",)),
    Exercise(check_kv_capacity, ("kv_capacity",)),
    Exercise(check_kv_matches_engine, ("kv_capacity",), ("bytes_per_token", 'reports["baseline"]')),
    Exercise(check_load_summary, ("summarize_load",)),
]
