"""Fixtures shared by the test modules.

- ``model`` / ``tokenizer``: the embedded model, loaded once per session. They prepare it
  when the cache lacks it (never skip): a test that silently skips could not fail.
- ``solution`` / ``stub``: the exercise functions of the lab named by the test module's
  ``LAB`` (from solutions/ and from the generated labs/), for the checker tests.
"""
import pytest
import torch

import nbcode
from inferlab import models


@pytest.fixture(scope="module")
def solution(request):
    return nbcode.solution(request.module.LAB)


@pytest.fixture(scope="module")
def stub(request):
    return nbcode.stub(request.module.LAB)


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(models.prepare_embedded())


@pytest.fixture(scope="session")
def model():
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(models.prepare_embedded(), dtype=torch.float32).eval()
