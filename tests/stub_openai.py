"""A scripted OpenAI-compatible streaming server for load-generator tests (no model behind it).

Real servers are exercised by the lab notebook (nbval) against vLLM; this one exists to produce
timelines and failures on purpose: every ``fail_every``-th request answers HTTP 500, a prompt
containing "SILENT" streams only empty chunks, one containing "NOUSAGE" sends no usage chunk.
Each stream opens with an empty chunk (like a chat role chunk), waits ``first_delay`` seconds,
then sends one token per ``gap`` seconds.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubServer:
    def __init__(self, first_delay=0.05, gap=0.01, fail_every=0):
        self.first_delay, self.gap, self.fail_every = first_delay, gap, fail_every
        self.count = 0
        self.lock = threading.Lock()
        self.seen: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.count += 1
                    number = stub.count
                    stub.seen.append(body)
                if stub.fail_every and number % stub.fail_every == 0:
                    payload = json.dumps({"error": {"message": "scripted failure", "code": 500}}).encode()
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                chat = self.path.endswith("/chat/completions")
                prompt = json.dumps(body.get("messages")) if chat else body.get("prompt", "")
                n = body.get("max_completion_tokens") or body.get("max_tokens") or 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.event(stub.chunk(chat, ""))                       # empty first chunk
                time.sleep(stub.first_delay)
                for i in range(n):
                    if i:
                        time.sleep(stub.gap)
                    self.event(stub.chunk(chat, "" if "SILENT" in prompt else f" t{i}"))
                if "NOUSAGE" not in prompt:
                    self.event({"id": "s", "object": "x", "created": 0, "model": body["model"], "choices": [],
                                "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def event(self, obj):
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def chunk(chat: bool, text: str) -> dict:
        if chat:
            return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]}
        return {"id": "c", "object": "text_completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}]}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
