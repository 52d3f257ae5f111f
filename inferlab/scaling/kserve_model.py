"""A causal LM behind KServe's Python model server -- run by KServe's own environment, not inferlab's.

``.venv-kserve/bin/python inferlab/scaling/kserve_model.py --model-dir DIR --model-name NAME --port P``

KServe's pins (protobuf, psutil, python-dateutil) conflict with vLLM's, so this file imports only
the standard library, kserve, torch and transformers, and is started by path from that environment
(``inferlab.scaling.modelserver`` does it). It answers both of KServe's REST protocols:

- v1 (TensorFlow Serving's shape): ``POST /v1/models/NAME:predict`` with
  ``{"instances": [{"prompt": str, "max_tokens": int}, ...]}`` (a bare string is a prompt) ->
  ``{"predictions": [{"text": str, "completion_tokens": int}, ...]}``;
- v2 (the Open Inference Protocol): ``POST /v2/models/NAME/infer`` with a BYTES input ``text_input``
  (shape [n]) and an optional INT32 input ``max_tokens`` (shape [1]) -> a BYTES output
  ``text_output`` and an INT32 output ``completion_tokens``.

Decoding is greedy, so both protocols give the same text for the same prompt.
"""
from __future__ import annotations

import argparse
import os
import sys
import types

# Run by path, this file's folder would come first on sys.path, and its neighbour kserve.py (the
# manifests) would shadow the kserve package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import kserve  # noqa: E402
import torch  # noqa: E402
from kserve.errors import InvalidInput  # noqa: E402
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

DEFAULT_MAX_TOKENS = 16


class CausalLM(kserve.Model):
    def __init__(self, name: str, model_dir: str, threads: int):
        super().__init__(name)
        self.model_dir, self.threads = model_dir, threads
        self.model = self.tokenizer = None

    def load(self) -> bool:
        torch.set_num_threads(self.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32).eval()
        self.ready = True
        return self.ready

    def generate(self, prompt: str, max_tokens: int) -> tuple[str, int]:
        ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = self.model.generate(ids, max_new_tokens=max_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.eos_token_id)
        new = out[0, ids.shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True), int(new.numel())

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, InferRequest):
            return self._predict_v2(payload)
        predictions = []
        for instance in payload["instances"]:
            if isinstance(instance, str):
                instance = {"prompt": instance}
            text, tokens = self.generate(instance["prompt"], int(instance.get("max_tokens", DEFAULT_MAX_TOKENS)))
            predictions.append({"text": text, "completion_tokens": tokens})
        return {"predictions": predictions}

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        inputs = {i.name: i for i in request.inputs}
        if "text_input" not in inputs:
            raise InvalidInput("expected a BYTES input named text_input")
        # JSON bodies carry strings; the binary extension of the protocol carries bytes
        prompts = [p.decode("utf-8") if isinstance(p, bytes) else str(p) for p in inputs["text_input"].data]
        max_tokens = int(inputs["max_tokens"].data[0]) if "max_tokens" in inputs else DEFAULT_MAX_TOKENS
        results = [self.generate(prompt, max_tokens) for prompt in prompts]
        outputs = [InferOutput("text_output", [len(results)], "BYTES", [text for text, _ in results]),
                   InferOutput("completion_tokens", [len(results)], "INT32", [tokens for _, tokens in results])]
        return InferResponse(response_id=request.id or "", model_name=self.name, infer_outputs=outputs)


def _loopback_only() -> None:
    """KServe 0.21 hard-codes uvicorn's host as 0.0.0.0; on a laptop the server must not be reachable
    from the network, so uvicorn is handed 127.0.0.1 instead (gRPC, which binds [::], stays off)."""
    import uvicorn
    from kserve.protocol.rest import server as rest

    class LoopbackConfig(uvicorn.Config):
        def __init__(self, app, **kwargs):
            super().__init__(app, **{**kwargs, "host": "127.0.0.1"})

    rest.uvicorn = types.SimpleNamespace(Config=LoopbackConfig, Server=uvicorn.Server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for generation")
    args, _ = parser.parse_known_args()
    _loopback_only()
    model = CausalLM(args.model_name, args.model_dir, args.threads)
    model.load()
    kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1, enable_docs_url=False).start([model])


if __name__ == "__main__":
    main()
