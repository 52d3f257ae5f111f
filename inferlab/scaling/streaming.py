"""OpenAI's streamed /v1/completions, served from a transformers model: the generation runs in a worker
thread (the event loop keeps serving other requests) and each text delta becomes one SSE event."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def completion_events(model, tokenizer, model_name: str, body: dict):
    """SSE events for a completions request: one per text delta, then usage, then [DONE].

    Reads prompt (text), max_tokens (default 16) and ignore_eos; decoding is greedy.
    """
    from inferlab.decoding import generate_tokens, stream_text
    prompt_ids = tokenizer(body["prompt"]).input_ids
    max_tokens = int(body.get("max_tokens") or 16)
    eos = None if body.get("ignore_eos") else tokenizer.eos_token_id
    loop, queue, done = asyncio.get_running_loop(), asyncio.Queue(), object()
    counted = []

    def work():
        try:
            tokens = generate_tokens(model, prompt_ids, max_tokens, eos_token_id=eos)
            for delta in stream_text(tokenizer, (counted.append(t) or t for t in tokens)):
                loop.call_soon_threadsafe(queue.put_nowait, delta)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, done)

    threading.Thread(target=work, daemon=True, name="completion").start()
    head = {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
            "model": model_name}
    while (delta := await queue.get()) is not done:
        yield _event({**head, "choices": [{"index": 0, "text": delta, "finish_reason": None}]})
    finish = "length" if len(counted) >= max_tokens else "stop"
    yield _event({**head, "choices": [{"index": 0, "text": "", "finish_reason": finish}]})
    yield _event({**head, "choices": [], "usage": {"prompt_tokens": len(prompt_ids), "completion_tokens": len(counted),
                                                  "total_tokens": len(prompt_ids) + len(counted)}})
    yield "data: [DONE]\n\n"
