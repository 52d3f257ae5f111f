"""Measuring a model that a running vLLM server holds: perplexity from its prompt logprobs, generated
tokens per second under concurrent requests, and the weight memory its log reports. Lab 03's GPU
tier compares published AWQ/GPTQ checkpoints with these; ``quant.perplexity`` scores the same windows
on a local model.
"""
from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import torch


def _post_json(url: str, payload: dict, timeout: float = 600) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def prompt_nll(server, ids: list[int]) -> list[float]:
    """Negative log-likelihood of each prompt token after the first, as a vLLM server computes
    it (``prompt_logprobs``, a vLLM extension of the completions API)."""
    reply = _post_json(f"{server.base_url}/completions",
                       {"model": server.model_name, "prompt": ids, "max_tokens": 1, "temperature": 0,
                        "prompt_logprobs": 0})
    rows = reply["choices"][0]["prompt_logprobs"]
    return [-row[str(token)]["logprob"] for token, row in zip(ids[1:], rows[1:])]


def perplexity(server, token_ids, window: int, stride: int) -> float:
    """``quant.perplexity``'s windows and scoring, computed by a running vLLM server."""
    ids = [int(t) for t in torch.as_tensor(token_ids).reshape(-1)]
    n, nll, scored, prev_end = len(ids), 0.0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        first = max(prev_end, begin + 1)
        per_token = prompt_nll(server, ids[begin:end])   # per_token[i] scores ids[begin + 1 + i]
        nll += sum(per_token[first - begin - 1:end - begin - 1])
        scored += end - first
        prev_end = end
        if end == n:
            break
    return math.exp(nll / scored)


def throughput(server, token_ids, requests: int = 32, prompt_tokens: int = 128,
                      new_tokens: int = 128) -> float:
    """Generated tokens per second of a vLLM server under ``requests`` concurrent requests
    (prompts cut from ``token_ids``, greedy, ``ignore_eos`` so each makes ``new_tokens``)."""
    ids = [int(t) for t in torch.as_tensor(token_ids).reshape(-1)]
    prompts = [ids[(i * 37) % max(1, len(ids) - prompt_tokens):][:prompt_tokens] for i in range(requests)]

    def one(prompt):
        reply = _post_json(f"{server.base_url}/completions",
                           {"model": server.model_name, "prompt": prompt, "max_tokens": new_tokens,
                            "temperature": 0, "ignore_eos": True})
        return reply["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=requests) as pool:
        generated = sum(pool.map(one, prompts))
    return generated / (time.perf_counter() - start)


def weight_gib(server) -> float | None:
    """The weight memory vLLM reports in its log ("Model loading took X GiB"), or None."""
    found = re.findall(r"Model loading took ([\d.]+) GiB", server.log_text())
    return float(found[-1]) if found else None
