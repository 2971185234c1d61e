#!/usr/bin/env bash
# Envoy with Warden's identity and tool-acl filters on 127.0.0.1, in front of an MCP file server
# (the official rmcp SDK) and a mock OpenAI-compatible provider, with examples/tool-acl/policy.yaml.
#
#   examples/tool-acl/run.sh          start, print curl lines to try, run until Ctrl-C
#   examples/tool-acl/run.sh --demo   start, run the requests below, print the answers, stop
#
# Ports: 10001 agents, 9902 Envoy admin, 18090 MCP server, 18091 model provider.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
source examples/common.sh
require_free_ports 10001 9902 18090 18091
"$DEV" serve-tools --mcp-port 18090 --provider-port 18091 >"$LOGS/dev.log" 2>&1 &
start_envoy envoy/tool-acl.yaml 9902

PLANNER=wk-planner-7f3a9c1e5b2d4068
MCP=http://127.0.0.1:10001/mcp/files
SESSION=demo-session-1

# One JSON-RPC message to the MCP server as the planner agent; prints the HTTP status and the answer.
rpc() {
  local title=$1 body=$2
  echo
  echo "### $title"
  echo "\$ curl $MCP -H 'x-api-key: \$PLANNER' -H 'x-agent-session: $SESSION' -d '$body'"
  curl -sS -o "$LOGS/body" -w '%{http_code}\n' "$MCP" -H "x-api-key: $PLANNER" -H "x-agent-session: $SESSION" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -d "$body" | sed 's/^/HTTP /'
  python3 - "$LOGS/body" <<'PY'
import json, sys
answer = json.load(open(sys.argv[1]))
result = answer.get("result", {})
if "tools" in result:
    print("tools listed:", [t["name"] for t in result["tools"]])
else:
    print(json.dumps(answer, indent=2)[:1500])
PY
}

if [ "$MODE" != "--demo" ]; then
  cat <<TXT
Envoy $VERSION with the identity and tool-acl filters is listening on 127.0.0.1:10001.
Demo agents (API keys): planner $PLANNER, admin-bot wk-admin-2b8e6d4a1c9f3057.

Try:
  curl -s $MCP -H "x-api-key: $PLANNER" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\
       -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
  curl -s $MCP -H "x-api-key: $PLANNER" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \\
       -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd"}}}'
  $DEV approval --args-sha256 HEX --session ID --jti ID      # mint an approval for a destructive call
  curl -s http://127.0.0.1:9902/stats | grep warden

Audit log: $LOGS/audit.log    Envoy log: $LOGS/envoy.log
Ctrl-C stops everything.
TXT
  wait
  exit 0
fi

echo "Envoy $VERSION + warden identity and tool-acl filters on 127.0.0.1:10001"
rpc "tools/list: the server has 6 tools; exec_shell matches no rule, so the agent never sees it" \
  '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
rpc "An allowed read: forwarded to the server" \
  '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/notes.txt"}}}'
rpc "A read of a system path: denied by rule no-system-paths, answered as a tool error the model reads" \
  '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/passwd"}}}'
rpc "A tool no rule allows" \
  '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"exec_shell","arguments":{"cmd":"id"}}}'
DELETE='{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/srv/tmp/old.log"}}}'
rpc "A destructive call without an approval: refused, saying exactly what to get approved" "$DELETE"
SHA=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["result"]["_meta"]["warden/denial"]["requires"]["approval"]["args_sha256"])' "$LOGS/body")
APPROVAL=$("$DEV" approval --args-sha256 "$SHA" --session "$SESSION" --jti demo-approval-1)
echo
echo "(an approver signs: \$ $DEV approval --args-sha256 $SHA --session $SESSION --jti demo-approval-1)"
WITH_APPROVAL=$(python3 -c 'import json,sys; b=json.loads(sys.argv[1]); b["params"]["_meta"]={"warden/approval": sys.argv[2]}; print(json.dumps(b))' "$DELETE" "$APPROVAL")
rpc "The same call with the approval in params._meta: forwarded" "$WITH_APPROVAL"
rpc "The same approval again: refused, approvals are single-use" "$WITH_APPROVAL"
rpc "A method that acts and is not in the policy's methods list" \
  '{"jsonrpc":"2.0","id":6,"method":"tasks/cancel","params":{}}'
rpc "Malformed JSON-RPC: a JSON-RPC parse error, nothing forwarded" '{"jsonrpc":"2.0","id":7,'

echo
echo "### A model (mock provider) streams a call to a tool the agent may not use: the agent gets text, not the call"
echo "\$ curl http://127.0.0.1:10001/v1/chat/completions -H 'x-api-key: \$PLANNER' -H 'x-mock-tool: delete_repository' -d '{... \"stream\": true, tools: [get_weather, delete_repository]}'"
curl -sS http://127.0.0.1:10001/v1/chat/completions -H "x-api-key: $PLANNER" -H 'content-type: application/json' \
  -H 'x-mock-tool: delete_repository' -H 'x-mock-arguments: {"repo":"prod"}' \
  -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"tidy up"}],"tools":[{"type":"function","function":{"name":"get_weather"}},{"type":"function","function":{"name":"delete_repository"}}]}'

echo
echo "### The audit log (one JSON record per request; argument values never appear, only their hash)"
print_audit status warden.principal.agent warden.tool_acl.calls.method warden.tool_acl.calls.tool warden.tool_acl.calls.class warden.tool_acl.decision warden.tool_acl.calls.args_sha256
echo
echo "### Metrics"
curl -s http://127.0.0.1:9902/stats | grep '^wasmcustom.warden.tool_acl' || true
