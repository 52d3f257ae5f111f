"""Starting an engine: the command line from engine arguments, the environment and defaults the profile
and the host choose, start() and the serve() context manager."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from inferlab.engines.endpoints import HOST, free_port, port_is_free
from inferlab.engines.errors import EngineStartError, PortInUseError
from inferlab.engines.processes import _die_with_parent
from inferlab.engines.server import Server

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
SGLANG_MODULE = "sglang.launch_server"
ENGINES = ("vllm", "sglang")
# SGLang pins versions vLLM's cannot share: it lives in an environment of its own (make setup-sglang),
# and the notebook kernel reaches it over HTTP only.
SGLANG_VENV = Path(__file__).resolve().parents[2] / ".venv-sglang"
# vLLM boolean options that have no --no-... form: False simply leaves them out.
STORE_TRUE_ONLY = {"disable_log_stats", "headless", "grpc", "aggregate_engine_logging"}
GiB = 2**30


def engine_flags(engine_args: dict) -> list[str]:
    """Keyword arguments -> vLLM command-line flags.

    ``max_model_len=512`` -> ``--max-model-len 512``; ``True`` -> the bare flag; ``False`` ->
    ``--no-<flag>`` (e.g. ``enable_prefix_caching=False`` -> ``--no-enable-prefix-caching``);
    ``None`` -> nothing; a list or tuple -> the flag followed by each item; a dict -> the flag and
    the dict as JSON (``structured_outputs_config={"backend": "xgrammar"}``).
    """
    flags: list[str] = []
    for name, value in engine_args.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if value is True:
            flags.append(flag)
        elif value is False:
            if name not in STORE_TRUE_ONLY:
                flags.append("--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            flags += [flag, *map(str, value)]
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def served_name(model: str) -> str:
    """The name clients use for the model: a local directory's name, never its full path."""
    path = Path(model)
    return path.name if path.is_absolute() else model


def _profile(profile):
    from inferlab import profiles
    if profile is None or isinstance(profile, str):
        return profiles.resolve(profile or "auto")
    return profile


# Variables with which a caller chooses vLLM's process layout or core binding; when one is set,
# inferlab.host's compact layout is not applied.
LAYOUT_VARIABLES = ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU")


def engine_env(on_cpu: bool, kv_cache_gib: float | None, env: dict | None = None,
               workdir: Path | None = None) -> dict:
    """Environment of the engine process.

    workdir becomes its TMPDIR, so every file vLLM puts in the temporary directory (IPC sockets,
    compile caches) goes where stop() removes it. ``env`` (the caller's, plus the layout that
    _defaults chose) is applied last.
    """
    out = dict(os.environ)
    out.update(PYTHONUNBUFFERED="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", NO_COLOR="1")
    if workdir is not None:
        out["TMPDIR"] = str(workdir)
    if on_cpu:
        out.update(CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        if kv_cache_gib is not None:
            # vllm-cpu reads VLLM_CPU_KVCACHE_SPACE as whole GiB and lets it override
            # --kv-cache-memory-bytes; we pass exact bytes, so the variable must not interfere.
            out.pop("VLLM_CPU_KVCACHE_SPACE", None)
    out.update(env or {})
    return out


def _defaults(on_cpu: bool, kv_cache_gib: float | None, engine_args: dict,
              env: dict | None = None) -> tuple[float | None, dict, dict]:
    """The profile's defaults: (kv_cache_gib, engine arguments, environment).

    On CPU: an explicit KV-cache size (1 GiB), no torch.compile, the dtype inferlab.host chooses for
    this CPU (``dtype=None`` also means that choice) and, on few cores, its compact process layout,
    unless the caller chose a layout (LAYOUT_VARIABLES in the environment, an executor) or runs
    tensor or pipeline parallelism, which the in-process executor cannot; then each worker's threads
    are bound to cores of their own (``host.worker_cpu_binding``).
    """
    args, env = dict(engine_args), dict(env or {})
    if on_cpu:
        from inferlab import host
        settings = host.engine_settings(host.detect())
        kv_cache_gib = 1.0 if kv_cache_gib is None else kv_cache_gib
        args.setdefault("enforce_eager", True)     # torch.compile would add minutes to every start
        if args.get("dtype") is None:
            args["dtype"] = settings.dtype
        chosen = any(name in os.environ or name in env for name in LAYOUT_VARIABLES)
        parallel = any((args.get(k) or 1) > 1 for k in ("tensor_parallel_size", "pipeline_parallel_size"))
        if settings.compact and not chosen and not parallel and "distributed_executor_backend" not in args:
            args.update(settings.args())
            env = {**settings.env(), **env}
        elif parallel and not chosen:
            # vllm-cpu binds each worker's threads to a NUMA node of its own and refuses to start with
            # more workers than nodes ("Not enough allowed NUMA nodes"): give each worker its own cores
            workers = (args.get("tensor_parallel_size") or 1) * (args.get("pipeline_parallel_size") or 1)
            env = {"VLLM_CPU_OMP_THREADS_BIND": host.worker_cpu_binding(workers), **env}
    if kv_cache_gib is not None:
        args.setdefault("kv_cache_memory_bytes", round(kv_cache_gib * GiB))
    return kv_cache_gib, args, env


def sglang_python() -> Path:
    """The Python of SGLang's own environment: $INFERLAB_SGLANG_PYTHON, else .venv-sglang/bin/python."""
    chosen = os.environ.get("INFERLAB_SGLANG_PYTHON")
    return Path(chosen) if chosen else SGLANG_VENV / "bin" / "python"


def sglang_unavailable(profile=None) -> str | None:
    """Why SGLang cannot run here (one sentence), or None when it can be started.

    profile: a Profile, "cpu"/"gpu", or None/"auto" (the GPU tier when CUDA is visible; the model is
    not resolved, so asking never converts or downloads one).
    """
    from inferlab import profiles
    if profile is None or isinstance(profile, str):
        on_gpu = profiles.cuda_available() if profile in (None, "auto") else profile == "gpu"
    else:
        on_gpu = profile.is_gpu
    if not on_gpu:
        return ("SGLang runs on the GPU tier only: its CPU backend needs AVX-512 (it targets Xeons with AMX), "
                "is built from source or Docker and is not on PyPI, and this is the CPU profile")
    python = sglang_python()
    if not python.is_file():
        return (f"SGLang's environment is missing ({python} does not exist): run `make setup-sglang` on this "
                "CUDA machine, or set INFERLAB_SGLANG_PYTHON to a Python that has SGLang")
    return None


def sglang_command(python, model: str, name: str, port: int, engine_args: dict) -> list[str]:
    """SGLang's server command line. Keywords are SGLang's own options (``context_length=1024`` ->
    ``--context-length 1024``, ``mem_fraction_static=0.5``, ``grammar_backend="xgrammar"``)."""
    return [str(python), "-m", SGLANG_MODULE, "--model-path", str(model), "--served-model-name", name,
            "--host", HOST, "--port", str(port), *engine_flags(engine_args)]


def vllm_command(model: str, name: str, port: int, engine_args: dict) -> list[str]:
    return [sys.executable, "-m", VLLM_MODULE, "--model", str(model), "--served-model-name", name,
            "--host", HOST, "--port", str(port), *engine_flags(engine_args)]


def check_parallel_layout(model: str, engine_args: dict) -> None:
    """Refuse a tensor/pipeline parallel size the model cannot take, in one line, before anything starts
    (reads the config.json of a local model directory; for a hub id the engine's own check remains)."""
    tp, pp = (engine_args.get(k) or 1 for k in ("tensor_parallel_size", "pipeline_parallel_size"))
    if (tp, pp) == (1, 1):
        return
    from inferlab.memory.shapes import load_config
    from inferlab.parallel.layout import validate_model_layout, validate_sizes
    validate_sizes(tp, pp)
    if (Path(str(model)) / "config.json").is_file():
        validate_model_layout(SimpleNamespace(**load_config(str(model))), tp, pp)


def start(engine: str = "vllm", model: str | None = None, profile=None, port: int | None = None,
          timeout: float | None = None, kv_cache_gib: float | None = None, env: dict | None = None,
          served_model_name: str | None = None, extra_args: list[str] | None = None, **engine_args) -> Server:
    """Start an engine and wait until it is healthy; the caller must stop() it (serve() does).

    engine: "vllm", or "sglang" (GPU tier, its own environment; see sglang_unavailable). Keywords
    other than these parameters are the engine's own options (engine_flags).
    """
    server, limit, since = _spawn(engine, model, profile, port, timeout, kv_cache_gib, env, served_model_name,
                                  extra_args, **engine_args)
    return _healthy(server, limit, since)


def _spawn(engine, model, profile, port, timeout, kv_cache_gib, env, served_model_name, extra_args,
           **engine_args) -> tuple[Server, float, float]:
    """Launch the engine process (from the calling thread: its death signal is tied to that thread)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    p = _profile(profile)
    model = model or p.model
    on_cpu = not p.is_gpu
    check_parallel_layout(model, engine_args)
    if engine == "sglang":
        reason = sglang_unavailable(p)
        if reason:
            raise EngineStartError(f"cannot start SGLang: {reason}")
        if kv_cache_gib is not None:
            raise ValueError("SGLang sizes its KV cache from mem_fraction_static (a share of GPU memory); "
                             "pass mem_fraction_static=... instead of kv_cache_gib")
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise PortInUseError(f"port {port} on {HOST} is already in use; choose another or leave port=None")
    name = served_model_name or served_name(model)
    if engine == "vllm":
        kv_cache_gib, engine_args, env = _defaults(on_cpu, kv_cache_gib, engine_args, env)
        engine_args.setdefault("disable_uvicorn_access_log", True)   # no line per /metrics scrape
        command = vllm_command(model, name, port, engine_args)
    else:
        command = sglang_command(sglang_python(), model, name, port, engine_args)
    command += list(extra_args or [])
    return _launch(engine, str(model), name, port, command, on_cpu, kv_cache_gib, env, timeout)


def _launch(engine, model, name, port, command, on_cpu, kv_cache_gib, env, timeout) -> tuple[Server, float, float]:
    workdir = Path(tempfile.mkdtemp(prefix=f"inferlab-{engine}-{port}-"))
    since = time.perf_counter()
    try:
        with open(workdir / "engine.log", "wb") as log:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=engine_env(on_cpu, kv_cache_gib, env, workdir), preexec_fn=_die_with_parent)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    limit = timeout if timeout is not None else (300 if on_cpu else 1200)
    return Server(engine, model, name, port, proc, workdir, command), limit, since


def start_command(command: list[str], port: int, model_name: str, profile=None, env: dict | None = None,
                  timeout: float | None = None, engine: str = "vllm", health_path: str = "/health") -> Server:
    """Run a ready-made server command (a container's entry point, say) as an engine: its own process
    group and TMPDIR, the profile's environment plus ``env``, and wait until it answers on ``port``.
    The command must serve 127.0.0.1:port with ``GET health_path`` and ``GET /v1/models`` (vLLM's
    routes by default; KServe's model server answers health at /v2/health/ready); the caller must
    stop() the Server. ``engine`` names it in messages."""
    return _healthy(*_spawn_command(command, port, model_name, profile, env, timeout, engine, health_path))


def _spawn_command(command, port, model_name, profile, env, timeout, engine="vllm",
                   health_path="/health") -> tuple[Server, float, float]:
    if not port_is_free(port):
        raise PortInUseError(f"port {port} on {HOST} is already in use; choose another")
    on_cpu = not _profile(profile).is_gpu
    server, limit, since = _launch(engine, model_name, model_name, port, [str(c) for c in command], on_cpu, None,
                                   env, timeout)
    server.health_path = health_path
    return server, limit, since


def _healthy(server: Server, limit: float, since: float) -> Server:
    try:
        server.startup_seconds = server.wait_healthy(limit, since)
    except BaseException:                 # EngineStartError, but also Ctrl-C while waiting
        server.stop()
        raise
    return server


def start_all(configs: dict[str, dict], profile=None, keep_going: bool = False) -> dict[str, Server]:
    """Start several engines at once and return them by name when all are healthy.

    configs: name -> start()'s keywords (``{"plain": {}, "ngram": {"speculative_config": {...}}}``), or
    a ready-made command as start_command() takes it (``{"command": [...], "port": p, "served_model_name": n}``,
    optionally ``engine`` and ``health_path``).
    All processes are launched first, then awaited, so their start-ups overlap (much of a start is
    loading and waiting, not computing) and N engines take less than N starts. If one fails, every
    other one is stopped too and its error is raised; with ``keep_going=True`` the others go on and
    the failed one's EngineStartError takes its place in the result.
    """
    keys = ("model", "port", "timeout", "kv_cache_gib", "env", "served_model_name", "extra_args")
    launched: dict[str, tuple] = {}
    failed: dict[str, EngineStartError] = {}
    try:
        for name, config in configs.items():
            config = dict(config)
            if "command" in config:
                launched[name] = _spawn_command(config["command"], config["port"], config["served_model_name"],
                                                profile, config.get("env"), config.get("timeout"),
                                                config.get("engine", "vllm"), config.get("health_path", "/health"))
                continue
            engine = config.pop("engine", "vllm")
            own = {key: config.pop(key, None) for key in keys}
            if own["port"] is None:
                own["port"] = _unused_port({s.port for s, _, _ in launched.values()})
            launched[name] = _spawn(engine, own["model"], profile, own["port"], own["timeout"], own["kv_cache_gib"],
                                    own["env"], own["served_model_name"], own["extra_args"], **config)
        pending = dict(launched)
        while pending:                    # look at each in turn, so each start is timed when it ends
            for name, (server, limit, since) in list(pending.items()):
                try:
                    seconds = server.poll_healthy(limit, since)
                except EngineStartError as exc:
                    if not keep_going:
                        raise
                    failed[name] = exc
                    del pending[name]
                    continue
                if seconds is not None:
                    server.startup_seconds = seconds
                    del pending[name]
            time.sleep(0.5 if pending else 0)
        return {name: failed.get(name, server) for name, (server, _, _) in launched.items()}
    except BaseException:
        for server, _, _ in launched.values():
            server.stop()
        raise


def _unused_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken:
            return port


@contextlib.contextmanager
def serve(engine: str = "vllm", model: str | None = None, profile=None, port: int | None = None,
          timeout: float | None = None, kv_cache_gib: float | None = None, env: dict | None = None,
          **engine_args):
    """``with serve("vllm", max_model_len=512) as server:`` -- a healthy engine, stopped on exit.

    model: a local directory or hub id (default: the profile's model). profile: a Profile or
    its name (default "auto"). port: default a free one. timeout: seconds to become healthy
    (default 300 on CPU, 1200 on GPU). kv_cache_gib: KV-cache size in GiB, fractions allowed
    (default 1 on CPU; on GPU vLLM sizes it from gpu_memory_utilization unless given).
    env: extra environment variables. Every other keyword becomes a vLLM flag (engine_flags);
    extra_args=[...] appends raw flags.
    """
    server = start(engine, model, profile, port, timeout, kv_cache_gib, env, **engine_args)
    try:
        yield server
    finally:
        server.stop()
