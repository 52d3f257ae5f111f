"""Quality: a fixed evaluation text and perplexity over it (sliding windows, each token scored once)."""
from __future__ import annotations

import hashlib
import math
from typing import Iterable

import torch
from torch import nn


# The evaluation text: these topics of the standard library's pydoc_data.topics (the text of
# Python's language reference that help() shows), joined by blank lines, in this order.
# Every Python installation has them, so the lab needs no download. They change a little
# between Python versions: text_fingerprint() tells two runs whether they read the same text.
EVAL_TOPICS = ("objects", "execmodel", "types")


def evaluation_text(topics: Iterable[str] = EVAL_TOPICS) -> str:
    """The fixed evaluation text: ``pydoc_data.topics.topics[t]`` for t in EVAL_TOPICS, joined
    by blank lines ("Objects, values and types", "Execution model", "Built-in Types")."""
    from pydoc_data.topics import topics as reference
    return "\n\n".join(reference[t] for t in topics)


def text_fingerprint(text: str) -> str:
    """The first 12 hex digits of the text's SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def evaluation_ids(tokenizer, n_tokens: int, text: str | None = None) -> torch.Tensor:
    """The first ``n_tokens`` token ids of the evaluation text (no special tokens), 1-D."""
    text = evaluation_text() if text is None else text
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
    if ids.numel() < n_tokens:
        raise ValueError(f"the evaluation text has {ids.numel()} tokens, fewer than the {n_tokens} asked for")
    return ids[:n_tokens]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def perplexity(model: nn.Module, token_ids, window: int, stride: int) -> float:
    """Perplexity of ``token_ids`` (1-D) under ``model``, sliding window with stride.

    The standard strided evaluation (as in the Hugging Face perplexity guide): windows start
    at 0, stride, 2*stride, ... and span ``window`` tokens (the last one is cut at the end of
    the text); the loop stops after the window that reaches the end. A window [begin, end)
    scores the tokens t with max(prev_end, begin + 1) <= t < end, where prev_end is where the
    previous window ended: only tokens no earlier window scored, and never the window's own
    first token, which has no context inside the window. Token t is scored with the
    log-probability that the logits at position t-1 give it (the label shift); the tokens of
    the window before t are its context.

    With stride < window every token from the second to the last is scored exactly once
    (N - 1 tokens), each after at least window - stride tokens of context once past the first
    window. With stride == window the windows do not overlap and the first token of each
    window is not scored.

        ppl = exp( sum over scored t of -log p(x_t | context) / number of scored tokens )
    """
    ids = torch.as_tensor(token_ids).reshape(-1)
    n = ids.numel()
    if n < 2:
        raise ValueError("perplexity needs at least two tokens")
    if not 1 <= stride <= window:
        raise ValueError(f"need 1 <= stride <= window, got stride={stride}, window={window}")
    device = model_device(model)
    nll_sum, scored, prev_end = 0.0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        chunk = ids[begin:end].to(device)
        logits = model(chunk[None], use_cache=False).logits[0].float()
        first = max(prev_end, begin + 1)              # first token this window scores
        logp = logits[first - begin - 1:end - begin - 1].log_softmax(dim=-1)
        targets = ids[first:end].to(device)
        nll_sum += -logp.gather(1, targets[:, None]).double().sum().item()
        scored += end - first
        prev_end = end
        if end == n:
            break
    return math.exp(nll_sum / scored)
