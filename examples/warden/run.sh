#!/usr/bin/env bash
# Warden's whole chain on 127.0.0.1 (envoy/warden.yaml: identity -> tool-acl -> token-budget ->
# router) with examples/warden/policy.yaml, in front of an MCP file server (the official rmcp
# SDK), two mock model providers that bill like real ones (the second serves the cheaper model),
# Warden's rate-limit service and Redis.
#
#   examples/warden/run.sh          start, print what to try, run until Ctrl-C   (make run)
#   examples/warden/run.sh --demo   start, walk one agent session through, stop  (make demo)
#
# Ports: 10000 agents, 9900 Envoy admin, 18090 MCP server, 18091 and 18096 model providers,
# 18094 rate-limit service, 18095 Redis.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
source examples/common.sh
require_free_ports 10000 9900 18090 18091 18096 18094 18095
"$DEV" serve-chain --mcp-port 18090 --provider-port 18091 --mini-port 18096 >"$LOGS/dev.log" 2>&1 &
start_ratelimit 18094 18095
start_envoy envoy/warden.yaml 9900

PLANNER=wk-planner-7f3a9c1e5b2d4068
BASE=http://127.0.0.1:10000
SESSION=demo-session-1

if [ "$MODE" != "--demo" ]; then
  cat <<TXT
Envoy $VERSION with Warden's chain (identity -> tool-acl -> token-budget -> router) is listening on 127.0.0.1:10000.
Demo agents (API keys): planner $PLANNER, admin-bot wk-admin-2b8e6d4a1c9f3057,
globex-agent wk-globex-5d1c8a3f7e2b9046. Each SDK keeps its own way of sending the key.

Try:
  # OpenAI's API: the key as a Bearer token (what the OpenAI SDKs send)
  curl -s $BASE/v1/chat/completions -H "authorization: Bearer $PLANNER" -H 'x-agent-session: s1' \\
       -H 'content-type: application/json' -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
  # Anthropic's API: the key in x-api-key
  curl -s $BASE/v1/messages -H "x-api-key: $PLANNER" -H 'anthropic-version: 2023-06-01' -H 'x-agent-session: s1' \\
       -H 'content-type: application/json' -d '{"model":"claude-sonnet-4","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
  # MCP: tools/list, and a call the policy refuses
  curl -s $BASE/mcp/files -H "x-api-key: $PLANNER" -H 'x-agent-session: s1' -H 'content-type: application/json' \\
       -H 'accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
  curl -s $BASE/mcp/files -H "x-api-key: $PLANNER" -H 'x-agent-session: s1' -H 'content-type: application/json' \\
       -H 'accept: application/json, text/event-stream' \\
       -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/shadow"}}}'
  curl -s http://127.0.0.1:9900/stats | grep wasmcustom.warden

Audit log: $LOGS/audit.log    Envoy log: $LOGS/envoy.log
Ctrl-C stops everything.
TXT
  wait
  exit 0
fi

# One request through the chain; prints the command, the status and a short form of the answer.
send() {
  local title=$1
  shift
  echo
  echo "### $title"
  python3 -c 'import shlex, sys; print("$ curl " + shlex.join(sys.argv[1:]))' "$@" | sed -e "s/$PLANNER/\$PLANNER/g"
  curl -sS -o "$LOGS/body" -w 'HTTP %{http_code}\n' "$@"
  python3 - "$LOGS/body" <<'PY'
import json, sys
try:
    answer = json.load(open(sys.argv[1]))
except ValueError:
    print(open(sys.argv[1]).read()[:400]); sys.exit()
result = answer.get("result", {}) if isinstance(answer, dict) else {}
if "tools" in result:
    print("tools listed:", [t["name"] for t in result["tools"]])
elif "choices" in answer:
    print("model:", answer["model"], "| usage:", answer.get("usage"))
elif "content" in answer and "model" in answer:
    print("model:", answer["model"], "| usage:", answer.get("usage"))
else:
    print(json.dumps(answer)[:600])
PY
}

MCP=(-H "x-api-key: $PLANNER" -H "x-agent-session: $SESSION" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream')
OPENAI=(-H "authorization: Bearer $PLANNER" -H "x-agent-session: $SESSION" -H 'content-type: application/json')

echo "Envoy $VERSION + Warden's chain (identity -> tool-acl -> redaction -> token-budget -> router) on 127.0.0.1:10000"
echo "One agent (planner, tenant acme) works through a task in session $SESSION."
send "identity: an unknown key is refused before any other filter runs" \
  $BASE/v1/chat/completions -H 'authorization: Bearer wk-nobody' -H 'content-type: application/json' \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
send "tool-acl: the agent lists its tools (exec_shell matches no rule: never shown)" \
  $BASE/mcp/files "${MCP[@]}" -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
send "tool-acl: an allowed read goes to the MCP server" \
  $BASE/mcp/files "${MCP[@]}" -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/notes.txt"}}}'
send "tool-acl: a read of /srv/../etc/shadow is a read of /etc/shadow: denied by no-system-paths, the server never sees it" \
  $BASE/mcp/files "${MCP[@]}" -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/../etc/shadow"}}}'
send "token-budget: a model call (OpenAI API, key as a Bearer token) is reserved (its prompt at an upper bound), forwarded and settled from its usage; redaction sent the provider a placeholder for the address" \
  $BASE/v1/chat/completions "${OPENAI[@]}" -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Summarise the notes for ann@example.com."}]}'
send "redaction: a credential never leaves: refused, naming the class, never the value" \
  $BASE/v1/chat/completions "${OPENAI[@]}" -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Deploy with AKIAIOSFODNN7EXAMPLE."}]}'
send "token-budget: up to 2,000 output tokens of gpt-4o would pass the agent's \$0.02 a day: moved to gpt-4o-mini, which the router serves from its own (private) provider" \
  $BASE/v1/chat/completions "${OPENAI[@]}" -d '{"model":"gpt-4o","max_tokens":2000,"messages":[{"role":"user","content":"Write it all out."}]}'
send "token-budget: more than any one request may reserve: refused before any upstream is contacted" \
  $BASE/v1/chat/completions "${OPENAI[@]}" -d '{"model":"gpt-4o-mini","max_tokens":50000,"messages":[{"role":"user","content":"Everything."}]}'

echo
echo "### The audit log: one JSON line per request, what every filter of the chain decided and learned"
print_audit status path warden.principal.agent warden.principal.session warden.identity.decision warden.tool_acl.decision warden.tool_acl.calls.tool warden.redaction.findings warden.token_budget.decision warden.token_budget.model_served warden.router.provider warden.token_budget.tokens.input warden.token_budget.tokens.output warden.token_budget.cost_usd
echo
echo "### Upstream requests per cluster (refused requests opened none)"
curl -s http://127.0.0.1:9900/stats | grep -E '^cluster\.(llm|llm_mini|mcp_files)\.upstream_rq_total' || true
echo
echo "### Metrics"
curl -s http://127.0.0.1:9900/stats | grep -E '^wasmcustom\.warden\.[a-z_]+\.(allowed|denied|refused|fallback|input_tokens|output_tokens)' || true
curl -s http://127.0.0.1:9900/stats | grep -E '^wasmcustom\.warden\.redaction\.' | grep -v ': 0$' || true
