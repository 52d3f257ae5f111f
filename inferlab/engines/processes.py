"""Engine processes: a parent-death signal, killing a process group, finding engines left running,
and the CPUs a client should use beside a local engine."""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

# What an engine process looks like in `ps`: Python running a server module, or a worker that
# renamed itself (vLLM's "VLLM::EngineCore", "VLLM::Worker"; SGLang's "sglang::scheduler"); and
# inferlab's own distributed workers (lab 08), so that the leak checks count them too.
ENGINE_MODULES = ("vllm.entrypoints", "sglang.launch_server", "inferlab.parallel.worker")
ENGINE_TITLES = ("VLLM::", "sglang::")


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
    alive = _wait_gone(family, timeout=max(1.0, grace / 4))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for p in alive + _group_members(pgid):
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    _wait_gone(alive, timeout=5)


def _wait_gone(procs: list, timeout: float) -> list:
    """Wait until every process has exited; return those still running after ``timeout`` seconds.

    A zombie has exited. When its parent died first, it is re-parented and reaped by someone else
    (init, or a subreaper such as ``inferlab.execution``'s runner, which reaps only when it ends), so
    waiting for it to vanish would wait for nothing (psutil.wait_procs does).
    """
    import time

    import psutil

    def running(p) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout
    left = [p for p in procs if running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if running(p)]
    return left


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
    """Processes on this machine that look like inference engines (server or worker), zombies aside."""
    import psutil
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:   # exited, waiting to be reaped: holds nothing
                continue
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


def listening_addresses(procs) -> set[str]:
    """The addresses (IPs) on which any of these psutil processes listens for TCP connections."""
    import psutil
    found = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            found |= {c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    return found
