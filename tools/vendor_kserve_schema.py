"""Vendor KServe's InferenceService schema: the CRD's v1beta1 openAPIV3Schema, descriptions dropped.

    python tools/vendor_kserve_schema.py serving.kserve.io_inferenceservices.yaml v0.20.0 <commit>

The input is `config/crd/full/serving.kserve.io_inferenceservices.yaml` from github.com/kserve/kserve
at the given tag. The output (gzip'd JSON, sorted keys, so a re-run with the same input is
byte-identical) and its provenance go to inferlab/data/kserve/. Descriptions are 60% of the file and
play no part in validation.
"""
import gzip
import json
import sys
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parents[1] / "inferlab" / "data" / "kserve"


def without_descriptions(node):
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def main(crd_path: str, tag: str, commit: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = without_descriptions(version["schema"]["openAPIV3Schema"])
    body = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    OUT.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same schema always gives the same bytes
    (OUT / "inferenceservice-v1beta1.schema.json.gz").write_bytes(gzip.compress(body, mtime=0))
    (OUT / "source.json").write_text(json.dumps({
        "project": "KServe", "license": "Apache-2.0", "tag": tag, "commit": commit,
        "file": "config/crd/full/serving.kserve.io_inferenceservices.yaml",
        "url": f"https://github.com/kserve/kserve/blob/{commit}/config/crd/full/serving.kserve.io_inferenceservices.yaml",
        "crd": crd["metadata"]["name"], "version": "v1beta1",
        "controller_gen": crd["metadata"].get("annotations", {}).get("controller-gen.kubebuilder.io/version"),
        "changes": "descriptions removed; nothing else",
    }, indent=2) + "\n")
    print(f"wrote {OUT} ({len(body):,} bytes of schema)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python tools/vendor_kserve_schema.py CRD.yaml TAG COMMIT")
    main(*sys.argv[1:])
