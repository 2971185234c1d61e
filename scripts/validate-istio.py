#!/usr/bin/env python3
"""Validates Kubernetes manifests as the API server would, before anything is applied.

- Istio's kinds: against their CustomResourceDefinition's openAPIV3Schema, strictly, and every
  CEL rule of the schema (`x-kubernetes-validations`), evaluated with cel-python where the rule
  is declared, `self` being the value there.
- Kubernetes' own kinds (Deployment, Service, Secret, ...): against the API's published
  schemas (kubernetes-validate), strictly.
- Any other kind is an error: nothing passes unchecked.

Kubernetes prunes unknown fields silently, so a typo in a WasmPlugin would be dropped, not
refused. Here every object schema that lists its properties (and does not preserve unknown
fields) rejects any other property, as `kubectl apply --validate=strict` does.

The Kubernetes CEL library functions Istio's rules use and cel-python lacks (url, isURL,
getScheme, substring) are given here; transition rules (oldSelf) apply only to updates and are
skipped.

usage: validate-istio.py CRDS.yaml MANIFEST.yaml...
       validate-istio.py --expect-invalid CRDS.yaml MANIFEST.yaml...
         (each manifest must be refused, with every `# expect: TEXT` line of the file in what is
         said: the checks themselves are checked)
"""
import re
import sys
from urllib.parse import urlparse

import celpy
import jsonschema
import kubernetes_validate
import yaml

# The Kubernetes release whose API schemas core objects are checked against.
KUBERNETES = "1.33.0"
CORE_GROUPS = ("v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "rbac.authorization.k8s.io/v1")


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


def crd_schemas(path):
    """(apiVersion, kind) -> openAPIV3Schema, for every CRD in the file."""
    known = {}
    with open(path) as f:
        for crd in yaml.safe_load_all(f):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                known[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return known


class Url:
    def __init__(self, text):
        self.parsed = urlparse(text)


def is_url(value):
    try:
        parsed = urlparse(str(value))
    except ValueError:
        return celpy.celtypes.BoolType(False)
    return celpy.celtypes.BoolType(bool(parsed.scheme) or str(value).startswith("/"))


def url(value):
    if not is_url(value):
        raise ValueError(f"url({value!r}): not a URL")
    return Url(str(value))


def substring(value, start, end=None):
    text = str(value)
    return celpy.celtypes.StringType(text[int(start):] if end is None else text[int(start):int(end)])


# Kubernetes' CEL library, as far as Istio's rules use it.
KUBERNETES_FUNCTIONS = {
    "url": url,
    "isURL": is_url,
    "getScheme": lambda u: celpy.celtypes.StringType(u.parsed.scheme),
    "substring": substring,
}

_environment = celpy.Environment()
_programs = {}


def cel_rule_holds(rule, value):
    program = _programs.get(rule)
    if program is None:
        program = _environment.program(_environment.compile(rule), functions=KUBERNETES_FUNCTIONS)
        _programs[rule] = program
    result = program.evaluate({"self": celpy.json_to_cel(value)})
    if isinstance(result, Exception):
        raise result
    return bool(result)


def cel_errors(schema, value, path):
    """Every CEL rule along the value's path that does not hold, as (path, message)."""
    if not isinstance(schema, dict):
        return
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        if "oldSelf" in rule:
            continue
        try:
            holds = cel_rule_holds(rule, value)
        except Exception as e:  # a rule that cannot be evaluated on this value fails, as in the API server
            yield path, f"{validation.get('message', rule)} (rule {rule!r}: {e})"
            continue
        if not holds:
            yield path, validation.get("message", f"rule {rule!r} does not hold")
    if isinstance(value, dict):
        for key, item in value.items():
            if key in schema.get("properties", {}):
                yield from cel_errors(schema["properties"][key], item, path + [key])
            elif isinstance(schema.get("additionalProperties"), dict):
                yield from cel_errors(schema["additionalProperties"], item, path + [key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from cel_errors(schema["items"], item, path + [index])


def check_custom(schema, doc):
    # apiVersion, kind and metadata belong to every object; the CRD schema covers the rest.
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    problems = [
        (list(e.path), e.message)
        for e in jsonschema.Draft7Validator(schema).iter_errors(body)
    ]
    if not problems:
        problems = list(cel_errors(schema, body, []))
    return problems


METADATA_FIELDS = {"name", "namespace", "labels", "annotations"}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def metadata_problems(metadata):
    """A custom resource's metadata, as the API server takes it from a manifest (the rest of
    ObjectMeta is the server's to set)."""
    problems = [(["metadata", k], f"'{k}' is not a field a manifest sets") for k in metadata if k not in METADATA_FIELDS]
    for field in ("name", "namespace"):
        value = metadata.get(field)
        if not isinstance(value, str) or len(value) > 253 or not DNS_SUBDOMAIN.match(value):
            problems.append((["metadata", field], f"{value!r} is not a DNS subdomain name"))
    for field in ("labels", "annotations"):
        if not isinstance(metadata.get(field, {}), dict):
            problems.append((["metadata", field], "must be a map of strings"))
        elif any(not isinstance(v, str) for v in metadata.get(field, {}).values()):
            problems.append((["metadata", field], "values must be strings"))
    return problems


def check_core(doc):
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [(list(e.path), e.message)]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        return [([], f"no Kubernetes {KUBERNETES} schema: {e}")]
    return []


def check_file(path, known):
    """(number of documents refused, the lines said)."""
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    failures, said = 0, []
    for doc in documents:
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            failures += 1
            said.append(f"{path}: a document that is not an object with metadata: {str(doc)[:80]}")
            continue
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = doc["metadata"].get("name", "?")
        if not doc["metadata"].get("namespace") and key[1] != "Namespace":
            problems = [(["metadata"], "no namespace: every manifest here says where it goes")]
        elif key in known and metadata_problems(doc["metadata"]):
            problems = metadata_problems(doc["metadata"])
        elif key in known:
            problems = check_custom(known[key], doc)
            against = f"{key[0]} (schema and CEL rules)"
        elif key[0] in CORE_GROUPS:
            problems = check_core(doc)
            against = f"Kubernetes {KUBERNETES} {key[0]}"
        else:
            problems = [([], f"{key[0]} {key[1]} is neither an Istio CRD here nor a Kubernetes kind")]
        if problems:
            failures += 1
            for where, message in problems:
                where = ".".join(str(p) for p in where) or "(document)"
                said.append(f"{path}: {key[1]} {name}: {where}: {message}")
        else:
            said.append(f"{path}: {key[1]} {name}: valid against {against}")
    return failures, said


def main(crd_path, manifests, expect_invalid):
    known = crd_schemas(crd_path)
    for schema in known.values():
        strict(schema)
    wrong = 0
    for path in manifests:
        failures, said = check_file(path, known)
        if not expect_invalid:
            print("\n".join(said))
            wrong += failures
            continue
        with open(path) as f:
            expected = [line.split("expect:", 1)[1].strip() for line in f if line.startswith("# expect:")]
        text = "\n".join(said)
        missing = [e for e in expected if e not in text]
        if failures and expected and not missing:
            print(f"{path}: refused, as expected ({expected[0]})")
        else:
            wrong += 1
            print(f"{path}: expected a refusal saying {missing or expected or '(no # expect: line)'}; said:\n{text}")
    return 1 if wrong else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    expect_invalid = bool(args) and args[0] == "--expect-invalid"
    if expect_invalid:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    sys.exit(main(args[0], args[1:], expect_invalid))
