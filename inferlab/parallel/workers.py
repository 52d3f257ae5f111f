"""Run a function on N processes joined by torch.distributed, as a notebook cell can.

    results = parallel.run_workers(my_rank_fn, 3, weights)     # my_rank_fn(rank, world_size, weights)

Each rank is a fresh Python (``python -m inferlab.parallel.worker``) in a process group of its
own, with the parent-death signal set, joined to the others through a TCP store on 127.0.0.1
(gloo on CPU; ``backend="nccl"`` on GPUs). The function and its arguments travel by value with
cloudpickle, so functions defined in a notebook work. What each rank returns comes back in rank
order. If a rank fails, the others are killed at once and WorkerError carries the failed rank's
last log lines; nothing is left running and the temporary directory is removed either way.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inferlab.engines.endpoints import free_port
from inferlab.engines.processes import _die_with_parent, kill_group


class WorkerError(RuntimeError):
    """A rank failed or the ranks did not finish in time; the message holds its log's tail."""


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _failure(workdir: Path, rank: int, world_size: int, code) -> WorkerError:
    tail = _tail(workdir / f"rank{rank}.log")
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "no output")
    return WorkerError(f"rank {rank} of {world_size} failed (exit {code}): {last}\n{tail}")


def _dumps(cloudpickle, fn, args) -> bytes:
    """Pickle fn by value unless it lives in inferlab: a fresh Python cannot import a notebook's or a
    test file's functions by name."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    by_value = module is not None and module.__name__ != "__main__" and not module.__name__.startswith("inferlab")
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps((fn, args))
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


def run_workers(fn, world_size: int, *args, backend: str = "gloo", timeout: float = 300.0,
                threads: int | None = None) -> list:
    """fn(rank, world_size, *args) on world_size processes; their return values in rank order.

    threads: torch threads per rank (default: this machine's cores shared out, at least 1). When the
    port chosen for the group's store is taken between choosing and binding it, a new one is tried.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    for attempt in range(3):
        try:
            return _run_once(fn, world_size, args, backend, timeout, threads)
        except WorkerError as exc:
            if attempt == 2 or "EADDRINUSE" not in str(exc):
                raise
    raise AssertionError("unreachable")


def _run_once(fn, world_size: int, args: tuple, backend: str, timeout: float, threads: int | None) -> list:
    import cloudpickle
    workdir = Path(tempfile.mkdtemp(prefix="inferlab-parallel-"))
    procs: list[subprocess.Popen] = []
    try:
        (workdir / "payload.pkl").write_bytes(_dumps(cloudpickle, fn, args))
        threads = threads or max(1, (os.cpu_count() or 1) // world_size)
        base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
                "WORLD_SIZE": str(world_size), "INFERLAB_BACKEND": backend, "OMP_NUM_THREADS": str(threads),
                "INFERLAB_THREADS": str(threads), "TMPDIR": str(workdir)}
        for rank in range(world_size):
            with open(workdir / f"rank{rank}.log", "wb") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "inferlab.parallel.worker", str(workdir)],
                                              env={**base, "RANK": str(rank)}, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            failed = [rank for rank, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                raise _failure(workdir, failed[0], world_size, procs[failed[0]].returncode)
            if time.monotonic() > deadline:
                raise WorkerError(f"the {world_size} ranks did not finish within {timeout:.0f} s; rank 0's log "
                                  f"ends:\n{_tail(workdir / 'rank0.log')}")
            time.sleep(0.05)
        failed = [rank for rank, p in enumerate(procs) if p.returncode != 0]
        if failed:
            raise _failure(workdir, failed[0], world_size, procs[failed[0]].returncode)
        return [cloudpickle.loads((workdir / f"result{rank}.pkl").read_bytes()) for rank in range(world_size)]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p, grace=2.0)
        shutil.rmtree(workdir, ignore_errors=True)
