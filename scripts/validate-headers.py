#!/usr/bin/env python3
"""Refuses a configuration in which a body-reading Warden filter would hang every request.

A body-reading filter (tool-acl, token-budget, the router, and later redaction) holds the request
headers while it reads the body, unless its policy says `requestHeaders: release`. Envoy lets a
Wasm filter do that only when its PluginConfig sets `allow_on_headers_stop_iteration: true`
(Envoy >= 1.35); without it no body ever reaches the filter and the request hangs. Envoy cannot
see the policy, so it cannot refuse such a config itself: this check does.

It reads Envoy configs (every Wasm filter in them), Istio `WasmPlugin`s (which cannot set the
flag: a body-reading one must release the headers) and Istio `EnvoyFilter`s (whose
EXTENSION_CONFIG patches can). With `--envoy`, each EnvoyFilter's Wasm filters are also put in
a bootstrap, in the order its HTTP_FILTER patches insert them, with the code replaced by the
locally built module, and given to `envoy --mode validate`.

usage: validate-headers.py [--envoy ENVOY]... FILE...
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import yaml

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
# Filters that read request bodies, by root id; the module file and image name follow from it.
BODY_READING = ("warden.tool_acl", "warden.token_budget", "warden.redaction", "warden.router")


def module_name(root_id):
    if root_id == "warden.router_attempt":
        return "warden_router"  # the router's module runs both of its plugins
    return root_id.replace(".", "_")  # warden.tool_acl -> warden_tool_acl(.wasm)


def module_file(config, root_id):
    """The local module a config's code stands for: the whole chain's (`warden` image, or
    warden.wasm) or the filter's own."""
    code = (config.get("vm_config") or {}).get("code") or {}
    source = str(((code.get("local") or {}).get("filename")) or "")
    source += str((((code.get("remote") or {}).get("http_uri")) or {}).get("uri") or "")
    if re.search(r"/warden[:@]|(^|/)warden\.wasm$", source):
        return "warden"
    return module_name(root_id)


def body_reading(config):
    """The body-reading filter a Wasm PluginConfig runs, if any: its root id, name, module file
    or image names one (`tool_acl`, `tool-acl`, ...), however the name is decorated
    (`warden-tool-acl`, `tool-acl@sha256:...`). Unsure is treated as body-reading."""
    # The router's attempt filter runs upstream, once per attempt, and never holds headers.
    if config.get("root_id") == "warden.router_attempt":
        return None
    names = [config.get("root_id") or "", config.get("name") or ""]
    code = (config.get("vm_config") or {}).get("code") or {}
    names.append(str(((code.get("local") or {}).get("filename")) or ""))
    names.append(str((((code.get("remote") or {}).get("http_uri")) or {}).get("uri") or ""))
    text = " ".join(names).lower().replace("-", "_")
    for root_id in BODY_READING:
        if root_id.split(".", 1)[1] in text:
            return root_id
    # A Warden module this check cannot name (inline bytes, a renamed file): assume it reads
    # bodies, so a config that would hang is never let through.
    if "warden" in text and "identity" not in text:
        return "warden (unnamed module)"
    return None


def policy_of(config):
    value = (config.get("configuration") or {}).get("value")
    if value is None:
        return {}
    policy = yaml.safe_load(value) if isinstance(value, str) else value
    return policy if isinstance(policy, dict) else {}


def holds_headers(policy):
    return policy.get("requestHeaders", "hold") == "hold"


def wasm_configs(node):
    """Every Wasm filter config (the `config` of an envoy.filters.http.wasm) under `node`."""
    if isinstance(node, dict):
        if node.get("@type") == WASM_TYPE and isinstance(node.get("config"), dict):
            yield node["config"]
        for value in node.values():
            yield from wasm_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from wasm_configs(value)


def check_wasm(where, config):
    root_id = body_reading(config)
    if root_id and holds_headers(policy_of(config)) and config.get("allow_on_headers_stop_iteration") is not True:
        return [
            f"{where}: {config.get('name') or root_id}: the policy holds the request headers (requestHeaders: hold, "
            "the default) but the Wasm PluginConfig does not set allow_on_headers_stop_iteration: true (Envoy >= 1.35): "
            "every request would hang. Set the flag, or requestHeaders: release in the policy"
        ]
    return []


def check_wasm_plugin(where, doc):
    spec = doc.get("spec") or {}
    config = {"root_id": spec.get("pluginName"), "vm_config": {"code": {"remote": {"http_uri": {"uri": spec.get("url")}}}}}
    root_id = body_reading(config)
    policy = spec.get("pluginConfig") or {}
    if root_id and holds_headers(policy):
        return [
            f"{where}: WasmPlugin {doc.get('metadata', {}).get('name')}: the policy holds the request headers "
            "(requestHeaders: hold, the default), and a WasmPlugin cannot set allow_on_headers_stop_iteration: every "
            "request would hang. Use an EnvoyFilter (examples/istio/warden-envoyfilter.yaml), or requestHeaders: release"
        ]
    return []


def envoy_filter_bootstrap(doc, wasm_dir):
    """A bootstrap with the EnvoyFilter's Wasm filters in one HTTP connection manager."""
    patches = (doc.get("spec") or {}).get("configPatches") or []
    extensions = {}
    for p in patches:
        if p.get("applyTo") == "EXTENSION_CONFIG":
            value = p["patch"]["value"]
            extensions[value["name"]] = value
    filters = []
    for p in patches:
        if p.get("applyTo") != "HTTP_FILTER":
            continue
        name = p["patch"]["value"]["name"]
        if name not in extensions:
            raise ValueError(f"HTTP_FILTER {name} has no EXTENSION_CONFIG")
        ext = yaml.safe_load(yaml.safe_dump(extensions[name]))
        config = ext["typed_config"]["config"]
        root_id = config.get("root_id") or name
        module = module_file(config, root_id)
        config["vm_config"]["code"] = {"local": {"filename": os.path.join(wasm_dir, module + ".wasm")}}
        filters.append(ext)
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "validate",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": []}]},
        "http_filters": filters + [router],
    }
    listener = {
        "name": "validate",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }
    # Clusters and listeners the EnvoyFilter adds (the router's providers hop), with any Wasm
    # code in them replaced by the locally built module too.
    added = {"CLUSTER": [], "LISTENER": []}
    for p in patches:
        if p.get("applyTo") in added and (p.get("patch") or {}).get("operation") == "ADD":
            value = yaml.safe_load(yaml.safe_dump(p["patch"]["value"]))
            for config in wasm_configs(value):
                module = module_file(config, config.get("root_id") or "")
                config["vm_config"]["code"] = {"local": {"filename": os.path.join(wasm_dir, module + ".wasm")}}
            added[p["applyTo"]].append(value)
    bootstrap = {"static_resources": {"listeners": [listener] + added["LISTENER"], "clusters": added["CLUSTER"]}}
    if any("internal_listener" in l for l in added["LISTENER"]):
        bootstrap["bootstrap_extensions"] = [{
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"},
        }]
    return bootstrap


def host_env_keys(node):
    """Every environment variable a Wasm VM in `node` is given (its `host_env_keys`)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "host_env_keys":
                yield from value
            else:
                yield from host_env_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from host_env_keys(item)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--envoy", action="append", default=[], help="an Envoy binary to validate EnvoyFilters with")
    parser.add_argument("--wasm-dir", default="target/wasm32-wasip1/release")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    errors = []
    for path in args.files:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        for doc in documents:
            kind = doc.get("kind")
            if kind == "WasmPlugin":
                errors += check_wasm_plugin(path, doc)
                continue
            configs = list(wasm_configs(doc))
            for config in configs:
                errors += check_wasm(path, config)
            if kind == "EnvoyFilter" and configs:
                bootstrap = envoy_filter_bootstrap(doc, args.wasm_dir)
                with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as out:
                    yaml.safe_dump(bootstrap, out)
                for envoy in args.envoy:
                    # Variables the VMs read from the proxy's environment (provider keys) get a
                    # stand-in: validation checks the configuration, not the secret.
                    env = dict(os.environ, **{k: "validate-only" for k in host_env_keys(doc)})
                    run = subprocess.run(
                        [envoy, "--mode", "validate", "--log-level", "error", "-c", out.name],
                        capture_output=True,
                        text=True,
                        env=env,
                    )
                    name = doc.get("metadata", {}).get("name")
                    if run.returncode != 0:
                        errors.append(f"{path}: EnvoyFilter {name}: {envoy} --mode validate: {run.stdout}{run.stderr}")
                    else:
                        print(f"{path}: EnvoyFilter {name}: its Wasm filters pass {envoy} --mode validate")
                os.unlink(out.name)
        if not any(e.startswith(path + ":") for e in errors):
            print(f"{path}: request headers: every body-reading filter can hold them, or releases them")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
