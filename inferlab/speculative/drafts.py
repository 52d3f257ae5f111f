"""Drafters: cheap ways to guess the next few tokens that the target model then verifies.

A drafter is a callable ``propose(context, k) -> list of at most k token ids``, where ``context`` is
every token so far (prompt and output). Two need no second download:

- ``PromptLookup``: find an earlier occurrence of the context's last n tokens and propose
  what followed it (n-gram matching; vLLM's ``method: "ngram"``). Free to compute, good where the
  output copies from the prompt (quoting, editing code, extraction).
- ``DraftModel`` over ``truncated_model(model, n)``: the target's own first n layers with its final
  norm and LM head (self-speculation by early exit). Same tokenizer by construction; a forward pass
  costs a fraction of the target's, and it agrees with the target as often as n layers allow.
"""
from __future__ import annotations

import atexit
import copy
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch


def prompt_lookup(context: Sequence[int], k: int, max_ngram: int = 4, min_ngram: int = 2) -> list[int]:
    """Up to k tokens that followed the earliest occurrence of the longest matching suffix (vLLM's rule).

    Tries n = max_ngram down to min_ngram: the last n tokens of ``context`` are searched for earlier in
    it (occurrences may overlap the suffix, but the suffix itself does not count); the first n that
    matches wins, its earliest occurrence is taken, and up to k of the tokens after it are proposed
    (fewer if the context ends sooner). No match: an empty draft.
    """
    tokens = list(context)
    for n in range(min(max_ngram, len(tokens) - 1), min_ngram - 1, -1):
        suffix = tokens[-n:]
        for start in range(len(tokens) - n):                 # earliest first; never the suffix itself
            if tokens[start:start + n] == suffix:
                return tokens[start + n:start + n + k]
    return []


class Timed:
    """A drafter that counts its calls and the seconds they took (``propose`` does the drafting)."""

    def __init__(self, propose):
        self.propose = propose
        self.calls, self.seconds = 0, 0.0

    def __call__(self, context: Sequence[int], k: int) -> list[int]:
        t0 = time.perf_counter()
        draft = list(self.propose(context, k))
        self.calls, self.seconds = self.calls + 1, self.seconds + time.perf_counter() - t0
        return draft


def PromptLookup(max_ngram: int = 4, min_ngram: int = 2) -> Timed:
    """``prompt_lookup`` as a timed drafter."""
    return Timed(lambda context, k: prompt_lookup(context, k, max_ngram, min_ngram))


def truncated_model(model, num_layers: int):
    """The first ``num_layers`` decoder layers of a Llama-family ``model`` with its embedding, final
    norm and LM head: a smaller model of the same vocabulary. It shares the target's tensors (no copy)."""
    layers = model.model.layers
    if not 1 <= num_layers <= len(layers):
        raise ValueError(f"num_layers must be between 1 and {len(layers)} (the model's layers); got {num_layers}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:num_layers]
    with torch.device("meta"):
        draft = type(model)(config)
    draft.model.embed_tokens = model.model.embed_tokens
    draft.model.layers = torch.nn.ModuleList(layers[:num_layers])
    draft.model.norm = model.model.norm
    draft.model.rotary_emb = model.model.rotary_emb
    draft.lm_head = model.lm_head
    left = [name for name, t in [*draft.named_parameters(), *draft.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"truncated_model does not know this architecture: {left[:3]} were not taken over")
    return draft.eval()


def save_model(model, tokenizer, path: str | Path | None = None) -> Path:
    """Write ``model`` (e.g. a truncated draft) and its tokenizer as a Hugging Face directory an engine loads.

    Without ``path``: a new temporary directory, removed when this Python process exits (or earlier with
    ``shutil.rmtree``), so a notebook that stops half-way leaves nothing behind.
    """
    if path is None:
        path = tempfile.mkdtemp(prefix="inferlab-draft-")
        atexit.register(shutil.rmtree, path, True)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class DraftModel:
    """A small model as a drafter: greedy, k forward passes per draft, with a KV cache of its own.

    Between calls it keeps the cache of the longest prefix it shares with the new context (the target
    may have rejected part of its last draft), so each call feeds only the tokens it has not seen.
    """

    def __init__(self, model):
        self.model = model
        self.cache, self.seen = None, []
        self.calls, self.forwards, self.seconds = 0, 0, 0.0

    @torch.inference_mode()
    def __call__(self, context: Sequence[int], k: int) -> list[int]:
        t0 = time.perf_counter()
        context = [int(t) for t in context]
        common = 0
        limit = min(len(self.seen), len(context) - 1)       # feed at least one token
        while common < limit and self.seen[common] == context[common]:
            common += 1
        if self.cache is not None:
            self.cache.crop(common - self.cache.get_seq_length())     # a negative crop removes that many positions
        feed, draft = context[common:] if self.cache is not None else context, []
        device = self.model.device
        for _ in range(k):
            out = self.model(input_ids=torch.tensor([feed], device=device), past_key_values=self.cache, use_cache=True)
            self.cache, self.forwards = out.past_key_values, self.forwards + 1
            draft.append(int(out.logits[0, -1].argmax()))
            feed = draft[-1:]
        self.seen = context + draft[:-1]                    # the last draft token was not fed
        self.calls, self.seconds = self.calls + 1, self.seconds + time.perf_counter() - t0
        return draft
