#!/usr/bin/env bash
# The support agent: Warden's whole chain (envoy/warden.yaml with policy.yaml) in front of the
# shop's orders MCP server (the official Python SDK), four mock model providers (two accounts of
# an OpenAI-shaped one, an Anthropic one, our own), Warden's rate-limit service and Redis.
#
#   examples/support-agent/run.sh          start, print what to try, run until Ctrl-C
#   examples/support-agent/run.sh --demo   start, run agent.py through one ticket, print the
#                                          session's audit (wardenctl audit), stop  (make demo)
#
# Ports: 10000 agents, 9900 Envoy admin, 18120 orders MCP server, 18101-18104 model providers,
# 18094 rate-limit service, 18095 Redis. WARDEN_PORT_BASE=N moves them all to N, N+1, … (tests).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
source examples/common.sh
HERE=examples/support-agent
if [ -n "${WARDEN_PORT_BASE:-}" ]; then
  read -r AGENTS ADMIN ORDERS OPENAI BACKUP ANTHROPIC LOCAL RATELIMIT REDIS OTEL \
    <<<"$(seq "$WARDEN_PORT_BASE" $((WARDEN_PORT_BASE + 9)) | tr '\n' ' ')"
else
  AGENTS=10000 ADMIN=9900 ORDERS=18120 OPENAI=18101 BACKUP=18102 ANTHROPIC=18103 LOCAL=18104
  RATELIMIT=18094 REDIS=18095 OTEL=18097
fi
require_free_ports "$AGENTS" "$ADMIN" "$ORDERS" "$OPENAI" "$BACKUP" "$ANTHROPIC" "$LOCAL" "$RATELIMIT" "$REDIS"

echo "\$ wardenctl validate $HERE/policy.yaml"
target/debug/wardenctl validate "$HERE/policy.yaml"
.venv/py/bin/python "$HERE/envoy_config.py" --policy "$HERE/policy.yaml" --out "$LOGS/envoy.json" \
  --listen "$AGENTS" --admin "$ADMIN" --orders "$ORDERS" --openai "$OPENAI" --backup "$BACKUP" \
  --anthropic "$ANTHROPIC" --local "$LOCAL" --ratelimit "$RATELIMIT" --otel "$OTEL"

start_ratelimit "$RATELIMIT" "$REDIS"
# The mock providers repeat what they read (so the transcript shows what left the gateway) and
# bill 300 output tokens an answer, as a real model writing a reply would.
"$DEV" serve-providers --openai-port "$OPENAI" --backup-port "$BACKUP" --anthropic-port "$ANTHROPIC" \
  --local-port "$LOCAL" --echo --output-tokens 300 >"$LOGS/providers.log" 2>&1 &
.venv/py/bin/python "$HERE/orders_server.py" --port "$ORDERS" >"$LOGS/orders.log" 2>&1 &
wait_port "$RATELIMIT" "the rate-limit service" "$LOGS/ratelimit.log"
for port in "$OPENAI" "$BACKUP" "$ANTHROPIC" "$LOCAL"; do
  wait_port "$port" "a mock provider" "$LOGS/providers.log"
done
wait_port "$ORDERS" "the orders MCP server" "$LOGS/orders.log"
start_envoy "$LOGS/envoy.json" "$ADMIN"

# The token of the user the agent acts for, as the shop's identity provider would issue it.
USER_TOKEN=$("$DEV" token --sub ann@acme.test --tenant acme --user --key ec)
SESSION=ticket-4711
GATEWAY=http://127.0.0.1:$AGENTS

if [ "$MODE" != "--demo" ]; then
  cat <<TXT
Envoy $VERSION with Warden's chain and the support agent's policy is listening on $GATEWAY.
The agent's key: wk-support-4e9b2c7a1f6d3085; a user token for ann@acme.test:
  $USER_TOKEN

Try:
  .venv/py/bin/python $HERE/agent.py --gateway $GATEWAY --session ticket-1 --user-token $USER_TOKEN --approver $DEV
  target/debug/wardenctl audit --session ticket-1 $LOGS/audit.log

Audit log: $LOGS/audit.log    Envoy log: $LOGS/envoy.log
Ctrl-C stops everything.
TXT
  wait
  exit 0
fi

echo "Envoy $VERSION + Warden's chain (identity -> tool-acl -> redaction -> token-budget -> router) on $GATEWAY"
.venv/py/bin/python "$HERE/agent.py" --gateway "$GATEWAY" --session "$SESSION" --user-token "$USER_TOKEN" --approver "$DEV"

sleep 0.3 # the access log is flushed every 100 ms
echo
echo "### The ticket's story, from the audit log"
echo "\$ wardenctl audit --session $SESSION audit.log"
target/debug/wardenctl audit --session "$SESSION" "$LOGS/audit.log"
