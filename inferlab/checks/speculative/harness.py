"""What the speculative-decoding checks run the learner's code on: a tiny random Llama in float64 (its
greedy choices never hinge on rounding, so one forward over several tokens and several forwards of
one token agree exactly), a proxy that counts the target's forward passes and the tokens fed to them,
and drafters whose guesses the check controls: always right, always wrong, or a seeded mix."""
from __future__ import annotations

import random

import torch

from inferlab.checks import CheckFailed

VOCAB = 61


def tiny_model(seed: int = 9):
    """A 2-layer Llama of vocabulary 61 with weights large enough that greedy text does not loop at once."""
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.35, tie_word_embeddings=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(torch.float64).eval()


class CountingModel:
    """Stands for the target model: calls go to it, and each forward pass and its input tokens are counted."""

    def __init__(self, model):
        self._model, self.forwards, self.fed = model, 0, 0

    def __call__(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.forwards += 1
        self.fed += int(torch.as_tensor(ids).numel()) if ids is not None else 0
        return self._model(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


class Drafter:
    """Proposes from the known greedy continuation of ``prompt``: ``mode`` "right" (its next tokens),
    "wrong" (a token the target never picks there) or "mixed" (seeded: some right, then a wrong one,
    of random length). Refuses a context that does not start with the prompt, and a loop that never
    ends."""

    def __init__(self, prompt, greedy, mode, max_calls, seed=0):
        self.prompt, self.greedy, self.mode, self.max_calls = list(prompt), list(greedy), mode, max_calls
        self.rng, self.calls = random.Random(seed), 0
        self.proposed: dict[int, set[int]] = {}          # context position -> tokens drafted for it

    def __call__(self, context, k):
        self.calls += 1
        if self.calls > self.max_calls:
            raise CheckFailed(f"propose was called {self.calls} times for {len(self.greedy)} tokens: every "
                              "verification step must add at least one token, the target's own")
        context = [int(t) for t in context]
        done = len(context) - len(self.prompt)
        if context[:len(self.prompt)] != self.prompt or done < 0:
            raise CheckFailed("propose(context, k) got a context that is not the prompt followed by the tokens "
                              "generated so far")
        # after a wrong token the guesses no longer matter: the check reports the first wrong token
        ahead = self.greedy[done:done + k] + [0] * max(0, k - len(self.greedy[done:done + k]))
        if self.mode == "right":
            draft = ahead
        elif self.mode == "wrong":
            draft = [(t + 1) % VOCAB for t in ahead]
        else:
            size = self.rng.randint(0, k)
            good = self.rng.randint(0, size)
            draft = ahead[:good] + [(t + 1 + self.rng.randrange(VOCAB - 1)) % VOCAB for t in ahead[good:size]]
        for j, t in enumerate(draft):
            self.proposed.setdefault(len(context) + j, set()).add(t)
        return draft


def plain_greedy(model, prompt, n: int) -> list[int]:
    from inferlab.decoding import generate_tokens
    return list(generate_tokens(model, prompt, n))


def chi2_limit(df: int, z: float = 4.75) -> float:
    """Upper quantile of the chi-square distribution with ``df`` degrees of freedom at about 1e-6
    (Wilson-Hilferty): a correct sampler exceeds it about once in a million checks."""
    a = 2 / (9 * df)
    return df * (1 - a + z * a ** 0.5) ** 3
