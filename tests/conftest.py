"""Fixtures shared by the test modules.

- ``model`` / ``tokenizer``: the embedded model, loaded once per session. They prepare it
  when the cache lacks it (never skip): a test that silently skips could not fail.
"""
import pytest
import torch

from inferlab import models


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(models.prepare_embedded())


@pytest.fixture(scope="session")
def model():
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(models.prepare_embedded(), dtype=torch.float32).eval()
