#!/usr/bin/env bash
# Envoy with Warden's identity filter on 127.0.0.1, in front of a mock upstream and a JWKS server.
#
#   examples/identity/run.sh          start, print curl lines to try, run until Ctrl-C  (make run)
#   examples/identity/run.sh --demo   start, run the requests below, print the answers, stop (make demo)
#
# Ports: 10000 plain HTTP, 10443 mTLS, 9901 Envoy admin, 18080 mock upstream, 18081 JWKS.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
source examples/common.sh
require_free_ports 10000 10443 9901 18080 18081
"$DEV" serve --upstream-port 18080 --jwks-port 18081 >"$LOGS/dev.log" 2>&1 &
start_envoy envoy/identity.yaml 9901

AGENT=$("$DEV" token --sub agent-planner --scope "models:call")
READER=$("$DEV" token --sub agent-reader --scope "tools:read")
OTHER_AGENT=$("$DEV" token --sub agent-other --scope "models:call")
EXPIRED=$("$DEV" token --sub agent-planner --scope "models:call" --expired)
MCP_AGENT=$("$DEV" token --sub spiffe://warden.test/ns/agents/sa/planner --scope "tools:call" --key ec)
USER_TOKEN=$("$DEV" token --sub alice@acme.test --key ed --user)
API_KEY=wk-ci-bot-3c1f9e2a7d5b4e08
TLS="--cacert testdata/tls/ca.pem --cert testdata/tls/agent-planner.pem --key testdata/tls/agent-planner.key"

# Prints a request as typed (tokens by name) and the answer: status, auth challenge, and either
# the identity headers the upstream received or the error body.
show() {
  local title=$1 shown=$2
  shift 2
  echo
  echo "### $title"
  echo "\$ curl $shown"
  curl -sS -D "$LOGS/headers" -o "$LOGS/body" "$@" || true
  head -n 1 "$LOGS/headers" | tr -d '\r'
  grep -i '^www-authenticate' "$LOGS/headers" | tr -d '\r' || true
  python3 - "$LOGS/body" <<'PY'
import json, sys
body = json.load(open(sys.argv[1]))
if "echo" in body:
    seen = {k: v for k, v in body["echo"]["headers"].items() if k.startswith("x-warden-") or k in ("authorization", "x-api-key", "x-user-token")}
    print("upstream received:", json.dumps(seen, indent=2))
else:
    print(json.dumps(body, indent=2))
PY
}

if [ "$MODE" != "--demo" ]; then
  cat <<TXT
Envoy $VERSION with the identity filter is listening on 127.0.0.1:10000 (and :10443 for mTLS).
Tokens for the demo issuer (valid one hour):

  export AGENT='$AGENT'
  export READER='$READER'
  export USER_TOKEN='$USER_TOKEN'
  export MCP_AGENT='$MCP_AGENT'

Try:
  curl -i http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer \$AGENT"        # 200
  curl -i http://127.0.0.1:10000/v1/chat/completions                                           # 401
  curl -i http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer \$READER"       # 403
  curl -i http://127.0.0.1:10000/v1/embeddings -H "x-api-key: $API_KEY"                         # 200, agent ci-bot
  curl -i $TLS https://localhost:10443/mcp/tools -H "authorization: Bearer \$MCP_AGENT" -H "x-user-token: \$USER_TOKEN"   # 200, mTLS agent
  curl -s http://127.0.0.1:9901/stats | grep warden                                            # metrics

Audit log: $LOGS/audit.log    Envoy log: $LOGS/envoy.log
Ctrl-C stops everything.
TXT
  wait
  exit 0
fi

echo "Envoy $VERSION + warden identity filter on 127.0.0.1:10000 (mTLS on :10443)"
show "An agent with a valid token: allowed, its principal forwarded, its token kept at the gateway" \
  'http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $AGENT" -H "x-agent-session: demo-1" -H "x-warden-agent: forged-admin"' \
  http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $AGENT" -H "x-agent-session: demo-1" -H "x-warden-agent: forged-admin"
show "No credentials: 401" \
  'http://127.0.0.1:10000/v1/chat/completions' \
  http://127.0.0.1:10000/v1/chat/completions
show "An expired token: 401" \
  'http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $EXPIRED"' \
  http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $EXPIRED"
show "A valid token without the route's scope: 403" \
  'http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $READER"' \
  http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $READER"
show "An API key (the policy holds only its SHA-256): allowed as agent ci-bot" \
  "http://127.0.0.1:10000/v1/embeddings -H \"x-api-key: $API_KEY\"" \
  http://127.0.0.1:10000/v1/embeddings -H "x-api-key: $API_KEY"
show "Another agent reusing session demo-1: 403" \
  'http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $OTHER_AGENT" -H "x-agent-session: demo-1"' \
  http://127.0.0.1:10000/v1/chat/completions -H "authorization: Bearer $OTHER_AGENT" -H "x-agent-session: demo-1"
show "An mTLS agent (SPIFFE ID in its certificate) acting for a user, on the MCP route" \
  "$TLS https://localhost:10443/mcp/tools -H \"authorization: Bearer \$MCP_AGENT\" -H \"x-user-token: \$USER_TOKEN\"" \
  $TLS https://localhost:10443/mcp/tools -H "authorization: Bearer $MCP_AGENT" -H "x-user-token: $USER_TOKEN"
show "The same agent without the user it acts for: 401" \
  "$TLS https://localhost:10443/mcp/tools -H \"authorization: Bearer \$MCP_AGENT\"" \
  $TLS https://localhost:10443/mcp/tools -H "authorization: Bearer $MCP_AGENT"

echo
echo "### The audit log (Envoy's access log, one JSON record per request)"
print_audit status path warden.principal.agent warden.principal.user warden.principal.tenant warden.principal.session warden.principal.auth_methods warden.identity.decision
echo
echo "### Metrics"
curl -s http://127.0.0.1:9901/stats | grep '^wasmcustom.warden' || true
