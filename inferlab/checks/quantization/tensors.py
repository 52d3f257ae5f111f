"""Tensors for lab 03's checks: the learner's value as a CPU tensor, seeded token ids."""
from __future__ import annotations

import torch

from inferlab.checks import as_tensor


def tensor_of(x, what: str) -> torch.Tensor:
    return as_tensor(x, what).detach().cpu()


def seeded_ids(n: int, vocab: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))
