"""Constrained requests to an OpenAI-compatible engine: one spelling of a constraint, each engine's fields.

A constraint is a one-key dict: ``{"json": schema}``, ``{"regex": pattern}``, ``{"choice": [...]}``,
``{"grammar": ebnf}``, or None (unconstrained). vLLM takes a JSON schema through the OpenAI
``response_format`` and the rest through its ``structured_outputs`` request field; SGLang takes the
schema the same way, ``regex`` and ``ebnf`` as top-level request fields, and has no ``choice`` field
in its OpenAI API, so a choice goes to it as a regex of alternatives.
"""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

KINDS = ("json", "regex", "choice", "grammar")


def request_params(engine: str, constraint: dict | None) -> dict:
    """Keyword arguments for ``client.chat.completions.create`` that impose ``constraint`` on ``engine``."""
    if not constraint:
        return {}
    if len(constraint) != 1 or next(iter(constraint)) not in KINDS:
        raise ValueError(f"a constraint is one of {KINDS} as a one-key dict, e.g. {{'regex': '[0-9]+'}}; "
                         f"got {constraint!r}")
    (kind, value), = constraint.items()
    if kind == "json":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": value}}}
    if engine == "vllm":
        return {"extra_body": {"structured_outputs": {kind: value}}}
    if engine == "sglang":
        if kind == "choice":
            return {"extra_body": {"regex": "(" + "|".join(re.escape(c) for c in value) + ")"}}
        return {"extra_body": {"regex" if kind == "regex" else "ebnf": value}}
    raise ValueError(f"unknown engine {engine!r}: use 'vllm' or 'sglang'")


def ask(server, conversations: list[list[dict]], constraint: dict | None = None, max_tokens: int = 96,
        concurrency: int = 8, progress: str = "") -> list[dict]:
    """Send every conversation (greedy, temperature 0) and return one row per reply, in order.
    A row: text, finish_reason ("stop", or "length" when max_tokens cut it), completion_tokens,
    seconds, and error (the engine's message when it refused the request, else "").
    """
    from tqdm.auto import tqdm
    params = request_params(server.engine, constraint)

    def one(messages):
        start = time.perf_counter()
        try:
            reply = server.client.chat.completions.create(model=server.model_name, messages=messages,
                                                          max_tokens=max_tokens, temperature=0, **params)
        except Exception as exc:  # a refusal (HTTP 400) is a result here, not a crash
            return {"text": "", "finish_reason": None, "completion_tokens": 0,
                    "seconds": time.perf_counter() - start, "error": _first_line(exc)}
        choice = reply.choices[0]
        return {"text": choice.message.content or "", "finish_reason": choice.finish_reason,
                "completion_tokens": reply.usage.completion_tokens, "seconds": time.perf_counter() - start,
                "error": ""}

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(one, messages) for messages in conversations]
        return [f.result() for f in tqdm(futures, desc=progress or "requests", disable=not progress)]


def _first_line(exc: Exception) -> str:
    """The engine's own message of a refused request, on one line."""
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    text = message or str(exc)
    return f"{type(exc).__name__}: {text}".splitlines()[0][:300]


def bench_body(engine: str, constraint: dict | None) -> dict:
    """The same constraint as the extra JSON body ``bench.run(extra_body=...)`` sends with each request."""
    params = request_params(engine, constraint)
    body = dict(params.get("extra_body", {}))
    if "response_format" in params:
        body["response_format"] = params["response_format"]
    return body


def renamed(schema: dict, tag: str) -> dict:
    """The same schema under another title: accepts the same documents, but is new to a grammar cache."""
    return {**schema, "title": f"{schema.get('title', 'schema')} {tag}"}
