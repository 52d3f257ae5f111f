"""Fixtures shared by the test modules: the embedded model, loaded once per session.

They prepare the model when the cache lacks it (never skip): a test that silently skips
when the model is missing could not fail.
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
