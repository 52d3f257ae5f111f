"""Workloads, built offline with the model's tokenizer: random prompts of exact token lengths, a shared
prefix, or chat conversations; described, and written as vLLM's JSONL "custom" dataset."""
from __future__ import annotations

import json
import random
from pathlib import Path

from inferlab.bench.records import BenchRequest, write_atomically
from inferlab.metrics import distribution


def word_tokens(tokenizer) -> list[int]:
    """Ids of tokens that are one space plus an ASCII word and survive a decode/encode round trip.

    A text made of k of them re-tokenizes to exactly k tokens, because a byte-level BPE
    pre-tokenizer cuts text at the spaces before words and each piece is then one of these tokens.
    """
    ids = []
    for token, token_id in tokenizer.get_vocab().items():
        word = tokenizer.convert_tokens_to_string([token])
        if len(word) > 2 and word[0] == " " and word[1:].isascii() and word[1:].isalpha():
            if tokenizer(word, add_special_tokens=False).input_ids == [token_id]:
                ids.append(token_id)
    if len(ids) < 100:
        raise ValueError("this tokenizer has too few word tokens to build exact-length random prompts")
    return sorted(ids)


def _exact_text(tokenizer, ids: list[int]) -> str:
    text = tokenizer.decode(ids)
    n = len(tokenizer(text, add_special_tokens=False).input_ids)
    if n != len(ids):
        raise RuntimeError(f"a prompt of {len(ids)} word tokens re-tokenized to {n}; use another tokenizer")
    return text


def random_requests(tokenizer, num_prompts: int, input_len: int, output_len: int, seed: int = 0,
                    range_ratio: float = 0.0) -> list[BenchRequest]:
    """Prompts of random words with exact token lengths: no two share a prefix, so no cache hits.

    range_ratio 0 gives every request input_len prompt tokens and output_len output tokens; r > 0
    draws each length uniformly from [L(1 - r), L(1 + r)] (as vLLM's --random-range-ratio), which
    keeps the means and stops identical requests from moving through the engine in lockstep.
    """
    if not 0 <= range_ratio < 1:
        raise ValueError(f"range_ratio must be within [0, 1), got {range_ratio}")
    vocab = word_tokens(tokenizer)
    rng = random.Random(seed)

    def length(mean):
        return rng.randint(max(1, round(mean * (1 - range_ratio))), max(1, round(mean * (1 + range_ratio))))
    out = []
    for _ in range(num_prompts):
        n_in, n_out = length(input_len), length(output_len)
        out.append(BenchRequest(_exact_text(tokenizer, [rng.choice(vocab) for _ in range(n_in)]), n_in, n_out))
    return out


def shared_prefix_requests(tokenizer, num_prompts: int, prefix_len: int, suffix_len: int, output_len: int,
                           num_prefixes: int = 1, seed: int = 0) -> list[BenchRequest]:
    """Each prompt is one of num_prefixes shared prefixes (a system prompt, a document) + its own suffix.

    The prefixes are prefix_len tokens and the suffixes suffix_len tokens, both exact, so a server
    with prefix caching can skip prefix_len tokens of prefill on every request after the first.
    """
    vocab = word_tokens(tokenizer)
    rng = random.Random(seed)
    prefixes = [[rng.choice(vocab) for _ in range(prefix_len)] for _ in range(num_prefixes)]
    out = []
    for i in range(num_prompts):
        ids = prefixes[i % num_prefixes] + [rng.choice(vocab) for _ in range(suffix_len)]
        out.append(BenchRequest(_exact_text(tokenizer, ids), prefix_len + suffix_len, output_len))
    return out


def conversation_requests(tokenizer, num_prompts: int, output_len: int | None = None,
                          seed: int = 0) -> list[BenchRequest]:
    """Chat requests from our own small set of conversations (inferlab/data/conversations.json).

    Message lists for the chat endpoint; prompt_len counts the tokens after the chat template.
    output_len None keeps each conversation's own reply length. Conversations repeat, in a shuffled
    order, when more prompts are asked for than the set holds.
    """
    convs = json.loads((Path(__file__).parent.parent / "data" / "conversations.json").read_text(encoding="utf-8"))
    order = list(range(len(convs)))
    random.Random(seed).shuffle(order)
    out = []
    for i in range(num_prompts):
        conv = convs[order[i % len(order)]]
        ids = _template_ids(tokenizer, conv["messages"])
        out.append(BenchRequest(conv["messages"], len(ids), output_len or conv["reply_tokens"]))
    return out


def _template_ids(tokenizer, messages: list[dict]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def multi_turn_requests(tokenizer, conversations: int, turns: int, system_len: int, user_len: int,
                        reply_len: int, output_len: int, seed: int = 0) -> list[BenchRequest]:
    """Chats that resend their history, as chat clients do: every turn's prompt is the previous turn's
    prompt, the assistant's reply and a new user message, after the chat template, as token ids.

    All conversations share one system prompt of system_len words; user messages and replies are
    random words (replies are written here, not generated, so the next turn's tokens are known).
    Requests come turn by turn: the first turn of every conversation, then the second, ...
    """
    vocab = word_tokens(tokenizer)
    rng = random.Random(seed)

    def words(n):
        return tokenizer.decode([rng.choice(vocab) for _ in range(n)]).strip()
    system = words(system_len)
    chats = [[{"role": "system", "content": system}] for _ in range(conversations)]
    out = []
    for turn in range(turns):
        for chat in chats:
            if turn:
                chat.append({"role": "assistant", "content": words(reply_len)})
            chat.append({"role": "user", "content": words(user_len)})
            ids = _template_ids(tokenizer, chat)
            out.append(BenchRequest(ids, len(ids), output_len))
    return out


def describe(requests: list[BenchRequest]) -> dict:
    """Token-length statistics of a workload, for the report."""
    ins, outs = [r.prompt_len for r in requests], [r.output_len for r in requests]
    return {"num_prompts": len(requests), "input_len": distribution(ins, ()), "output_len": distribution(outs, ()),
            "total_input_tokens": sum(ins), "total_output_tokens": sum(outs)}


def write_jsonl(requests: list[BenchRequest], path) -> Path:
    """The workload as vLLM's "custom" dataset: one {"prompt", "output_tokens"} object per line."""
    path = Path(path)
    if any(not isinstance(r.prompt, str) for r in requests):
        raise ValueError("vLLM's custom dataset takes text prompts; chat workloads cannot be written as one")
    return write_atomically(path, "".join(json.dumps({"prompt": r.prompt, "output_tokens": r.output_len}) + "\n"
                                           for r in requests))


def load_tokenizer(model: str, tokenizer: str | None = None):
    """The tokenizer that builds the workload: --tokenizer, else the model's (a local directory, the
    embedded model's served name, or a hub id already in the local cache)."""
    from transformers import AutoTokenizer
    from inferlab import engines, models
    source = tokenizer or model
    if tokenizer is None and models.embedded_ready() and model == engines.served_name(str(models.embedded_model_dir())):
        source = str(models.embedded_model_dir())
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise ValueError(f"cannot load a tokenizer from {source!r} ({type(exc).__name__}); "
                         "pass --tokenizer with a local model directory") from None


def build_workload(tokenizer, dataset: str, num_prompts: int, input_len: int, output_len: int, seed: int = 0,
                   range_ratio: float = 0.0, prefix_len: int = 0) -> list[BenchRequest]:
    if dataset == "random":
        return random_requests(tokenizer, num_prompts, input_len, output_len, seed, range_ratio)
    if dataset == "shared-prefix":
        if not 0 < prefix_len < input_len:
            raise ValueError(f"--prefix-len must be between 1 and --input-len - 1 ({input_len - 1}), got {prefix_len}")
        return shared_prefix_requests(tokenizer, num_prompts, prefix_len, input_len - prefix_len, output_len, seed=seed)
    if dataset == "conversation":
        return conversation_requests(tokenizer, num_prompts, output_len, seed)
    raise ValueError(f"unknown dataset {dataset!r}: use random, shared-prefix or conversation")
