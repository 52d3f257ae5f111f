"""Replicas with Ray Serve, on this machine: a private Ray cluster on 127.0.0.1 that always goes away,
a deployment whose replicas each serve the profile's model over OpenAI's /v1/completions (streamed),
and a sampler of the deployment's replica states over time.

Each replica loads the model with transformers on one core (``num_cpus=1``, one torch thread): a
whole vLLM engine per replica would take most of a minute to start on two cores, and a lab that
scales replicas up and down has several to start. The serving framework -- routing, queueing,
autoscaling, health checks, replacing a dead replica -- is Ray Serve's own.
"""
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from inferlab.engines.endpoints import HOST, free_port
from inferlab.engines.watching import sample

APP = "llm"
DEPLOYMENT = "Replica"


@dataclass
class LocalCluster:
    url: str            # Ray Serve's HTTP proxy: the OpenAI base URL is url + "/v1"
    workdir: Path       # Ray's temporary directory (logs, sockets) and the replicas' pid files

    def replica_pids(self) -> list[int]:
        """Process ids of the replicas that have started (each writes one file when its model is loaded)."""
        import psutil
        return sorted(pid for pid in (int(p.name) for p in (self.workdir / "replicas").glob("*"))
                      if psutil.pid_exists(pid))


WORKDIR_PREFIX = "ilray-"


def _leftovers(marker: str) -> list:
    import psutil
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
    return found


def listening_addresses(cluster: LocalCluster) -> set[str]:
    """The addresses (IPs) that the cluster's processes listen on for TCP connections."""
    from inferlab.engines.processes import listening_addresses as listening
    return listening(_leftovers(str(cluster.workdir)))


def ray_processes() -> list:
    """Processes of a local_cluster() still running, from any session (0 when every cluster was shut down)."""
    return _leftovers(f"/tmp/{WORKDIR_PREFIX}")


@contextlib.contextmanager
def local_cluster(num_cpus: int = 2, port: int | None = None):
    """``with local_cluster() as cluster:`` -- Ray and Ray Serve on 127.0.0.1, no dashboard; on exit
    (also when the block raises) Serve and Ray are shut down, any process left is killed, and the
    temporary directory is removed."""
    import ray
    from ray import serve
    from ray._private import services
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray turns 127.0.0.1 into the machine's routable address, and its servers then listen beyond
    # loopback; a node whose address is 127.0.0.1 keeps every server on loopback.
    routable_ip = services.get_node_ip_address
    services.get_node_ip_address = lambda address=None: HOST
    # Ray puts Unix sockets under its temp dir: the path must stay short (107 bytes at most)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir="/tmp"))
    (workdir / "replicas").mkdir()
    port = port or free_port()
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=str(workdir), _node_ip_address=HOST,
                 object_store_memory=100 * 2**20, log_to_driver=False, configure_logging=False,
                 namespace="inferlab")
        serve.start(http_options={"host": HOST, "port": port})
        yield LocalCluster(url=f"http://{HOST}:{port}", workdir=workdir)
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()
        with contextlib.suppress(Exception):
            ray.shutdown()
        services.get_node_ip_address = routable_ip
        procs = _leftovers(str(workdir))
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.kill()
        with contextlib.suppress(Exception):
            import psutil
            psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def deploy(cluster: LocalCluster, model_dir: str, model_name: str, *, autoscaling_config: dict | None = None,
           num_replicas: int | None = None, max_ongoing_requests: int = 4, health_check_period_s: float = 2.0):
    """Deploy the model as application ``llm`` at the proxy's root and wait until it is running.

    Either ``autoscaling_config`` (Ray Serve's keys: min_replicas, max_replicas,
    target_ongoing_requests, upscale_delay_s, ...) or a fixed ``num_replicas``.
    """
    from ray import serve
    deployment = _deployment_class(str(model_dir), model_name, str(cluster.workdir / "replicas"))
    options = dict(max_ongoing_requests=max_ongoing_requests, health_check_period_s=health_check_period_s,
                   health_check_timeout_s=10, ray_actor_options={"num_cpus": 1})
    if autoscaling_config is not None:
        options["autoscaling_config"] = autoscaling_config
    else:
        options["num_replicas"] = num_replicas or 1
    serve.run(deployment.options(**options).bind(), name=APP, route_prefix="/", blocking=False)
    deadline = time.monotonic() + 300
    while replica_states().get("RUNNING", 0) < (autoscaling_config or {}).get("min_replicas", num_replicas or 1):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Ray Serve did not start the replicas within 300 s: {replica_states()}")
        time.sleep(0.25)


def replica_states() -> dict[str, int]:
    """How many replicas of the deployment are in each state (RUNNING, STARTING, STOPPING, ...)."""
    from ray import serve
    app = serve.status().applications.get(APP)
    if app is None or DEPLOYMENT not in app.deployments:
        return {}
    return {str(getattr(state, "value", state)): n for state, n in app.deployments[DEPLOYMENT].replica_states.items()}


def sample_replicas(interval: float = 0.5):
    """Sample replica_states() every ``interval`` s while a ``with`` block runs; yields the list of rows
    {"t": s since the block started, "RUNNING": n, "STARTING": n, ...}."""

    def states():
        with contextlib.suppress(Exception):     # the controller busy for a moment: an empty row, not an end
            return replica_states()
        return {}
    return sample(states, interval, "inferlab-replicas")


def _keep_replica_grpc_on_loopback() -> None:
    """Ray Serve 2.60 opens each replica's inter-deployment gRPC port on every interface ("[::]:0",
    ray/serve/_private/replica.py); this runs in the replica before that happens and keeps it on 127.0.0.1."""
    from ray.serve._private import replica as replica_module
    original = replica_module.add_port_to_grpc_server
    if getattr(original, "inferlab_loopback", False):
        return

    def on_loopback(server, address):
        return original(server, address.replace("[::]", HOST).replace("0.0.0.0", HOST))
    on_loopback.inferlab_loopback = True
    replica_module.add_port_to_grpc_server = on_loopback


def _deployment_class(model_dir: str, model_name: str, pid_dir: str):
    """The Ray Serve deployment: FastAPI routes /v1/models and /v1/completions (streamed, OpenAI's format)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from ray import serve

    api = FastAPI()

    @serve.deployment(name=DEPLOYMENT)
    @serve.ingress(api)
    class Replica:
        def __init__(self):
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            _keep_replica_grpc_on_loopback()
            torch.set_num_threads(1)
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
            Path(pid_dir, str(os.getpid())).touch()

        @api.get("/v1/models")
        def models(self):
            return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

        @api.post("/v1/completions")
        async def completions(self, request: Request):
            from inferlab.scaling.streaming import completion_events
            body = await request.json()
            return StreamingResponse(completion_events(self.model, self.tokenizer, model_name, body),
                                     media_type="text/event-stream")

    return Replica
