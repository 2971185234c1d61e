#!/usr/bin/env python3
"""Puts each Istio EnvoyFilter's Wasm filters in a bootstrap and gives it to `envoy --mode validate`.

Envoy validates a bootstrap, not an EnvoyFilter: this builds one with the EnvoyFilter's Wasm
filters in one HTTP connection manager, in the order its HTTP_FILTER patches insert them (and
the clusters and listeners it adds), with the code replaced by the locally built module. The
header-flag and policy checks of the same manifests are `wardenctl validate --envoy`.

usage: validate-envoyfilter.py --envoy ENVOY [--envoy ENVOY]... FILE...
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import yaml

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


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




def local_extension(extension, wasm_dir):
    """A copy of an EXTENSION_CONFIG's value with its module the locally built one."""
    ext = yaml.safe_load(yaml.safe_dump(extension))
    config = ext["typed_config"]["config"]
    module = module_file(config, config.get("root_id") or ext["name"])
    config["vm_config"]["code"] = {"local": {"filename": os.path.join(wasm_dir, module + ".wasm")}}
    return ext


def inline_discovered(node, extensions, wasm_dir):
    """Replaces every filter loaded by `config_discovery` under `node` with its EXTENSION_CONFIG."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "http_filters" and isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, dict) and "config_discovery" in item:
                        if item.get("name") not in extensions:
                            raise ValueError(f"filter {item.get('name')} has no EXTENSION_CONFIG")
                        value[i] = local_extension(extensions[item["name"]], wasm_dir)
            inline_discovered(value, extensions, wasm_dir)
    elif isinstance(node, list):
        for item in node:
            inline_discovered(item, extensions, wasm_dir)


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
        filters.append(local_extension(extensions[name], wasm_dir))
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
    # Clusters and listeners the EnvoyFilter adds (the router's providers hop). A Wasm filter in
    # them must come over ECDS (`config_discovery` naming an EXTENSION_CONFIG): Istio's agent
    # fetches an `oci://` module only for ECDS resources, and Envoy would refuse the URL inline.
    # For validation the EXTENSION_CONFIG is put in place, with the locally built module.
    added = {"CLUSTER": [], "LISTENER": []}
    for p in patches:
        if p.get("applyTo") in added and (p.get("patch") or {}).get("operation") == "ADD":
            value = yaml.safe_load(yaml.safe_dump(p["patch"]["value"]))
            for config in wasm_configs(value):
                if "remote" in ((config.get("vm_config") or {}).get("code") or {}):
                    raise ValueError(
                        f"{p['applyTo']} {value.get('name')}: Wasm filter {config.get('name')} has remote code inline; "
                        "deliver it over ECDS (an EXTENSION_CONFIG and config_discovery)")
            inline_discovered(value, extensions, wasm_dir)
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
    parser.add_argument("--envoy", action="append", required=True, help="an Envoy binary to validate EnvoyFilters with")
    parser.add_argument("--wasm-dir", default="target/wasm32-wasip1/release")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    errors = []
    for path in args.files:
        with open(path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        for doc in documents:
            if doc.get("kind") == "EnvoyFilter" and list(wasm_configs(doc)):
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
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
