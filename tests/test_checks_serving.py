"""Lab 04 checks: each fails on the learner's stub, fails on plausible wrong answers, passes on the solution.

The functions under test come from the notebooks themselves (cells tagged ``exercise``),
through tests/nbcode.py. The wrong answers below are mistakes a learner could make. No
engine is started here: the engine-report check gets the figures a real vLLM 0.32 CPU
server logged (tests/test_engines.py starts a real one and compares the same way).
"""
import math
import statistics

import pytest

from inferlab import metrics
from inferlab.checks import serving as chk

import nbcode

LAB = "04-vllm"



def passes(check, *args):
    return check(*args).passed


def _text_of(choice):
    delta = getattr(choice, "delta", None)
    return delta.content if delta is not None else getattr(choice, "text", None)


# ----------------------------------------------------------------------------- TTFT from a stream

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


def test_ttft_solution_and_stub(solution, stub):
    assert passes(chk.check_ttft_from_stream, solution["first_token_time"])
    assert not passes(chk.check_ttft_from_stream, stub["first_token_time"])


@pytest.mark.parametrize("wrong", [ttft_first_event, ttft_clock_reading, ttft_chat_only, ttft_assumes_one_choice,
                                   ttft_empty_string_counts, ttft_last_text])
def test_ttft_rejects(wrong):
    assert not passes(chk.check_ttft_from_stream, wrong)


def test_ttft_diagnoses_the_first_chunk_mistake(capsys):
    verdict = chk.check_ttft_from_stream(ttft_first_event)
    assert "first chunk" in verdict.detail and "carries no text" in verdict.detail


# ----------------------------------------------------------------------------- stream statistics

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


def test_stats_solution_and_stub(solution, stub):
    assert passes(chk.check_usage_tokens, solution["stream_stats"])
    assert not passes(chk.check_usage_tokens, stub["stream_stats"])


def test_the_reference_pieces_used_below_are_right():
    assert passes(chk.check_usage_tokens, make_stats())


@pytest.mark.parametrize("wrong", [
    make_stats(count_chunks=True), make_stats(tpot_over_n=True), make_stats(e2el_last_text=True),
    make_stats(none_without_usage=True), make_stats(ttft_first_event=True), stats_join_none,
], ids=["chunks-as-tokens", "tpot-over-n", "e2el-at-last-text", "no-error-without-usage", "ttft-first-event",
        "joins-None"])
def test_stats_rejects(wrong):
    assert not passes(chk.check_usage_tokens, wrong)


def test_stats_explains_chunks_are_not_tokens():
    verdict = chk.check_usage_tokens(make_stats(count_chunks=True))
    assert "not of tokens" in verdict.detail


# ----------------------------------------------------------------------------- KV capacity

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


def test_kv_solution_and_stub(solution, stub):
    assert passes(chk.check_kv_capacity, solution["kv_capacity"])
    assert not passes(chk.check_kv_capacity, stub["kv_capacity"])


@pytest.mark.parametrize("wrong", [kv_ceil_blocks, kv_tokens_without_blocks, kv_concurrency_from_tokens,
                                   kv_concurrency_rounded_down, kv_floor_blocks_per_request, kv_gib_not_bytes])
def test_kv_rejects(wrong):
    assert not passes(chk.check_kv_capacity, wrong)


@pytest.mark.parametrize("wrong, words", [(kv_ceil_blocks, "round the block count down"),
                                          (kv_tokens_without_blocks, "whole blocks"),
                                          (kv_concurrency_from_tokens, "ceil(max_model_len / block_size)"),
                                          (kv_concurrency_rounded_down, "fraction")])
def test_kv_diagnoses(wrong, words):
    assert words in chk.check_kv_capacity(wrong).detail


# What vLLM 0.32 (CPU) logged for the embedded model with a 64 MiB cache in bfloat16:
# "CPU KV cache size: 2,816 tokens, Maximum concurrency for 512 tokens per request: 5.50x", 22 blocks of 128.
REPORT = {"device": "CPU", "tokens": 2816, "max_model_len": 512, "max_concurrency": 5.5, "block_size": 128,
          "num_blocks": 22, "kv_cache_memory_bytes": 64 * 2**20}
BF16_BYTES_PER_TOKEN = 2 * 30 * 3 * 64 * 2


def test_engine_match_solution_and_stub(solution, stub):
    assert passes(chk.check_kv_matches_engine, solution["kv_capacity"], BF16_BYTES_PER_TOKEN, REPORT)
    assert not passes(chk.check_kv_matches_engine, stub["kv_capacity"], BF16_BYTES_PER_TOKEN, REPORT)


def test_engine_match_accepts_a_context_that_is_not_a_block_multiple(solution):
    """vLLM logs int(concurrency * max_model_len) tokens then; the block count still has to agree."""
    report = dict(REPORT, max_model_len=500, tokens=int(5.5 * 500))
    assert passes(chk.check_kv_matches_engine, solution["kv_capacity"], BF16_BYTES_PER_TOKEN, report)


def test_engine_match_rejects_the_checkpoint_dtype(solution):
    """float32 on disk, bfloat16 in the engine: twice the bytes per token halves the predicted blocks."""
    verdict = chk.check_kv_matches_engine(solution["kv_capacity"], 2 * BF16_BYTES_PER_TOKEN, REPORT)
    assert not verdict.passed and "dtype the engine runs" in verdict.detail


def test_engine_match_rejects_bfloat16_bytes_for_a_float32_engine(solution):
    """A laptop's engine runs float32 (inferlab.host): bfloat16 bytes per token predict twice the blocks."""
    fp32 = dict(REPORT, num_blocks=11, tokens=1408, max_concurrency=2.75, dtype="float32")
    assert passes(chk.check_kv_matches_engine, solution["kv_capacity"], 2 * BF16_BYTES_PER_TOKEN, fp32)
    verdict = chk.check_kv_matches_engine(solution["kv_capacity"], BF16_BYTES_PER_TOKEN, fp32)
    assert not verdict.passed and "too small" in verdict.detail and "(float32)" in verdict.detail


def test_engine_match_verdict_reads_the_same_in_either_dtype(solution):
    """Committed outputs must not depend on the host: the verdict names the cache, not the block count."""
    fp32 = dict(REPORT, num_blocks=11, tokens=1408, max_concurrency=2.75, dtype="float32")
    bf16 = dict(REPORT, dtype="bfloat16")
    a = chk.check_kv_matches_engine(solution["kv_capacity"], 2 * BF16_BYTES_PER_TOKEN, fp32)
    b = chk.check_kv_matches_engine(solution["kv_capacity"], BF16_BYTES_PER_TOKEN, bf16)
    assert a.passed and b.passed and a.line() == b.line()


@pytest.mark.parametrize("wrong", [kv_ceil_blocks, kv_concurrency_rounded_down, kv_tokens_without_blocks])
def test_engine_match_rejects_wrong_functions(wrong):
    tiny = dict(REPORT, kv_cache_memory_bytes=5 * 128 * BF16_BYTES_PER_TOKEN + 100_000, num_blocks=5, tokens=640,
                max_concurrency=1.25)
    assert not passes(chk.check_kv_matches_engine, wrong, BF16_BYTES_PER_TOKEN, tiny)


def test_engine_match_needs_an_explicit_cache_size(solution):
    verdict = chk.check_kv_matches_engine(solution["kv_capacity"], BF16_BYTES_PER_TOKEN,
                                          dict(REPORT, kv_cache_memory_bytes=None))
    assert not verdict.passed and "explicit KV-cache size" in verdict.detail


# ----------------------------------------------------------------------------- a load, summarized

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


def test_load_solution_and_stub(solution, stub):
    assert passes(chk.check_load_summary, solution["summarize_load"])
    assert not passes(chk.check_load_summary, stub["summarize_load"])


@pytest.mark.parametrize("wrong", [load_over_latencies, load_counts_prompt_tokens, load_none_tpot_as_zero,
                                   load_median_unsorted, load_mean_as_median])
def test_load_rejects(wrong):
    assert not passes(chk.check_load_summary, wrong)


# ----------------------------------------------------------------------------- the notebook and the module

def test_notebook_calls_every_check_of_the_module():
    import nbformat
    from inferlab import authoring
    nb = nbformat.read(nbcode.SOLUTIONS / f"{LAB}.ipynb", as_version=4)
    called = set(authoring.graded_checks(nb))
    defined = {name for name in dir(chk) if getattr(getattr(chk, name), "is_graded_check", False)}
    assert called == defined


def test_check_details_are_deterministic(solution):
    """Check cells are compared by nbval: the same answer must print the same line every time."""
    calls = [(chk.check_ttft_from_stream, solution["first_token_time"]), (chk.check_usage_tokens, solution["stream_stats"]),
             (chk.check_kv_capacity, solution["kv_capacity"]),
             (chk.check_kv_matches_engine, solution["kv_capacity"], BF16_BYTES_PER_TOKEN, REPORT),
             (chk.check_load_summary, solution["summarize_load"])]
    for call in calls:
        first, second = call[0](*call[1:]), call[0](*call[1:])
        assert first.passed and first.line() == second.line()


def test_stub_and_solution_define_the_same_functions(solution, stub):
    names = {"first_token_time", "stream_stats", "kv_capacity", "summarize_load"}
    assert names <= set(solution) and names <= set(stub)
