"""Greedy speculative decoding: draft k tokens, score them with one forward pass of the target, keep
the longest prefix the target agrees with plus the target's own next token, and roll the KV cache
back to what was kept. The output is greedy decoding's, token for token; only the number of target
forward passes changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from inferlab.decoding import _stop_ids


@dataclass
class SpecRun:
    """What a speculative generation did: the tokens and, per verification step, the draft's length
    and how many of its tokens the target accepted."""
    tokens: list[int]
    drafted: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)

    @property
    def target_forwards(self) -> int:
        return 1 + len(self.accepted)                       # the prefill, then one per verification

    @property
    def tokens_per_forward(self) -> float:
        return len(self.tokens) / self.target_forwards


@torch.inference_mode()
def speculative_greedy(model, propose: Callable[[list[int], int], Sequence[int]], input_ids, max_new_tokens: int,
                       k: int, eos_token_id=None) -> SpecRun:
    """Greedy decoding of ``max_new_tokens`` tokens (fewer if an end-of-sequence token comes), k drafted
    tokens at a time by ``propose(context, k)``."""
    stop = _stop_ids(eos_token_id)
    device = model.device
    context = [int(t) for t in torch.as_tensor(input_ids).reshape(-1)]
    out = model(input_ids=torch.tensor([context], device=device), use_cache=True)      # prefill
    cache, run = out.past_key_values, SpecRun([int(out.logits[0, -1].argmax())])
    while len(run.tokens) < max_new_tokens and run.tokens[-1] not in stop:
        room = max_new_tokens - len(run.tokens) - 1          # the target adds one token of its own
        draft = [int(t) for t in propose(context + run.tokens, k)][:min(k, room)]
        logits = model(input_ids=torch.tensor([run.tokens[-1:] + draft], device=device),
                       past_key_values=cache, use_cache=True).logits[0]
        choice = logits.argmax(dim=-1).tolist()              # the target's token after each fed position
        n = 0
        while n < len(draft) and draft[n] == choice[n]:
            n += 1
        cache.crop(-(len(draft) - n))                        # drop the KV of the rejected draft tokens
        run.drafted.append(len(draft))
        run.accepted.append(n)
        for token in draft[:n] + [choice[n]]:
            run.tokens.append(token)
            if token in stop:
                break
    return run
