"""Decoding by hand: samplers, a generation loop over the KV cache, streaming (its latency: ``inferlab.metrics``).

Lab 01 builds each of these pieces in the notebook; this module keeps the reference
versions that its checks compare against and that later labs reuse.

Samplers work on logits of shape ``(..., vocab)`` (any batch dimensions in front) and
never modify their input. The sampling pipeline is the one vLLM and transformers use:
temperature, then top-k, then top-p on what top-k kept, then a draw from the softmax.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

import torch

from inferlab.metrics import latency_metrics

NEG_INF = float("-inf")


# ----------------------------------------------------------------------------- samplers

def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The highest-scoring token of each row; ties go to the lowest token id."""
    return logits.argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide the logits by ``temperature`` (> 0): below 1 sharpens, above 1 flattens."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0; use greedy() for temperature 0")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest logits of each row, set the others to -inf.

    ``k <= 0`` or ``k >= vocab`` keeps everything. Tokens tied with the k-th largest
    logit are kept too (as transformers and vLLM do).
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits.clone()
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability sums to >= p.

    The token that carries the running sum across ``p`` is kept; at least one token is
    always kept; ``p >= 1`` keeps everything.
    """
    if p >= 1.0:
        return logits.clone()
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.float().softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs          # probability of the strictly better tokens
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row: temperature -> top-k -> top-p -> softmax -> multinomial.

    ``temperature == 0`` means greedy. Returns token ids of shape ``logits.shape[:-1]``.
    """
    if temperature == 0:
        return greedy(logits)
    z = apply_temperature(logits.float(), temperature)
    z = top_p_filter(top_k_filter(z, top_k), top_p)
    probs = z.softmax(dim=-1).reshape(-1, z.shape[-1])
    ids = torch.multinomial(probs, num_samples=1, generator=generator)
    return ids.reshape(logits.shape[:-1])


def sampler(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
            generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A one-argument picker (logits -> token ids) with these settings, for generate_tokens."""
    return lambda logits: sample(logits, temperature, top_k, top_p, generator)


# ----------------------------------------------------------------------------- the loop

def _stop_ids(eos_token_id) -> set[int]:
    if eos_token_id is None:
        return set()
    if isinstance(eos_token_id, int):
        return {eos_token_id}
    return {int(t) for t in eos_token_id}


@torch.inference_mode()
def generate_tokens(model, input_ids, max_new_tokens: int, pick: Callable = greedy,
                    eos_token_id=None) -> Iterator[int]:
    """Prefill the prompt once, then decode one token per step through the KV cache.

    Yields each new token id as soon as it is chosen (so a caller can stream it); stops
    after ``max_new_tokens`` or after yielding an end-of-sequence token.
    """
    stop = _stop_ids(eos_token_id)
    ids = torch.as_tensor(input_ids, device=model.device).reshape(1, -1)
    out = model(input_ids=ids, use_cache=True)                      # prefill: the whole prompt
    for step in range(max_new_tokens):
        next_id = pick(out.logits[:, -1, :]).reshape(1, 1)
        token = int(next_id)
        yield token
        if token in stop or step == max_new_tokens - 1:
            return
        out = model(input_ids=next_id, past_key_values=out.past_key_values, use_cache=True)


# ----------------------------------------------------------------------------- streaming

def stream_text(tokenizer, token_ids: Iterable[int], skip_special_tokens: bool = True) -> Iterator[str]:
    """Turn a stream of token ids into text deltas whose concatenation is the full decode.

    Two offsets bound the work per token (the method of vLLM's detokenizer): the window
    ``ids[prefix:]`` starts one step back so that leading spaces and merges come out right,
    and text is emitted only when it no longer ends in an incomplete UTF-8 character
    (which decodes to U+FFFD). Whatever is still held back is emitted at the end.
    """
    ids: list[int] = []
    prefix = read = 0

    def decode(part):
        return tokenizer.decode(part, skip_special_tokens=skip_special_tokens)

    for token in token_ids:
        ids.append(int(token))
        seen = decode(ids[prefix:read])
        text = decode(ids[prefix:])
        if len(text) > len(seen) and not text.endswith("\ufffd"):
            yield text[len(seen):]
            prefix, read = read, len(ids)
    seen, text = decode(ids[prefix:read]), decode(ids[prefix:])
    if len(text) > len(seen):
        yield text[len(seen):]


class Stream:
    """A streamed generation: iterate it for text deltas; it records when each token came.

    After iteration: ``token_ids``, ``timestamps`` (``time.perf_counter()`` when each token
    id was known), ``t_start`` and ``text``. Give ``t_start`` to include work done before
    (tokenization, queueing) in the time to first token.
    """

    def __init__(self, model, tokenizer, input_ids, max_new_tokens: int, pick: Callable = greedy,
                 eos_token_id=None, t_start: float | None = None):
        self.model, self.tokenizer, self.input_ids = model, tokenizer, input_ids
        self.max_new_tokens, self.pick, self.eos_token_id = max_new_tokens, pick, eos_token_id
        self.t_start = t_start
        self.token_ids: list[int] = []
        self.timestamps: list[float] = []
        self.text = ""

    def _timed(self):
        for token in generate_tokens(self.model, self.input_ids, self.max_new_tokens, self.pick, self.eos_token_id):
            self.timestamps.append(time.perf_counter())
            self.token_ids.append(token)
            yield token

    def __iter__(self) -> Iterator[str]:
        if self.t_start is None:
            self.t_start = time.perf_counter()
        for delta in stream_text(self.tokenizer, self._timed()):
            self.text += delta
            yield delta

    def metrics(self) -> dict:
        return latency_metrics(self.timestamps, self.t_start)


def stream_generate(model, tokenizer, input_ids, max_new_tokens: int, pick: Callable = greedy,
                    eos_token_id=None, t_start: float | None = None) -> Stream:
    """Start a streamed generation; see ``Stream``."""
    return Stream(model, tokenizer, input_ids, max_new_tokens, pick, eos_token_id, t_start)
