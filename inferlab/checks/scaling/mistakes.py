"""Lab 10's catalogue: answers a learner could write, and what the checks must say to each."""
from __future__ import annotations

import json
import math
import re
import sys

from inferlab.checks import right, wrong
from inferlab.checks.scaling import (check_autoscaling_decision, check_container_command, check_manifest_builder,
                                     check_router_policy)
from inferlab.scaling import kserve, routing, sagemaker


# ----------------------------------------------------------------------------- autoscaling

def _decide(ongoing, current, target, lo, hi, up, down, rounding=math.ceil, clip=True, factors=True,
            from_zero=True, unstick=True):
    if current == 0 and from_zero:
        wanted = math.ceil(up) if ongoing > 0 else 0
    else:
        raw = ongoing / target
        factor = (up if raw > current else down) if factors else 1.0
        wanted = rounding(current + factor * (raw - current))
        if unstick and math.ceil(raw) < current and wanted == current:
            wanted -= 1
    return max(lo, min(hi, wanted)) if clip else wanted


def scale_floor(*a):
    return _decide(*a, rounding=math.floor)


def scale_round(*a):
    return _decide(*a, rounding=round)


def scale_no_clip(*a):
    return _decide(*a, clip=False)


def scale_no_factors(*a):
    return _decide(*a, factors=False)


def scale_divides_by_current(ongoing, current, target, lo, hi, up, down):
    per_replica = ongoing / current                        # treats ongoing as a total, then averages
    return _decide(per_replica * current, current, target, lo, hi, up, down, from_zero=False)


def scale_from_zero_stays(ongoing, current, target, lo, hi, up, down):
    return lo if current == 0 else _decide(ongoing, current, target, lo, hi, up, down)


def scale_stalls(*a):
    return _decide(*a, unstick=False)


def scale_by_average(ongoing, current, target, lo, hi, up, down):
    return _decide(ongoing * max(current, 1), current, target, lo, hi, up, down)   # ongoing read as per replica


def scale_integer_ceil(ongoing, current, target, lo, hi, up, down):
    if current == 0:
        return min(hi, max(lo, -int(-up // 1) if ongoing > 0 else 0))
    raw = ongoing / target
    step = (up if raw > current else down) * (raw - current)
    wanted = -int(-(current + step) // 1)
    if wanted == current and -int(-raw // 1) < current:
        wanted = current - 1
    return sorted((lo, wanted, hi))[1]


# ----------------------------------------------------------------------------- routing

def route_no_guard(keys, replicas, slack=2):
    return min(range(len(replicas)), key=lambda i: (-routing.cached_prefix_blocks(keys, replicas[i]),
                                                    replicas[i].in_flight, i))


def route_guard_inclusive(keys, replicas, slack=2):
    best, light = route_no_guard(keys, replicas), routing.least_loaded(keys, replicas)
    return light if replicas[best].in_flight - replicas[light].in_flight >= slack else best


def route_ties_by_index(keys, replicas, slack=2):
    best = max(range(len(replicas)), key=lambda i: (routing.cached_prefix_blocks(keys, replicas[i]), -i))
    light = routing.least_loaded(keys, replicas)
    return light if replicas[best].in_flight - replicas[light].in_flight > slack else best


def route_least_loaded(keys, replicas, slack=2):
    return routing.least_loaded(keys, replicas)


def route_most_cached_overall(keys, replicas, slack=2):
    best = max(range(len(replicas)), key=lambda i: (len(replicas[i].sent_keys), -replicas[i].in_flight, -i))
    light = routing.least_loaded(keys, replicas)
    return light if replicas[best].in_flight - replicas[light].in_flight > slack else best


def route_guard_against_mean(keys, replicas, slack=2):
    best = route_no_guard(keys, replicas)
    mean = sum(r.in_flight for r in replicas) / len(replicas)
    return routing.least_loaded(keys, replicas) if replicas[best].in_flight - mean > slack else best


def route_by_filtering(keys, replicas, slack=2):
    lightest = min(r.in_flight for r in replicas)
    allowed = [i for i, r in enumerate(replicas) if r.in_flight - lightest <= slack]
    depth = {i: 0 for i in range(len(replicas))}
    for i in range(len(replicas)):
        for key in keys:
            if key not in replicas[i].sent_keys:
                break
            depth[i] += 1
    best_depth = max(depth.values())
    top = [i for i in range(len(replicas)) if depth[i] == best_depth]
    winner = min(top, key=lambda i: (replicas[i].in_flight, i))
    if winner in allowed:
        return winner
    return min(range(len(replicas)), key=lambda i: (replicas[i].in_flight, i))


# ----------------------------------------------------------------------------- KServe

def _service(name, model_id, *, cpu="2", memory="4Gi", gpus=0, min_replicas=1, max_replicas=1,
             target_concurrency=4, max_model_len=None, edit=None):
    manifest = kserve.inference_service(name, model_id, cpu=cpu, memory=memory, gpus=gpus, min_replicas=min_replicas,
                                        max_replicas=max_replicas, target_concurrency=target_concurrency,
                                        max_model_len=max_model_len)
    if edit:
        edit(manifest, gpus)
    return manifest


def _predictor(m):
    return m["spec"]["predictor"]


def isvc_min_replica_typo(*a, **k):
    return _service(*a, **k, edit=lambda m, g: _predictor(m).update(minReplica=_predictor(m).pop("minReplicas")))


def isvc_replicas_as_text(*a, **k):
    def edit(m, g):
        p = _predictor(m)
        p["minReplicas"], p["maxReplicas"] = str(p["minReplicas"]), str(p["maxReplicas"])
    return _service(*a, **k, edit=edit)


def isvc_gpus_plural(*a, **k):
    def edit(m, g):
        for side in _predictor(m)["model"]["resources"].values():
            if "nvidia.com/gpu" in side:
                side["nvidia.com/gpus"] = side.pop("nvidia.com/gpu")
    return _service(*a, **k, edit=edit)


def isvc_zero_gpus_listed(*a, **k):
    def edit(m, g):
        for side in _predictor(m)["model"]["resources"].values():
            side.setdefault("nvidia.com/gpu", str(g))
    return _service(*a, **k, edit=edit)


def isvc_storage_uri_only(name, model_id, **k):
    def edit(m, g):
        model = _predictor(m)["model"]
        model["args"] = [a for a in model["args"] if not a.startswith("--model_id")]
        model["storageUri"] = f"hf://{model_id}"
    return _service(name, model_id, **k, edit=edit)


def isvc_gpu_metric(*a, **k):
    return _service(*a, **k, edit=lambda m, g: _predictor(m).update(scaleMetric="gpu"))


def isvc_alpha_api(*a, **k):
    return _service(*a, **k, edit=lambda m, g: m.update(apiVersion="serving.kserve.io/v1alpha1"))


def isvc_limits_only(*a, **k):
    return _service(*a, **k, edit=lambda m, g: _predictor(m)["model"]["resources"].pop("requests"))


def isvc_memory_gb(*a, **k):
    def edit(m, g):
        for side in _predictor(m)["model"]["resources"].values():
            side["memory"] = side["memory"].replace("Gi", "GB")
    return _service(*a, **k, edit=edit)


def isvc_length_always(name, model_id, **k):
    def edit(m, g):
        args = _predictor(m)["model"]["args"]
        if not any(a.startswith("--max_model_len") for a in args):
            args.append(f"--max_model_len={k.get('max_model_len')}")
    return _service(name, model_id, **k, edit=edit)


def isvc_no_format(*a, **k):
    return _service(*a, **k, edit=lambda m, g: _predictor(m)["model"].pop("modelFormat"))


def isvc_from_yaml_text(name, model_id, *, cpu, memory, gpus, min_replicas, max_replicas, target_concurrency,
                        max_model_len):
    """A correct answer written as a JSON template filled in, then parsed."""
    res = {"cpu": cpu, "memory": memory, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    args = [f"--model_name={name}", f"--model_id={model_id}"] + ([f"--max_model_len={max_model_len}"]
                                                                  if max_model_len else [])
    text = json.dumps({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                       "metadata": {"name": name, "labels": {"course": "inferlab"}},
                       "spec": {"predictor": {"minReplicas": min_replicas, "maxReplicas": max_replicas,
                                              "scaleMetric": "concurrency", "scaleTarget": target_concurrency,
                                              "model": {"modelFormat": {"name": "huggingface"}, "args": args,
                                                        "resources": {"limits": res, "requests": res}}}}})
    return json.loads(text)


# ----------------------------------------------------------------------------- SageMaker

def _command(argv, env, python=sys.executable, port=None, keep_empty=False, every=False, drain=25,
             dashes=True, refuse=True, module=True, always_add_drain=False):
    if refuse and list(argv) != ["serve"]:
        raise SystemExit("serve only")
    port = port or env.get("SAGEMAKER_BIND_TO_PORT") or "8080"
    flags = []
    for key, value in sorted(env.items()):
        if not (every or key.startswith("SM_VLLM_")):
            continue
        name = key[len("SM_VLLM_"):] if key.startswith("SM_VLLM_") else key
        name = name.lower().replace("_", "-") if dashes else name.lower()
        flags.append("--" + name)
        if value or keep_empty:
            flags.append(value)
    if drain is not None and (always_add_drain or "--shutdown-timeout" not in flags):
        flags += ["--shutdown-timeout", str(drain)]
    head = [python, "-m", sagemaker.VLLM_MODULE] if module else ["vllm", "serve"]
    return [*head, "--port", str(port), *flags]


def command_fixed_port(argv, env, python=sys.executable):
    return _command(argv, env, python, port="8080")


def command_keeps_empty_values(argv, env, python=sys.executable):
    return _command(argv, env, python, keep_empty=True)


def command_every_variable(argv, env, python=sys.executable):
    return _command(argv, env, python, every=True)


def command_no_drain(argv, env, python=sys.executable):
    return _command(argv, env, python, drain=None)


def command_drain_too_long(argv, env, python=sys.executable):
    return _command(argv, env, python, drain=30)


def command_two_drains(argv, env, python=sys.executable):
    return _command(argv, env, python, always_add_drain=True)


def command_underscores(argv, env, python=sys.executable):
    return _command(argv, env, python, dashes=False)


def command_serves_anything(argv, env, python=sys.executable):
    return _command(argv, env, python, refuse=False)


def command_console_script(argv, env, python=sys.executable):
    return _command(argv, env, python, module=False)


def command_by_regex(argv, env, python=sys.executable):
    """A correct answer: options parsed with a regular expression, drain last, port first."""
    if argv != ["serve"]:
        raise ValueError("this image only serves: docker run IMAGE serve")
    out = [python, "-m", "vllm.entrypoints.openai.api_server"]
    options = []
    for key in sorted(env):
        match = re.fullmatch(r"SM_VLLM_(\w+)", key)
        if match:
            options += ["--" + "-".join(match.group(1).lower().split("_"))] + ([env[key]] if env[key] else [])
    if "--shutdown-timeout" not in options:
        options += ["--shutdown-timeout", "20"]
    return out + ["--port", env.get("SAGEMAKER_BIND_TO_PORT", "8080")] + options


CATALOGUE = [
    wrong(check_autoscaling_decision, "rounded up", scale_floor),
    wrong(check_autoscaling_decision, "rounded up", scale_round),
    wrong(check_autoscaling_decision, "never more than max_replicas", scale_no_clip),
    wrong(check_autoscaling_decision, "a fraction of the gap", scale_no_factors),
    wrong(check_autoscaling_decision, "ZeroDivisionError", scale_divides_by_current),
    wrong(check_autoscaling_decision, "from zero replicas", scale_from_zero_stays),
    wrong(check_autoscaling_decision, "still removes one replica", scale_stalls),
    wrong(check_autoscaling_decision, "the total over all replicas", scale_by_average),
    right(check_autoscaling_decision, scale_integer_ceil),

    wrong(check_router_policy, "more than slack requests busier", route_no_guard),
    wrong(check_router_policy, "exactly slack requests busier", route_guard_inclusive),
    wrong(check_router_policy, "the least-loaded one", route_ties_by_index),
    wrong(check_router_policy, "the replica that has the prompt's leading blocks", route_least_loaded),
    wrong(check_router_policy, "only a leading prefix counts", route_most_cached_overall),
    wrong(check_router_policy, "more than slack requests busier", route_guard_against_mean),
    right(check_router_policy, route_by_filtering),

    wrong(check_manifest_builder, "'minReplica' was unexpected", isvc_min_replica_typo),
    wrong(check_manifest_builder, "is not of type 'integer'", isvc_replicas_as_text),
    wrong(check_manifest_builder, "'nvidia.com/gpu' should be 1", isvc_gpus_plural),
    wrong(check_manifest_builder, "'nvidia.com/gpu' should be absent", isvc_zero_gpus_listed),
    wrong(check_manifest_builder, "--model_id=", isvc_storage_uri_only),
    wrong(check_manifest_builder, "is not one of", isvc_gpu_metric),
    wrong(check_manifest_builder, "'serving.kserve.io/v1beta1' was expected", isvc_alpha_api),
    wrong(check_manifest_builder, "resources.requests should ask for", isvc_limits_only),
    wrong(check_manifest_builder, "does not match", isvc_memory_gb),
    wrong(check_manifest_builder, "only when a length is given", isvc_length_always),
    wrong(check_manifest_builder, "modelFormat name 'huggingface'", isvc_no_format),
    right(check_manifest_builder, isvc_from_yaml_text),

    wrong(check_container_command, "SAGEMAKER_BIND_TO_PORT=9123", command_fixed_port),
    wrong(check_container_command, "bare flag", command_keeps_empty_values),
    wrong(check_container_command, "only SM_VLLM_* variables", command_every_variable),
    wrong(check_container_command, "--shutdown-timeout must be set", command_no_drain),
    wrong(check_container_command, "shorter than the 30 s", command_drain_too_long),
    wrong(check_container_command, "do not add a second", command_two_drains),
    wrong(check_container_command, "--tensor-parallel-size 2", command_underscores),
    wrong(check_container_command, "must be refused", command_serves_anything),
    wrong(check_container_command, "server module", command_console_script),
    right(check_container_command, command_by_regex),
]
