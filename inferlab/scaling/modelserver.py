"""KServe's Python model server with the profile's model, run from KServe's own environment.

KServe 0.21 pins protobuf, psutil and python-dateutil to versions vLLM's cannot share, so it lives
in ``.venv-kserve`` (``make setup-kserve``; ``make setup`` builds it too) and the notebook reaches
it over HTTP only, as SGLang is reached. ``kserve_model.py`` is what that environment runs; this
module starts it as an engine (its own process group, log and TMPDIR, stopped with everything it
started) and speaks its two REST protocols.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KSERVE_VENV = REPO / ".venv-kserve"
SCRIPT = Path(__file__).with_name("kserve_model.py")
HEALTH = "/v2/health/ready"          # the Open Inference Protocol's readiness route


def kserve_python() -> Path:
    """The Python of KServe's environment: $INFERLAB_KSERVE_PYTHON, else .venv-kserve/bin/python."""
    chosen = os.environ.get("INFERLAB_KSERVE_PYTHON")
    return Path(chosen) if chosen else KSERVE_VENV / "bin" / "python"


def kserve_unavailable() -> str | None:
    """Why KServe's model server cannot start here (one sentence), or None."""
    python = kserve_python()
    if not python.exists():
        return f"KServe's environment is missing ({python} does not exist): run `make setup-kserve`"
    return None


def command(model_dir: str | Path, model_name: str, port: int, threads: int = 1) -> list[str]:
    """The command line of a KServe model server for a local Hugging Face model directory."""
    return [str(kserve_python()), str(SCRIPT), "--model-dir", str(model_dir), "--model-name", model_name,
            "--port", str(port), "--threads", str(threads)]


def start(model_dir: str | Path, model_name: str = "model", port: int | None = None, profile=None,
          threads: int = 1, timeout: float | None = None):
    """Start the model server and wait until the model is ready; the caller must stop() the Server
    (or use it in a ``with`` block)."""
    from inferlab import engines
    reason = kserve_unavailable()
    if reason:
        raise engines.EngineStartError(f"cannot start KServe's model server: {reason}")
    port = port or engines.free_port()
    return engines.start_command(command(model_dir, model_name, port, threads), port, model_name, profile=profile,
                                 timeout=timeout, engine="kserve", health_path=HEALTH)


def post(url: str, body: dict, timeout: float = 120) -> tuple[int, dict, float]:
    """POST a JSON body: (HTTP status, the JSON answer, seconds)."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, text = reply.status, reply.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    return status, json.loads(text or b"{}"), time.perf_counter() - start


def v1_body(prompts: list[str], max_tokens: int) -> dict:
    """A v1 predict body: one instance per prompt."""
    return {"instances": [{"prompt": p, "max_tokens": max_tokens} for p in prompts]}


def v2_body(prompts: list[str], max_tokens: int, request_id: str = "") -> dict:
    """An Open Inference Protocol (v2) body: the prompts as one BYTES tensor, max_tokens as INT32."""
    return {"id": request_id, "inputs": [
        {"name": "text_input", "shape": [len(prompts)], "datatype": "BYTES", "data": list(prompts)},
        {"name": "max_tokens", "shape": [1], "datatype": "INT32", "data": [max_tokens]}]}


def predict_v1(server, prompts: list[str], max_tokens: int = 16) -> tuple[int, dict, float]:
    return post(f"{server.url}/v1/models/{server.model_name}:predict", v1_body(prompts, max_tokens))


def infer_v2(server, prompts: list[str], max_tokens: int = 16, request_id: str = "") -> tuple[int, dict, float]:
    return post(f"{server.url}/v2/models/{server.model_name}/infer", v2_body(prompts, max_tokens, request_id))


def v1_texts(answer: dict) -> list[str]:
    return [p["text"] for p in answer["predictions"]]


def v2_texts(answer: dict) -> list[str]:
    return next(o["data"] for o in answer["outputs"] if o["name"] == "text_output")


def listening_addresses(server) -> set[str]:
    """The addresses (IPs) the server's processes listen on for TCP connections."""
    import psutil

    from inferlab.engines.processes import listening_addresses as listening
    try:
        root = psutil.Process(server.pid)
        return listening([root, *root.children(recursive=True)])
    except psutil.Error:
        return set()
