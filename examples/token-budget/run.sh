#!/usr/bin/env bash
# Envoy with Warden's identity and token-budget filters on 127.0.0.1, in front of a mock
# OpenAI-compatible provider that bills like a real one, with Warden's rate-limit service on
# Redis for the global budget, and examples/token-budget/policy.yaml.
#
#   examples/token-budget/run.sh          start, print curl lines to try, run until Ctrl-C
#   examples/token-budget/run.sh --demo   start, run the requests below, print the answers, stop
#
# Ports: 10002 agents, 9903 Envoy admin, 18092 model provider, 18094 rate-limit service,
# 18095 Redis.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
source examples/common.sh
require_free_ports 10002 9903 18092 18094 18095
"$DEV" serve-models --port 18092 --output-tokens 40 >"$LOGS/dev.log" 2>&1 &
start_ratelimit 18094 18095
start_envoy envoy/token-budget.yaml 9903

PLANNER=wk-planner-7f3a9c1e5b2d4068
URL=http://127.0.0.1:10002/v1/chat/completions

# One chat request as the planner agent in session $2; prints the status, the headers that
# matter and a summary of the answer.
chat() {
  local title=$1 session=$2 body=$3
  echo
  echo "### $title"
  echo "\$ curl $URL -H 'x-api-key: \$PLANNER' -H 'x-agent-session: $session' -d '$body'"
  curl -sS -D "$LOGS/headers" -o "$LOGS/body" -w 'HTTP %{http_code}\n' "$URL" -H "x-api-key: $PLANNER" \
    -H "x-agent-session: $session" -H 'content-type: application/json' -d "$body"
  grep -i '^\(retry-after\|x-ratelimit\)' "$LOGS/headers" | tr -d '\r' || true
  python3 - "$LOGS/body" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
if text.startswith("data:"):
    events = [l[6:] for l in text.splitlines() if l.startswith("data: ")]
    usage = sum('"usage"' in e for e in events)
    print(f"{len(events)} events; usage chunks seen by the client: {usage}; last: {events[-1]}")
else:
    answer = json.loads(text)
    if "error" in answer:
        print(json.dumps(answer["error"]))
    else:
        print(json.dumps({"model": answer["model"], "usage": answer["usage"]}))
PY
}

if [ "$MODE" != "--demo" ]; then
  cat <<TXT
Envoy $VERSION with the identity and token-budget filters is listening on 127.0.0.1:10002,
the rate-limit service on 127.0.0.1:18094 (Redis on 18095).
Demo agents (API keys): planner $PLANNER, globex-agent wk-globex-5d1c8a3f7e2b9046.

Try:
  curl -s $URL -H "x-api-key: $PLANNER" -H 'x-agent-session: s1' -H 'content-type: application/json' \\
       -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Hello"}]}'
  curl -s http://127.0.0.1:9903/stats | grep warden.token_budget

Audit log: $LOGS/audit.log    Envoy log: $LOGS/envoy.log
Ctrl-C stops everything.
TXT
  wait
  exit 0
fi

echo "Envoy $VERSION + warden identity and token-budget filters on 127.0.0.1:10002"
chat "Within every budget: reserved (prompt + the 512-token default cap), settled with the provider's usage" \
  s1 '{"model":"gpt-4o","messages":[{"role":"user","content":"Plan the migration in three steps."}]}'
chat "Streamed: Warden asks the provider for usage and removes that chunk, so the client sees the stream it asked for" \
  s1 '{"model":"gpt-4o","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"Hello"}]}'
chat "More than one request may take (per-request max 16,000 tokens): 429 before the provider is called" \
  s1 '{"model":"gpt-4o","max_tokens":20000,"messages":[{"role":"user","content":"Write a book."}]}'
echo
echo "### The agent's gpt-4o budget (\$0.02 a day) runs out: later requests go to gpt-4o-mini instead"
for i in $(seq 1 60); do
  curl -sS -o "$LOGS/body" "$URL" -H "x-api-key: $PLANNER" -H "x-agent-session: loop-$i" -H 'content-type: application/json' \
    -d '{"model":"gpt-4o","max_tokens":40,"messages":[{"role":"user","content":"Next step?"}]}'
  model=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("model"))' "$LOGS/body")
  if [ "$model" != "gpt-4o" ]; then echo "request $i asked for gpt-4o and was served by: $model"; break; fi
done
echo
echo "### A looping agent: one session asks again and again until its 6,000 tokens are spent"
for i in $(seq 1 400); do
  code=$(curl -sS -o "$LOGS/body" -w '%{http_code}' "$URL" -H "x-api-key: $PLANNER" -H 'x-agent-session: looping' \
    -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"again"}]}')
  if [ "$code" != 200 ]; then echo "request $i of session 'looping' got HTTP $code"; break; fi
done
chat "The session is spent: refused, with no Retry-After (a session does not reset)" \
  looping '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"again"}]}'

echo
echo "### The rate-limit service goes away: tenant-daily-tokens (failureMode: local) is counted by this Envoy alone"
kill $RATELIMIT_PID 2>/dev/null || true
chat "Still served, counted locally" s2 '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'

echo
echo "### The audit log (one JSON record per request)"
print_audit status warden.principal.session warden.token_budget.decision warden.token_budget.model_requested warden.token_budget.model_served warden.token_budget.tokens.estimated warden.token_budget.tokens.reserved warden.token_budget.tokens.input warden.token_budget.tokens.output warden.token_budget.cost_usd | grep -v '"status": 200, "principal.session": "looping"' | tail -n 8
echo
echo "### Metrics"
curl -s http://127.0.0.1:9903/stats | grep '^wasmcustom.warden.token_budget' || true
