"""KServe InferenceService manifests, checked against KServe's own CRD schema.

The schema is the v1beta1 ``openAPIV3Schema`` of KServe's CRD, vendored with its tag and commit
(``inferlab/data/kserve/source.json``; regenerate with ``tools/vendor_kserve_schema.py``). On top of
it, what the Kubernetes API server checks before the schema: ``apiVersion`` and ``kind`` must name
the resource, ``metadata.name`` must be a DNS-1035 label (KServe's webhook rule), and -- as
``kubectl apply`` does with its default strict field validation -- an unknown field is an error,
not silently dropped. Error messages are jsonschema's own, prefixed with the field's path.
"""
from __future__ import annotations

import copy
import functools
import gzip
import json
from importlib import resources

import jsonschema

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ManifestError(ValueError):
    """A manifest the API server would refuse; the message names the field and the schema's reason."""


def schema_source() -> dict:
    """Where the vendored schema came from: project, tag, commit, file, url, license."""
    return json.loads(resources.files("inferlab").joinpath("data/kserve/source.json").read_text())


@functools.cache
def crd_schema() -> dict:
    """KServe's InferenceService v1beta1 schema, exactly as vendored (descriptions removed)."""
    raw = resources.files("inferlab").joinpath("data/kserve/inferenceservice-v1beta1.schema.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))


def _closed(node):
    """Copy of a structural schema in which objects with declared properties reject unknown ones."""
    if isinstance(node, list):
        return [_closed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _closed(v) for k, v in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    schema = _closed(copy.deepcopy(crd_schema()))
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    schema["properties"]["apiVersion"] = {"const": API_VERSION}
    schema["properties"]["kind"] = {"const": KIND}
    schema["properties"]["metadata"] = {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string", "maxLength": 63, "pattern": DNS_1035_LABEL}}}
    return jsonschema.Draft7Validator(schema)


def _where(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(manifest)"


def manifest_errors(manifest: dict) -> list[str]:
    """Every reason the API server would refuse this InferenceService, as 'field.path: message'."""
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_where(e)}: {e.message}" for e in errors]


def validate_manifest(manifest: dict) -> None:
    """Raise ManifestError with the first reason (and how many more) if the manifest is invalid."""
    errors = manifest_errors(manifest)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ManifestError(f"InferenceService rejected: {errors[0]}{more}")


def inference_service(name: str, model_id: str, *, cpu: str = "2", memory: str = "4Gi", gpus: int = 0,
                      min_replicas: int = 1, max_replicas: int = 1, target_concurrency: int = 4,
                      max_model_len: int | None = None) -> dict:
    """An InferenceService for a hub model on KServe's Hugging Face runtime (vLLM backend).

    Requests equal limits (a guaranteed pod: the engine sizes its KV cache from what it was given);
    autoscaling on in-flight requests per replica (KServe's ``concurrency`` metric).
    """
    resources_ = {"cpu": cpu, "memory": memory}
    if gpus:
        resources_["nvidia.com/gpu"] = str(gpus)
    args = [f"--model_name={name}", f"--model_id={model_id}", "--backend=vllm"]
    if max_model_len:
        args.append(f"--max_model_len={max_model_len}")
    return {
        "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name},
        "spec": {"predictor": {
            "minReplicas": min_replicas, "maxReplicas": max_replicas,
            "scaleMetric": "concurrency", "scaleTarget": target_concurrency,
            "model": {"modelFormat": {"name": "huggingface"}, "args": args,
                      "resources": {"requests": dict(resources_), "limits": dict(resources_)}},
        }},
    }
