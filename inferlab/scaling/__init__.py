"""Scaling out (lab 10): replicas behind a router, autoscaling on ongoing requests, and the contracts
a platform team asks for -- KServe manifests checked against KServe's schema, SageMaker's container.

    scaling.desired_replicas(ongoing=12, current=2, target=4, min_replicas=1, max_replicas=8)
    scaling.Router(scaling.prefix_aware, num_replicas=2, block_size=16).send(token_ids)
    scaling.validate_manifest(scaling.inference_service("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"))
    scaling.container_command(["serve"], os.environ)

    with scaling.local_cluster() as cluster: scaling.deploy(cluster, model_dir, "smollm2", autoscaling_config={...})

One module per idea: ``coldstart``, ``fleet`` (routing real servers, what was in flight), ``replicas``
(Ray Serve on this machine; ``streaming`` is what each replica serves), ``autoscale``, ``routing``,
``kserve`` (manifests), ``modelserver`` (KServe's Python model server, run from its own environment by
``kserve_model.py``), ``sagemaker`` (and ``entrypoint``, the container's entry point).
"""
from inferlab.scaling.autoscale import backlog_during_scale_up, desired_replicas, scale_up_seconds
from inferlab.scaling.coldstart import logged_phases, startup_phases
from inferlab.scaling.fleet import cache_counters, in_flight, send_routed
from inferlab.scaling.replicas import (LocalCluster, deploy, listening_addresses, local_cluster, ray_processes,
                                       replica_states, sample_replicas)
from inferlab.scaling import modelserver
from inferlab.scaling.kserve import (ManifestError, crd_schema, inference_service, manifest_errors, schema_source,
                                     validate_manifest)
from inferlab.scaling.routing import (ReplicaView, RoundRobin, Router, cached_prefix_blocks, hit_rate, least_loaded,
                                      predicted_hits, prefix_aware)
from inferlab.scaling.sagemaker import (DOCKERFILE, SIGKILL_AFTER_S, container_command, engine_options, hadolint,
                                        invoke, local_config, local_env, ping, run_local,
                                        stop_like_sagemaker)

__all__ = ["DOCKERFILE", "LocalCluster", "ManifestError", "ReplicaView", "RoundRobin", "Router", "SIGKILL_AFTER_S",
           "backlog_during_scale_up", "cache_counters", "cached_prefix_blocks", "container_command", "crd_schema",
           "deploy", "desired_replicas", "engine_options", "hadolint", "hit_rate", "in_flight", "inference_service",
           "invoke", "least_loaded", "listening_addresses", "local_cluster", "local_config", "local_env",
           "logged_phases", "manifest_errors", "modelserver", "ping", "predicted_hits", "prefix_aware", "ray_processes",
           "replica_states", "run_local", "sample_replicas", "scale_up_seconds", "schema_source", "send_routed",
           "startup_phases", "stop_like_sagemaker", "validate_manifest"]
