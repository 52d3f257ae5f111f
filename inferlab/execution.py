"""Executing notebooks: one at a time under a wall-clock limit, or every solution of the course.

``execute`` runs a notebook with papermill in a child process. However the run ends (finished,
raised, hung past its limit), no process it started outlives it: the child is a *subreaper*, so
even a process that detached itself (a new session, a double fork) stays its descendant and is
stopped with it, and every process still carrying the run's mark in its environment is stopped
too. Killing a process group would not be enough: the Jupyter kernel runs in its own session. ``run_solutions`` is what ``make run`` and ``make reference`` do.
Grading (``inferlab.grading``) and the CLI build on it; transforming and linting notebooks is
``inferlab.authoring``'s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat


RUN_MARK = "INFERLAB_RUN_MARK"      # in the environment of every process a run starts
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Execution:
    status: str            # "ok", "error" (a cell raised), "timeout", "crash" (kernel or papermill died)
    seconds: float
    message: str = ""      # one line: the error, or why it stopped
    peak_memory_bytes: int = 0   # the most memory the run's processes held at once (PSS, sampled every second)


class TreeMemory:
    """The peak memory of a process and all its descendants (the kernel, engines, Ray), sampled in a thread.

    Each sample sums the processes' proportional set size (PSS: a page shared by n processes counts
    1/n in each), so libraries mapped by many processes are not counted many times over, as RSS would."""

    def __init__(self, pid: int, interval: float = 1.0):
        import threading
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> int:
        import psutil
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                info = proc.memory_full_info()
                total += getattr(info, "pss", info.rss)
            except psutil.Error:        # gone between the listing and the read, or not ours to read
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)


def execute(src: Path, dest: Path, *, cwd: Path, parameters: dict | None = None, timeout: float = 3600,
            cell_timeout: float | None = None, allow_errors: bool = False, env: dict | None = None) -> Execution:
    """Run notebook ``src`` into ``dest`` with papermill; never raises for notebook failures."""
    job = {"src": str(src), "dest": str(dest), "cwd": str(cwd), "parameters": parameters or {},
           "cell_timeout": cell_timeout, "allow_errors": allow_errors}
    start = time.perf_counter()
    mark = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-m", "inferlab.execution", json.dumps(job)],
                            env={**os.environ, **(env or {}), RUN_MARK: mark}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    with TreeMemory(proc.pid) as memory:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.communicate()
            _kill_marked(mark)
            return Execution("timeout", time.perf_counter() - start, f"stopped after the {timeout:.0f} s time limit",
                             memory.peak)
    _kill_marked(mark)
    seconds = time.perf_counter() - start
    lines = [line for line in out.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if proc.returncode == 0:
        return Execution("ok", seconds, peak_memory_bytes=memory.peak)
    if proc.returncode == 3:
        return Execution("error", seconds, last.removeprefix("ERROR: "), memory.peak)
    return Execution("crash", seconds, last or f"papermill exited with code {proc.returncode}", memory.peak)


def _kill_tree(pid: int) -> None:
    import psutil
    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    leftovers = []
    for p in procs:
        try:
            leftovers += _connection_files(p.cmdline())
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    for path in leftovers:          # a killed kernel cannot delete its own connection file
        Path(path).unlink(missing_ok=True)


def _kill_marked(mark: str) -> None:
    """Stop every process whose environment carries this run's mark (one that left the tree)."""
    import psutil
    marked = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(RUN_MARK) == mark:
                marked.append(p)
        except (psutil.Error, OSError):
            continue
    for p in marked:
        _kill_tree(p.pid)


def _become_subreaper() -> None:
    """Orphans of this process's descendants become its children instead of init's (Linux only)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _stop_descendants() -> None:
    import psutil
    me = psutil.Process()
    for child in me.children():
        _kill_tree(child.pid)


def _connection_files(cmdline: list[str]) -> list[str]:
    """The Jupyter connection file a kernel was started with (``-f <file>.json``), if any."""
    return [arg for flag, arg in zip(cmdline, cmdline[1:]) if flag == "-f" and arg.endswith(".json")]


def _worker(job: dict) -> int:
    """Child process: run papermill; exit 0 ok, 3 when a cell raised (last line says which)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError
    _become_subreaper()
    try:
        papermill.execute_notebook(job["src"], job["dest"], parameters=job["parameters"], kernel_name="python3",
                                   cwd=job["cwd"], progress_bar=False, execution_timeout=job["cell_timeout"],
                                   allow_errors=job["allow_errors"])
    except PapermillExecutionError as exc:
        print(f"ERROR: cell {exc.exec_count}: {exc.ename}: {str(exc.evalue).splitlines()[0] if exc.evalue else ''}")
        return 3
    finally:
        _stop_descendants()         # what the notebook's cells started and left running
    return 0


def run_solutions(solutions: Path, out_dir: Path | None, parameters: dict | None = None,
                  only: list[str] | None = None, timeout: float = 3600) -> list[dict]:
    """Execute every solution with papermill; into ``out_dir``, or in place when it is None.

    In place (``make reference``) the executed notebook replaces the solution only when
    the run succeeded, after run noise is stripped; copies in ``out_dir`` keep papermill's
    per-cell durations (``tools/cell_times.py`` lists the slowest cells). Returns one row per lab.
    """
    from tqdm.auto import tqdm
    from inferlab.authoring import clean_executed, lab_notebooks
    notebooks = [p for p in lab_notebooks(solutions)
                 if not only or any(p.name.startswith(o) for o in only)]
    rows = []
    for src in tqdm(notebooks, desc="labs", unit="lab"):
        # In place, the run goes to a hidden sibling first: a failed run never clobbers the solution.
        dest = (out_dir / src.name) if out_dir else src.with_name(f".{src.stem}.executing.ipynb")
        dest.parent.mkdir(parents=True, exist_ok=True)
        run = execute(src, dest, cwd=src.parent, parameters=parameters, timeout=timeout)
        if run.status == "ok" and out_dir is None:
            nb = nbformat.read(dest, as_version=4)
            clean_executed(nb)
            nbformat.write(nb, dest)
            dest.replace(src)
        elif out_dir is None:
            dest.unlink(missing_ok=True)
        rows.append({"lab": src.stem, "status": run.status, "seconds": round(run.seconds, 1), "message": run.message,
                     "peak_gib": round(run.peak_memory_bytes / 2**30, 2)})
    return rows


def format_rows(rows: list[dict], host_line: str = "") -> str:
    out = ([f"on {host_line}"] if host_line else []) + [f"{'lab':<22} {'status':<8} {'wall time':>10} {'peak memory':>12}"]
    for r in rows:
        peak = f"{r['peak_gib']:>8.2f} GiB" if r.get("peak_gib") else f"{'-':>12}"
        out.append(f"{r['lab']:<22} {r['status']:<8} {r['seconds']:>8.1f} s {peak}" + (f"  {r['message']}" if r["message"] else ""))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1])))
