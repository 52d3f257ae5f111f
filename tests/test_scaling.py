"""inferlab.scaling: KServe manifests against KServe's own schema, routing policies and the hits they
earn, the autoscaling decision (against Ray Serve's own code), and the SageMaker entry point's command."""
from __future__ import annotations

import itertools
import random
import sys

import pytest

from inferlab.batching import block_keys
from inferlab import scaling
from inferlab.scaling import autoscale, kserve, routing, sagemaker


# -- KServe -------------------------------------------------------------------------------------------

def good_manifest():
    return kserve.inference_service("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", gpus=1,
                                    min_replicas=1, max_replicas=3, target_concurrency=8, max_model_len=2048)


def test_the_reference_builder_gives_a_valid_manifest():
    assert kserve.manifest_errors(good_manifest()) == []
    kserve.validate_manifest(good_manifest())


def test_the_vendored_schema_says_where_it_came_from():
    source = kserve.schema_source()
    assert source["project"] == "KServe" and source["tag"].startswith("v") and len(source["commit"]) == 40
    schema = kserve.crd_schema()
    assert schema["properties"]["spec"]["required"] == ["predictor"]
    assert "minReplicas" in schema["properties"]["spec"]["properties"]["predictor"]["properties"]


def edit(path, value=None, delete=False):
    manifest = good_manifest()
    *parents, last = path
    node = manifest
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return manifest


PREDICTOR = ("spec", "predictor")
MODEL = PREDICTOR + ("model",)


@pytest.mark.parametrize("manifest, field, words", [
    (edit(PREDICTOR + ("minReplica",), 1), "spec.predictor", "'minReplica' was unexpected"),       # wrong field
    (edit(MODEL + ("storageURI",), "hf://x"), "spec.predictor.model", "'storageURI' was unexpected"),
    (edit(PREDICTOR + ("minReplicas",), "two"), "spec.predictor.minReplicas", "is not of type 'integer'"),  # wrong type
    (edit(MODEL + ("args",), "--model_id=x"), "spec.predictor.model.args", "is not of type 'array'"),
    (edit(PREDICTOR + ("scaleMetric",), "gpu"), "spec.predictor.scaleMetric", "is not one of"),
    (edit(MODEL + ("resources", "limits", "memory"), "4 GB"), "spec.predictor.model.resources.limits.memory",
     "does not match"),
    (edit(MODEL + ("modelFormat", "name"), delete=True), "spec.predictor.model.modelFormat",
     "'name' is a required property"),                                                              # missing required
    (edit(PREDICTOR, delete=True), "spec", "'predictor' is a required property"),
    (edit(("kind",), "Deployment"), "kind", "'InferenceService' was expected"),
    (edit(("metadata", "name"), "SmolLM2_135M"), "metadata.name", "does not match"),
])
def test_a_wrong_field_type_or_missing_field_is_refused_with_the_schemas_message(manifest, field, words):
    errors = kserve.manifest_errors(manifest)
    assert errors and errors[0].startswith(field + ": ") and words in errors[0], errors
    with pytest.raises(kserve.ManifestError, match="InferenceService rejected: " + field.replace(".", r"\.")):
        kserve.validate_manifest(manifest)


def test_maps_and_int_or_string_quantities_stay_open():
    manifest = good_manifest()
    manifest["spec"]["predictor"]["model"]["resources"]["limits"].update({"example.com/fpga": 1, "cpu": 4})
    manifest["metadata"]["labels"] = {"team": "serving"}
    assert kserve.manifest_errors(manifest) == []


def test_every_error_is_listed():
    manifest = edit(PREDICTOR + ("minReplicas",), "two")
    manifest["spec"]["predictor"]["maxReplicas"] = "three"
    assert len(kserve.manifest_errors(manifest)) == 2
    with pytest.raises(kserve.ManifestError, match=r"\(and 1 more\)"):
        kserve.validate_manifest(manifest)


# -- routing ------------------------------------------------------------------------------------------

def tenant_prompts(tenants=4, per_tenant=6, prefix=64, suffix=10, seed=0):
    rng = random.Random(seed)
    prefixes = [[rng.randrange(1000) for _ in range(prefix)] for _ in range(tenants)]
    order = [t for t in range(tenants) for _ in range(per_tenant)]
    rng.shuffle(order)
    return [prefixes[t] + [rng.randrange(1000) for _ in range(suffix)] for t in order], order


def route_all(policy, prompts, replicas=2, block_size=16):
    router = routing.Router(policy, replicas, block_size)
    out = []
    for ids in prompts:
        out.append(router.send(ids))
        router.done(out[-1])                 # one at a time: nothing stays in flight
    return out


def test_round_robin_cycles_and_least_loaded_takes_the_idlest():
    assert route_all(routing.RoundRobin(), [[1]] * 5, replicas=3) == [0, 1, 2, 0, 1]
    views = [routing.ReplicaView(in_flight=n) for n in (3, 1, 1)]
    assert routing.least_loaded([], views) == 1


def test_prefix_aware_keeps_each_tenant_on_one_replica_and_earns_more_hits():
    prompts, tenants = tenant_prompts()
    aware = route_all(routing.prefix_aware, prompts)
    assert all(len({r for r, t in zip(aware, tenants) if t == tenant}) == 1 for tenant in set(tenants))
    rr = route_all(routing.RoundRobin(), prompts)
    hits_aware = routing.predicted_hits(prompts, aware, 16)
    hits_rr = routing.predicted_hits(prompts, rr, 16)
    assert routing.hit_rate(prompts, hits_aware) > routing.hit_rate(prompts, hits_rr)
    # a tenant's first request misses; every later one hits its whole 64-token prefix
    assert sum(h == 64 for h in hits_aware) == len(prompts) - len(set(tenants))


def test_prefix_aware_gives_way_when_its_replica_is_too_busy():
    keys = block_keys(list(range(64)), 16)
    warm = routing.ReplicaView(in_flight=5, sent_keys=set(keys))
    cold = routing.ReplicaView(in_flight=1)
    assert routing.prefix_aware(keys, [warm, cold], slack=2) == 1
    assert routing.prefix_aware(keys, [warm, cold], slack=4) == 0


def test_predicted_hits_use_one_cache_per_replica():
    prompt = list(range(40))
    assert routing.predicted_hits([prompt, prompt, prompt], [0, 1, 0], 16) == [0, 0, 32]


def test_a_policy_that_names_no_replica_is_refused():
    with pytest.raises(ValueError, match="returned replica 2; there are 2"):
        routing.Router(lambda keys, replicas: 2, 2, 16).send([1, 2, 3])


# -- autoscaling --------------------------------------------------------------------------------------

def test_desired_replicas_by_hand():
    assert autoscale.desired_replicas(ongoing=10, current=1, target=2, min_replicas=1, max_replicas=8) == 5
    assert autoscale.desired_replicas(ongoing=10, current=1, target=2, min_replicas=1, max_replicas=3) == 3
    assert autoscale.desired_replicas(ongoing=0, current=4, target=2, min_replicas=1, max_replicas=8) == 1
    assert autoscale.desired_replicas(ongoing=3, current=0, target=2, min_replicas=0, max_replicas=8) == 1
    # half the gap at a time, rounded up; a small downscaling factor still removes one replica
    assert autoscale.desired_replicas(ongoing=16, current=2, target=2, min_replicas=1, max_replicas=8,
                                      upscaling_factor=0.5) == 5
    assert autoscale.desired_replicas(ongoing=5, current=4, target=2, min_replicas=1, max_replicas=8,
                                      downscaling_factor=0.1) == 3


def test_desired_replicas_decides_as_ray_serve_does():
    serve_config = pytest.importorskip("ray.serve.config", reason="Ray Serve is part of the lab environment")
    from ray.serve import autoscaling_policy as ray_policy
    grid = itertools.product([0, 1, 3, 7.5, 20, 64], [0, 1, 2, 5], [1, 2.5, 8], [(0, 4), (1, 10), (2, 3)],
                             [0.3, 1.0, 2.0], [0.2, 1.0])
    for ongoing, current, target, (lo, hi), up, down in grid:
        config = serve_config.AutoscalingConfig(min_replicas=lo, max_replicas=hi, target_ongoing_requests=target,
                                                upscaling_factor=up, downscaling_factor=down)
        if current == 0:
            raw = ray_policy.math.ceil(up) if ongoing > 0 else 0
        else:
            raw = ray_policy._apply_scaling_factors(ongoing / target, current, config)
        want = max(lo, min(hi, raw))
        got = autoscale.desired_replicas(ongoing, current, target, lo, hi, up, down)
        assert got == want, (ongoing, current, target, lo, hi, up, down)


def test_scale_up_arithmetic():
    assert autoscale.scale_up_seconds(2.0, 3.0, 40.0) == 45.0
    assert autoscale.backlog_during_scale_up(arrival_rate=3.0, capacity_rate=2.0, seconds=45.0) == 45.0
    assert autoscale.backlog_during_scale_up(arrival_rate=1.0, capacity_rate=2.0, seconds=45.0) == 0.0


# -- SageMaker ----------------------------------------------------------------------------------------

def test_container_command_follows_the_contract():
    env = {"SM_VLLM_MODEL": "/opt/ml/model", "SM_VLLM_MAX_MODEL_LEN": "512", "SM_VLLM_ENFORCE_EAGER": "",
           "PATH": "/usr/bin"}
    command = sagemaker.container_command(["serve"], env, python="python")
    assert command[:3] == ["python", "-m", sagemaker.VLLM_MODULE]
    flags = command[3:]
    assert flags[flags.index("--port") + 1] == "8080"
    assert flags[flags.index("--model") + 1] == "/opt/ml/model"
    assert flags[flags.index("--max-model-len") + 1] == "512"
    assert flags[flags.index("--enforce-eager") + 1].startswith("--")       # an empty value: a bare flag
    assert 0 < int(flags[flags.index("--shutdown-timeout") + 1]) < sagemaker.SIGKILL_AFTER_S
    moved = sagemaker.container_command(["serve"], {**env, "SAGEMAKER_BIND_TO_PORT": "9000"})
    assert moved[moved.index("--port") + 1] == "9000"
    assert moved[0] == sys.executable


def test_container_command_refuses_anything_but_serve():
    with pytest.raises(SystemExit, match="IMAGE serve"):
        sagemaker.container_command(["train"], {})


def test_engine_options_round_trip_through_the_container_command():
    env = sagemaker.engine_options({"max_model_len": 512, "enforce_eager": True, "enable_prefix_caching": False,
                                    "dtype": None, "shutdown_timeout": 10})
    assert env == {"SM_VLLM_MAX_MODEL_LEN": "512", "SM_VLLM_ENFORCE_EAGER": "", "SM_VLLM_SHUTDOWN_TIMEOUT": "10"}
    command = sagemaker.container_command(["serve"], env)
    assert command.count("--shutdown-timeout") == 1 and command[command.index("--shutdown-timeout") + 1] == "10"


def test_run_local_refuses_to_listen_beyond_loopback():
    command = sagemaker.container_command(["serve"], {"SM_VLLM_HOST": "0.0.0.0"})
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        sagemaker.run_local(command, {})
    with pytest.raises(ValueError, match="every interface"):
        sagemaker.run_local(sagemaker.container_command(["serve"], {}), {})


# -- cold start ---------------------------------------------------------------------------------------

VLLM_LOG = """(APIServer pid=1) INFO 12-03 07:46:01 [utils.py:1] vLLM API server version 0.32.0
(APIServer pid=1) INFO 12-03 07:46:30 [default_loader.py:502] Loading weights took 3.49 seconds
(APIServer pid=1) INFO 12-03 07:46:31 [monitor.py:20] torch.compile took 12.50 s in total
(APIServer pid=1) INFO 12-03 07:46:45 [core.py:403] init engine (profile, create kv cache, warmup model) took 14.28 s
(APIServer pid=1) INFO 12-03 07:46:50 [launcher.py:1] Starting vLLM server on http://127.0.0.1:8000
"""


def test_startup_phases_add_up_to_the_measured_start():
    phases = scaling.startup_phases(VLLM_LOG, healthy_seconds=50.0)
    assert phases == pytest.approx({"process, imports, config, API server": 32.23, "weights": 3.49,
                                    "torch.compile": 12.5, "profile, KV cache, warm-up": 1.78})
    assert sum(phases.values()) == pytest.approx(50.0)
    eager = "\n".join(line for line in VLLM_LOG.splitlines() if "torch.compile" not in line)
    assert "torch.compile" not in scaling.startup_phases(eager, 50.0)
    with pytest.raises(ValueError, match="init engine"):
        scaling.startup_phases("Loading weights took 1.0 seconds", 10.0)


def test_without_kserves_environment_the_start_is_one_line_that_says_what_to_run(monkeypatch, tmp_path):
    from inferlab import engines
    from inferlab.scaling import modelserver
    monkeypatch.setenv("INFERLAB_KSERVE_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(engines.EngineStartError) as info:
        modelserver.start(tmp_path, "m", profile="cpu")
    assert "make setup-kserve" in info.value.reason and "\n" not in info.value.reason


def test_the_v2_body_is_a_bytes_tensor_and_an_int32_one():
    from inferlab.scaling import modelserver
    body = modelserver.v2_body(["a", "b"], 5, "r")
    assert body["id"] == "r"
    assert body["inputs"] == [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                              {"name": "max_tokens", "shape": [1], "datatype": "INT32", "data": [5]}]
    assert modelserver.v1_body(["a"], 3) == {"instances": [{"prompt": "a", "max_tokens": 3}]}
