"""Offline batch inference with vllm.LLM, in a child process with the same safety nets as a server."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inferlab.engines.endpoints import parse_engine_dtype
from inferlab.engines.errors import ANSI, EngineStartError, root_cause
from inferlab.engines.launch import _defaults, _profile, engine_env
from inferlab.engines.processes import _die_with_parent, kill_group


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
