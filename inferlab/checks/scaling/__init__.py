"""Graded checks of lab 10, scaling out.

The references are ``inferlab.scaling``: the autoscaling decision (itself tested against Ray Serve's
own policy code), the prefix-aware router, KServe manifests (validated against KServe's vendored CRD
schema) and the SageMaker entry point's command. Every case is one the notebook does not show.
"""
from __future__ import annotations

from inferlab.batching import block_keys
from inferlab.checks import CheckFailed, Exercise, call_case, expect, graded
from inferlab.scaling import autoscale, kserve, routing, sagemaker

LAB = "10-scaling"


# ----------------------------------------------------------------------------- autoscaling

AUTOSCALE_CASES = [  # ongoing, current, target, min, max, up, down, what the case is about
    (9, 1, 2, 1, 10, 1.0, 1.0, "ongoing / target replicas, rounded up (4.5 -> 5)"),
    (30, 2, 4, 1, 5, 1.0, 1.0, "never more than max_replicas"),
    (12, 3, 2, 1, 20, 1.0, 1.0, "ongoing is the total over all replicas: 12 / 2 = 6 replicas, not 12 x 3 / 2"),
    (0, 3, 2, 2, 8, 1.0, 1.0, "never fewer than min_replicas"),
    (12, 2, 2, 1, 20, 0.5, 1.0, "the upscaling factor moves a fraction of the gap: 2 + 0.5 x (6 - 2) = 4"),
    (2, 6, 2, 1, 20, 1.0, 0.5, "the downscaling factor moves a fraction of the gap: 6 + 0.5 x (1 - 6) = 3.5 -> 4"),
    (5, 4, 2, 1, 20, 1.0, 0.1, "4 + 0.1 x (2.5 - 4) = 3.85 rounds back up to 4: a scale-down that rounds back to "
                               "the current count still removes one replica"),
    (5, 0, 2, 0, 8, 1.0, 1.0, "from zero replicas: one as soon as anything waits, whatever the load"),
    (0, 0, 2, 0, 8, 1.0, 1.0, "from zero with nothing waiting: stay at zero"),
    (6.5, 3, 2.5, 1, 10, 1.0, 1.0, "ongoing is a time average (a float); 6.5 / 2.5 = 2.6 -> 3"),
    (40, 3, 4, 1, 16, 2.0, 1.0, "an upscaling factor above 1 overshoots on purpose: 3 + 2 x (10 - 3) = 17 -> 16"),
]


@graded(hint="raw = ongoing / target (ongoing is the total over replicas); move from current toward raw by the "
             "up- or downscaling factor times the gap; round up; from 0 replicas go to ceil(upscaling_factor) if "
             "anything waits; then clip to [min_replicas, max_replicas]")
def check_autoscaling_decision(desired_replicas) -> str:
    for ongoing, current, target, lo, hi, up, down, rule in AUTOSCALE_CASES:
        got = call_case(desired_replicas, (ongoing, current, target, lo, hi, up, down),
                    f"ongoing={ongoing}, current={current}, target={target} -- {rule}")
        want = autoscale.desired_replicas(ongoing, current, target, lo, hi, up, down)
        if not isinstance(got, int) and not (isinstance(got, float) and got.is_integer()):
            raise CheckFailed(f"return a whole number of replicas, got {got!r}")
        expect(got == want, f"ongoing={ongoing}, current={current}, target={target}, min={lo}, max={hi}, "
                            f"upscaling_factor={up}, downscaling_factor={down}: got {got}, expected {want} -- {rule}")
    return f"{len(AUTOSCALE_CASES)} control-loop ticks, the same decisions as Ray Serve's default policy"


# ----------------------------------------------------------------------------- routing

def _views(*specs):
    """specs: (in_flight, prompt whose blocks this replica was sent) per replica."""
    return [routing.ReplicaView(n, set(block_keys(sent, 4)) if sent else set()) for n, sent in specs]


A = list(range(100, 124))            # 6 blocks of 4
B = list(range(200, 224))
ROUTER_CASES = [  # prompt, replicas, slack, expected, what the case is about
    (A, [(0, None), (0, A[:12])], 2, 1, "the replica that has the prompt's leading blocks"),
    (A, [(1, A[:8]), (1, A[:16])], 2, 1, "the longest cached prefix wins"),
    (A, [(0, A[4:]), (0, A[:4])], 2, 1, "only a leading prefix counts: blocks after a miss are not reusable"),
    (A, [(2, None), (0, None)], 2, 1, "no replica has any of it: the least-loaded one"),
    (A, [(1, A[:8]), (1, A[:8])], 2, 0, "equal prefixes and loads: the lowest index"),
    (A, [(2, A[:8]), (1, A[:8])], 2, 1, "equal prefixes: the less loaded"),
    (A, [(4, A), (1, None)], 2, 1, "the best prefix is on a replica more than slack requests busier: least-loaded"),
    (A, [(3, A), (1, None)], 2, 0, "exactly slack requests busier still keeps the prefix"),
    (B, [(0, A), (3, B[:4]), (1, None)], 1, 0, "slack 1: busier by 3 than the idlest is too busy: the idlest"),
    (A + B, [(0, A), (0, B)], 2, 0, "a prompt's prefix is its beginning: A then B starts with A"),
]


@graded(hint="count, for each replica, how many of the prompt's blocks from the first one on it was sent before "
             "(stop at the first miss); take the most, ties to fewer in flight then lower index; but if that "
             "replica has more than slack requests in flight beyond the least-loaded one, take the least-loaded")
def check_router_policy(choose_replica) -> str:
    for prompt, specs, slack, want, rule in ROUTER_CASES:
        views, keys = _views(*specs), block_keys(prompt, 4)
        got = call_case(choose_replica, (keys, views, slack), rule)
        expect(isinstance(got, int) and not isinstance(got, bool), f"return a replica index (int), got {got!r}")
        expect(got == want, f"replicas (in flight, cached blocks) "
                            f"{[(v.in_flight, routing.cached_prefix_blocks(keys, v)) for v in views]}, "
                            f"slack {slack}: got replica {got}, expected {want} -- {rule}")
    return f"{len(ROUTER_CASES)} routing decisions: prefix length, leading blocks only, ties, and the load guard"


# ----------------------------------------------------------------------------- KServe manifest

MANIFEST_CASES = [  # name, model_id, keywords
    ("qwen-7b", "Qwen/Qwen2.5-7B-Instruct", dict(cpu="8", memory="48Gi", gpus=1, min_replicas=2, max_replicas=6,
                                                 target_concurrency=16, max_model_len=8192)),
    ("tiny-cpu", "HuggingFaceTB/SmolLM2-360M-Instruct", dict(cpu="4", memory="6Gi", gpus=0, min_replicas=0,
                                                             max_replicas=2, target_concurrency=2, max_model_len=None)),
    ("llama-70b", "meta-llama/Llama-3.3-70B-Instruct", dict(cpu="32", memory="320Gi", gpus=4, min_replicas=1,
                                                            max_replicas=3, target_concurrency=64,
                                                            max_model_len=32768)),
]


def _field(manifest, *path):
    node = manifest
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise CheckFailed(f"the manifest has no {'.'.join(path)}")
        node = node[key]
    return node


@graded(hint="build the dict KServe's schema expects: apiVersion serving.kserve.io/v1beta1, kind InferenceService, "
             "metadata.name, and spec.predictor with minReplicas/maxReplicas (integers), scaleMetric 'concurrency', "
             "scaleTarget, and model: modelFormat.name 'huggingface', args, resources.requests and .limits")
def check_manifest_builder(inference_service) -> str:
    for name, model_id, kw in MANIFEST_CASES:
        manifest = call_case(lambda: inference_service(name, model_id, **kw), (), name)
        errors = kserve.manifest_errors(manifest)
        expect(not errors, f"{name}: KServe's schema rejects the manifest: {errors[:1]}")
        predictor = _field(manifest, "spec", "predictor")
        replicas = (predictor.get("minReplicas"), predictor.get("maxReplicas"))
        expect(replicas == (kw["min_replicas"], kw["max_replicas"]),
               f"{name}: minReplicas/maxReplicas should be {kw['min_replicas']}/{kw['max_replicas']}, got "
               f"{predictor.get('minReplicas')}/{predictor.get('maxReplicas')}")
        scale = (predictor.get("scaleMetric"), predictor.get("scaleTarget"))
        expect(scale == ("concurrency", kw["target_concurrency"]),
               f"{name}: autoscale on in-flight requests: scaleMetric 'concurrency', scaleTarget "
               f"{kw['target_concurrency']} (got {predictor.get('scaleMetric')!r}, {predictor.get('scaleTarget')!r})")
        resources = _field(manifest, "spec", "predictor", "model", "resources")
        for side in ("requests", "limits"):
            got = resources.get(side, {})
            expect(got.get("cpu") == kw["cpu"] and got.get("memory") == kw["memory"],
                   f"{name}: resources.{side} should ask for cpu {kw['cpu']} and memory {kw['memory']}, got {got}")
            gpus = got.get("nvidia.com/gpu")
            expect((str(gpus) if gpus is not None else None) == (str(kw["gpus"]) if kw["gpus"] else None),
                   f"{name}: resources.{side}: 'nvidia.com/gpu' should be {kw['gpus'] or 'absent'}, got {gpus}")
        model_format = _field(manifest, "spec", "predictor", "model").get("modelFormat") or {}
        expect(model_format.get("name") == "huggingface", f"{name}: KServe picks the Hugging Face runtime (vLLM) for "
                                                         f"modelFormat name 'huggingface', got {model_format or None}")
        args = " ".join(_field(manifest, "spec", "predictor", "model", "args"))
        expect(f"--model_id={model_id}" in args, f"{name}: the runtime finds the model by --model_id={model_id}")
        length = kw["max_model_len"]
        expect((f"--max_model_len={length}" in args) if length else "--max_model_len" not in args,
               f"{name}: --max_model_len={length} in args only when a length is given")
    return f"{len(MANIFEST_CASES)} services valid against KServe's own schema, each field as asked"


# ----------------------------------------------------------------------------- SageMaker entry point

def _flag(command, name):
    return command[command.index(name) + 1] if name in command else None


@graded(hint="refuse anything but ['serve']; the port is SAGEMAKER_BIND_TO_PORT or 8080; every SM_VLLM_<NAME> "
             "becomes --<name> (lower case, '_' -> '-') followed by its value unless the value is empty; add "
             "--shutdown-timeout so the drain ends before SageMaker's SIGKILL unless an option sets it")
def check_container_command(container_command) -> str:
    py = "/opt/venv/bin/python"
    env = {"SM_VLLM_MODEL": "/opt/ml/model", "SM_VLLM_TENSOR_PARALLEL_SIZE": "2", "SM_VLLM_ENABLE_PREFIX_CACHING": "",
           "HOME": "/root", "SM_MODEL_DIR": "/opt/ml/model"}
    command = [str(c) for c in container_command(["serve"], env, py)]
    expect(command[:3] == [py, "-m", sagemaker.VLLM_MODULE], f"start vLLM's server module with the given python: "
                                                            f"{py} -m {sagemaker.VLLM_MODULE} (got {command[:3]})")
    expect(_flag(command, "--port") == "8080",
           f"without SAGEMAKER_BIND_TO_PORT the port is 8080, got {_flag(command, '--port')}")
    expect(_flag(command, "--tensor-parallel-size") == "2",
           "SM_VLLM_TENSOR_PARALLEL_SIZE=2 -> --tensor-parallel-size 2")
    after = command[command.index("--enable-prefix-caching") + 1:][:1] if "--enable-prefix-caching" in command else [""]
    bare = after == [] or after[0].startswith("--")
    expect(bare, "an empty SM_VLLM_ENABLE_PREFIX_CACHING is a bare flag: --enable-prefix-caching with no value")
    expect("/root" not in command and "--home" not in command, "only SM_VLLM_* variables become engine options")
    drain = _flag(command, "--shutdown-timeout")
    expect(drain is not None and 0 < float(drain) < sagemaker.SIGKILL_AFTER_S,
           f"--shutdown-timeout must be set and shorter than the {sagemaker.SIGKILL_AFTER_S} s before SIGKILL, "
           f"got {drain}")
    moved = [str(c) for c in container_command(["serve"], {**env, "SAGEMAKER_BIND_TO_PORT": "9123"}, py)]
    expect(_flag(moved, "--port") == "9123", "SAGEMAKER_BIND_TO_PORT=9123 moves the server to port 9123")
    own = [str(c) for c in container_command(["serve"], {**env, "SM_VLLM_SHUTDOWN_TIMEOUT": "12"}, py)]
    expect(own.count("--shutdown-timeout") == 1 and _flag(own, "--shutdown-timeout") == "12",
           "SM_VLLM_SHUTDOWN_TIMEOUT=12 is the drain; do not add a second --shutdown-timeout")
    try:
        container_command(["train"], env, py)
    except (SystemExit, ValueError):
        pass
    else:
        raise CheckFailed("docker run IMAGE train must be refused: a hosting container only serves")
    return "port 8080 or SAGEMAKER_BIND_TO_PORT, SM_VLLM_* options, bare flags, a drain inside SageMaker's 30 s"


EXERCISES = [
    Exercise(check_autoscaling_decision, ("desired_replicas",)),
    Exercise(check_router_policy, ("prefix_aware",)),
    Exercise(check_manifest_builder, ("inference_service",)),
    Exercise(check_container_command, ("container_command",)),
]
