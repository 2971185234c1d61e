"""Writes the support agent's Envoy config: envoy/warden.yaml (the chain, its audit log, the
router's providers' hop) with this example's policy in every Warden filter and its own upstreams
(the orders MCP server, four mock providers), on the given ports. One chain config to maintain,
not two.

    envoy_config.py --policy policy.yaml --out envoy.json --listen 10000 --admin 9900 \
        --orders 18120 --openai 18101 --backup 18102 --anthropic 18103 --local 18104 \
        --ratelimit 18094 --otel 18097
"""

import argparse
import json

import yaml

STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


def set_policy(node, policy):
    """Every Warden filter's configuration (a StringValue) becomes `policy`."""
    if isinstance(node, dict):
        config = node.get("configuration")
        if isinstance(config, dict) and config.get("@type") == STRING_VALUE:
            node["configuration"] = {"@type": STRING_VALUE, "value": policy}
        for value in node.values():
            set_policy(value, policy)
    elif isinstance(node, list):
        for value in node:
            set_policy(value, policy)


def static_cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def set_port(cluster, port):
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = port


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", default="envoy/warden.yaml")
    parser.add_argument("--policy", required=True)
    parser.add_argument("--out", required=True)
    for port in ["listen", "admin", "orders", "openai", "backup", "anthropic", "local", "ratelimit", "otel"]:
        parser.add_argument(f"--{port}", type=int, required=True)
    args = parser.parse_args()

    with open(args.chain) as f:
        config = yaml.safe_load(f)
    with open(args.policy) as f:
        policy = f.read()
    # YAML aliases (the chain's one vm_config and policy) load as shared objects: copy first.
    config = json.loads(json.dumps(config))
    set_policy(config, policy)

    config["admin"]["address"]["socket_address"]["port_value"] = args.admin
    (agents,) = [l for l in config["static_resources"]["listeners"] if l["name"] == "agents"]
    agents["address"]["socket_address"]["port_value"] = args.listen
    manager = agents["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]
    (mcp,) = [r for r in routes if r["name"] == "mcp-files"]
    mcp.update(name="mcp-orders", match={"prefix": "/mcp/orders"}, route={"cluster": "mcp_orders", "timeout": "0s"})

    clusters = config["static_resources"]["clusters"]
    kept = [c for c in clusters if c["name"] in ("warden_providers", "otel", "ratelimit")]
    for cluster in kept:
        if cluster["name"] in ("otel", "ratelimit"):
            set_port(cluster, getattr(args, cluster["name"]))
    for name, port in [
        ("mcp_orders", args.orders),
        ("llm_openai", args.openai),
        ("llm_backup", args.backup),
        ("llm_anthropic", args.anthropic),
        ("llm_local", args.local),
    ]:
        kept.append(static_cluster(name, port))
    config["static_resources"]["clusters"] = kept

    with open(args.out, "w") as f:
        json.dump(config, f, indent=1)


if __name__ == "__main__":
    main()
