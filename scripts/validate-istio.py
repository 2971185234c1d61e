#!/usr/bin/env python3
"""Validates Istio manifests against a CRD's openAPIV3Schema, strictly.

Kubernetes prunes unknown fields silently, so a typo in a WasmPlugin would be dropped, not
refused. Here every object schema that lists its properties (and does not preserve unknown
fields) rejects any other property, as `kubectl apply --validate=strict` does.

usage: validate-istio.py CRD.yaml MANIFEST.yaml...
"""
import sys

import jsonschema
import yaml


def strict(schema):
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def schemas(crd_path):
    with open(crd_path) as f:
        crd = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "CustomResourceDefinition")
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    return {
        (f"{group}/{v['name']}", kind): strict(v["schema"]["openAPIV3Schema"])
        for v in crd["spec"]["versions"]
    }


def main(crd_path, manifests):
    known = schemas(crd_path)
    failures = 0
    for path in manifests:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        for doc in documents:
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in known:
                continue
            # apiVersion, kind and metadata belong to every object; the CRD schema covers the rest.
            body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
            errors = sorted(jsonschema.Draft7Validator(known[key]).iter_errors(body), key=lambda e: list(e.path))
            name = doc.get("metadata", {}).get("name", "?")
            if errors:
                failures += 1
                for e in errors:
                    where = ".".join(str(p) for p in e.path) or "(document)"
                    print(f"{path}: {key[1]} {name}: {where}: {e.message}")
            else:
                print(f"{path}: {key[1]} {name}: valid against {key[0]}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
