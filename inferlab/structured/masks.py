"""Masks over the vocabulary: xgrammar's (the tool vLLM and SGLang use), a model's next-token logits,
and a step-by-step comparison of two masks on the same token path.

xgrammar packs a mask into a token bitmask: one int32 word per 32 token ids. Which ids a bitmask
allows is read here only through xgrammar's own ``apply_token_bitmask_inplace`` (the allowed ids keep
their logits, the others become -inf), so a learner's own reading of the bits can be compared with it.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable


def xgrammar():
    import xgrammar as xgr
    return xgr


def tokenizer_info(tokenizer, vocab_size: int):
    """xgrammar's view of the vocabulary (decoded tokens, stop tokens); vocab_size = the model's logits width."""
    return xgrammar().TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)


def choice_grammar(choices: Iterable[str]) -> str:
    """An EBNF grammar (xgrammar's dialect, GBNF) that accepts exactly one of the strings."""
    import json
    return "root ::= " + " | ".join(json.dumps(c) for c in choices)   # JSON string escapes are GBNF's too


def allowed_by_xgrammar(bitmask_row, vocab_size: int) -> set[int]:
    """The ids a bitmask row allows, as xgrammar itself applies it to logits."""
    import torch
    logits = torch.zeros(1, vocab_size)
    xgrammar().apply_token_bitmask_inplace(logits, bitmask_row.reshape(1, -1))
    return set(torch.isfinite(logits[0]).nonzero().flatten().tolist())


class GrammarMask:
    """``allowed(generated)`` for greedy decoding, driven by an xgrammar matcher.

    Each call accepts the tokens generated since the last call into the matcher, fills its bitmask and
    reads it with ``read_bitmask(row, vocab_size)`` (xgrammar's own reading by default). ``steps`` keeps
    every bitmask it filled, so another reading can be compared with xgrammar's afterwards.
    """

    def __init__(self, compiled, vocab_size: int, read_bitmask: Callable | None = None):
        xgr = xgrammar()
        self.matcher = xgr.GrammarMatcher(compiled)
        self.vocab_size = vocab_size
        self.read = read_bitmask or allowed_by_xgrammar
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.accepted: list[int] = []
        self.steps: list = []           # (tokens accepted so far, bitmask row copy)
        self.mask_seconds = 0.0         # time spent computing masks

    def __call__(self, generated: list[int]) -> set[int]:
        if list(generated[:len(self.accepted)]) != self.accepted:
            raise ValueError("GrammarMask follows one generation: build a new one for a new prompt")
        for token_id in generated[len(self.accepted):]:
            if not self.matcher.accept_token(token_id):
                raise ValueError(f"the grammar does not accept token {token_id} after {len(self.accepted)} tokens")
            self.accepted.append(token_id)
        start = time.perf_counter()
        self.matcher.fill_next_token_bitmask(self.bitmask)
        self.mask_seconds += time.perf_counter() - start
        self.steps.append((list(self.accepted), self.bitmask[0].clone()))
        return set(self.read(self.bitmask[0], self.vocab_size))


def xgrammar_masks_along(compiled, path: list[int], vocab_size: int) -> list[set[int]]:
    """xgrammar's allowed set before each token of ``path`` (len(path) sets); the path must be accepted."""
    mask = GrammarMask(compiled, vocab_size)
    return [mask(path[:step]) for step in range(len(path))]


def agreement(path: list[int], texts: list[str | None], theirs: list[set[int]], mine: list[set[int]],
              names=("xgrammar", "yours")):
    """A DataFrame, one row per step: the token taken, both allowed-set sizes, and whether they agree."""
    import pandas as pd
    rows = []
    for step, (token_id, a, b) in enumerate(zip(path, theirs, mine)):
        rows.append({"step": step, "next token": repr(texts[token_id]) if texts[token_id] is not None
                     else f"<special {token_id}>", f"allowed ({names[0]})": len(a), f"allowed ({names[1]})": len(b),
                     "same set": set(a) == set(b),
                     f"only {names[0]}": len(set(a) - set(b)), f"only {names[1]}": len(set(b) - set(a))})
    return pd.DataFrame(rows)


class NextTokenLogits:
    """``logits(generated)`` -> the model's next-token logits after prompt + generated (1-D, float32).

    Keeps the KV cache between calls, so each call runs only the tokens added since the last one.
    It follows one generation: a call whose ``generated`` does not extend the previous one recomputes.
    """

    def __init__(self, model, prompt_ids: list[int]):
        self.model, self.prompt = model, list(prompt_ids)
        self._fed: list[int] = []
        self._past = None
        self._last = None

    def __call__(self, generated: list[int]):
        import torch
        ids = self.prompt + list(generated)
        if ids == self._fed and self._last is not None:
            return self._last.clone()
        if self._past is None or len(ids) < len(self._fed) or ids[:len(self._fed)] != self._fed:
            self._fed, self._past = [], None
        new = ids[len(self._fed):]
        with torch.inference_mode():
            out = self.model(torch.tensor([new]), past_key_values=self._past, use_cache=True)
        self._past, self._fed = out.past_key_values, ids
        self._last = out.logits[0, -1].float()
        return self._last.clone()
