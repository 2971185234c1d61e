#!/usr/bin/env bash
# Warden's identity and redaction filters on 127.0.0.1 (envoy/redaction.yaml) with
# examples/redaction/policy.yaml, in front of the MCP file server and a model provider that
# answers with what it was sent: what the provider saw is what comes back, before Warden
# restores the agent's own data.
#
#   examples/redaction/run.sh          start, print what to try, run until Ctrl-C
#   examples/redaction/run.sh --demo   start, show each case, stop                  (make demo)
#
# Ports: 10005 agents, 9905 Envoy admin, 18110 MCP server, 18111 model provider.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
source examples/common.sh
require_free_ports 10005 9905 18110 18111
"$DEV" serve-echo >"$LOGS/dev.log" 2>&1 &
sleep 0.3
start_envoy envoy/redaction.yaml 9905
BASE=http://127.0.0.1:10005
PLANNER=wk-planner-7f3a9c1e5b2d4068
GLOBEX=wk-globex-5d1c8a3f7e2b9046

if [ "$MODE" != "--demo" ]; then
  cat <<TXT
Envoy $VERSION with Warden's redaction is listening on 127.0.0.1:10005 (the provider echoes what it gets).

Try:
  curl -s $BASE/v1/chat/completions -H 'authorization: Bearer $PLANNER' -H 'content-type: application/json' \\
       -d '{"model":"gpt-4o","messages":[{"role":"user","content":"Mail ann@example.com about bluebird"}]}'
  curl -s http://127.0.0.1:9905/stats | grep wasmcustom.warden.redaction

Audit log: $LOGS/audit.log    Envoy log: $LOGS/envoy.log
Ctrl-C stops everything.
TXT
  wait
  exit 0
fi

# One request; prints the command (keys shortened), the status and what the agent got back.
send() {
  local title=$1
  shift
  echo
  echo "### $title"
  python3 -c 'import shlex, sys; print("$ curl " + shlex.join(sys.argv[1:]).replace("wk-planner-7f3a9c1e5b2d4068", "$PLANNER").replace("wk-globex-5d1c8a3f7e2b9046", "$GLOBEX"))' "$@"
  curl -sS -o "$LOGS/body" -w 'HTTP %{http_code}\n' "$@"
  python3 - "$LOGS/body" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    answer = json.loads(text)
except ValueError:
    # A stream: the text its deltas add up to.
    parts = []
    for line in text.splitlines():
        if line.startswith("data: ") and line[6:] != "[DONE]":
            chunk = json.loads(line[6:])
            for choice in chunk.get("choices", []):
                parts.append(choice.get("delta", {}).get("content") or "")
    print(f"streamed in {len(parts)} chunks, the agent reads:", "".join(parts))
    sys.exit()
if "choices" in answer:
    print("the agent reads:", answer["choices"][0]["message"]["content"])
elif "result" in answer:
    print("the agent reads:", answer["result"]["content"][0]["text"])
else:
    print(json.dumps(answer, ensure_ascii=False)[:400])
PY
}

CHAT=(-H 'content-type: application/json' -H "authorization: Bearer $PLANNER")
PROMPT='Write to ann@example.com or call +44 20 7946 0958 about bluebird; my card is 4111 1111 1111 1111.'

echo "Envoy $VERSION + Warden's identity and redaction on 127.0.0.1:10005"
send "Contacts go to the provider as placeholders, the code name and the card masked; the echo comes back restored" \
  $BASE/v1/chat/completions "${CHAT[@]}" -d "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"$PROMPT\"}]}"
send "Streamed three characters a chunk: a placeholder split over chunks is restored whole" \
  $BASE/v1/chat/completions "${CHAT[@]}" -d "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Reply to ann@example.com\"}]}"
send "A credential never leaves: refused, naming the class, never the value" \
  $BASE/v1/chat/completions "${CHAT[@]}" -d '{"model":"gpt-4o","messages":[{"role":"user","content":"deploy with AKIAIOSFODNN7EXAMPLE"}]}'
send "globex sends no personal data to models at all (rule globex-no-pii)" \
  $BASE/v1/chat/completions -H 'content-type: application/json' -H "authorization: Bearer $GLOBEX" \
  -d '{"model":"gpt-4o","messages":[{"role":"user","content":"mail ann@example.com"}]}'
send "An MCP tool call: the server gets a placeholder, the agent its own data back" \
  $BASE/mcp/files -H "x-api-key: $PLANNER" -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_files","arguments":{"path":"/srv","echo":"contact ann@example.com"}}}'

echo
echo "### The audit log: redaction's section of each request's record (classes and counts, never values)"
print_audit status path warden.redaction.findings warden.redaction.answer_findings warden.redaction.classes warden.redaction.decision
echo
echo "### Metrics"
curl -s http://127.0.0.1:9905/stats | grep -E '^wasmcustom\.warden\.redaction\.' | grep -v ': 0$' || true
