#!/usr/bin/env bash
# Warden's router on 127.0.0.1 (envoy/router.yaml) with examples/router/policy.yaml, in front of
# four mock providers: openai (key from the proxy's environment), backup (an OpenAI-compatible
# server, key from an SDS secret), anthropic (key from an SDS secret) and local (self-hosted,
# private, no key). Agents send an alias; the router chooses, adds the key, fails over and
# translates between the OpenAI and Anthropic APIs.
#
#   examples/router/run.sh          start, print what to try, run until Ctrl-C   (make run-router)
#   examples/router/run.sh --demo   start, show each case, stop                  (make demo)
#
# Ports: 10004 agents, 9904 Envoy admin, 18101-18104 mock providers. A request's
# `x-mock-fail: openai=503,backup=reset` makes the named mocks fail it (a demo convenience).
set -euo pipefail
cd "$(dirname "$0")/../.."

MODE=${1:-}
source examples/common.sh
require_free_ports 10004 9904 18101 18102 18103 18104
"$DEV" serve-providers >"$LOGS/dev.log" 2>&1 &
sleep 0.3
start_envoy envoy/router.yaml 9904
BASE=http://127.0.0.1:10004

if [ "$MODE" != "--demo" ]; then
  cat <<TXT
Envoy $VERSION with Warden's router is listening on 127.0.0.1:10004 (aliases: fast, smart, claude, embed).
Agents hold no provider key: the gateway adds each provider's own.

Try:
  curl -s $BASE/v1/models
  curl -s $BASE/v1/chat/completions -H 'content-type: application/json' -d '{"model":"fast","messages":[{"role":"user","content":"hi"}]}'
  # openai fails: the backup serves, with its own key
  curl -s $BASE/v1/chat/completions -H 'x-mock-fail: openai=503' -H 'content-type: application/json' -d '{"model":"fast","messages":[{"role":"user","content":"hi"}]}'
  # an OpenAI agent, an Anthropic provider (translated both ways)
  curl -s $BASE/v1/chat/completions -H 'content-type: application/json' -d '{"model":"claude","messages":[{"role":"user","content":"hi"}]}'
  curl -s http://127.0.0.1:9904/stats | grep wasmcustom.warden.router

Audit log: $LOGS/audit.log    Envoy log: $LOGS/envoy.log
Ctrl-C stops everything.
TXT
  wait
  exit 0
fi

# One request; prints the command, the status and a short form of the answer.
send() {
  local title=$1
  shift
  echo
  echo "### $title"
  python3 -c 'import shlex, sys; print("$ curl " + shlex.join(sys.argv[1:]))' "$@"
  curl -sS -o "$LOGS/body" -w 'HTTP %{http_code}\n' "$@"
  python3 - "$LOGS/body" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
try:
    answer = json.loads(text)
except ValueError:
    # A stream: its event types (or chunk objects), in order.
    named = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    if named:
        print("stream of", len(named), "events:", " ".join(named))
    else:
        print("stream of", len(data), "chunks, the last:", data[-1] if data else "-")
    sys.exit()
if "choices" in answer:
    print("model:", answer["model"], "| served by:", answer.get("served_by", "-"), "|", answer["choices"][0]["message"].get("content"), "| usage:", answer.get("usage"))
elif answer.get("type") == "message":
    print("model:", answer["model"], "| served by:", answer.get("served_by", "-"), "|", answer["content"][0]["text"], "| stop:", answer["stop_reason"], "| usage:", answer["usage"])
else:
    print(json.dumps(answer)[:400])
PY
}

CHAT=(-H 'content-type: application/json')
ANTHROPIC=(-H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H 'x-api-key: agent-own-key')
HELLO='"messages":[{"role":"user","content":"Say hello"}]'

echo "Envoy $VERSION + Warden's router on 127.0.0.1:10004"
send "The aliases this agent may use" $BASE/v1/models
send "fast: openai serves, with OPENAI_API_KEY from the proxy's environment (the agent's own key is removed)" \
  $BASE/v1/chat/completions "${CHAT[@]}" -H 'authorization: Bearer agent-own-key' -d "{\"model\":\"fast\",$HELLO}"
send "openai answers 503: the backup serves, with its own key (an SDS secret)" \
  $BASE/v1/chat/completions "${CHAT[@]}" -H 'x-mock-fail: openai=503' -d "{\"model\":\"fast\",$HELLO}"
send "openai resets, the backup is rate limited (429, Retry-After: 30): the private local model serves" \
  $BASE/v1/chat/completions "${CHAT[@]}" -H 'x-mock-fail: openai=reset,backup=429' -d "{\"model\":\"fast\",$HELLO}"
send "the backup asked for 30 s: it now goes last (openai, local, backup)" \
  $BASE/v1/chat/completions "${CHAT[@]}" -H 'x-mock-fail: openai=503' -d "{\"model\":\"fast\",$HELLO}"
send "no provider answers: an error in the agent's own API, not Envoy's text" \
  $BASE/v1/chat/completions "${CHAT[@]}" -H 'x-mock-fail: openai=reset,backup=reset,local=reset' -d "{\"model\":\"fast\",$HELLO}"
send "an OpenAI agent asks for claude: translated to Anthropic's Messages API and back" \
  $BASE/v1/chat/completions "${CHAT[@]}" -d "{\"model\":\"claude\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Say hello\"}]}"
send "an Anthropic agent asks for fast: translated to OpenAI's API and back, streamed event by event" \
  $BASE/v1/messages "${ANTHROPIC[@]}" -d "{\"model\":\"fast\",\"max_tokens\":64,\"stream\":true,$HELLO}"
send "Embeddings by alias" $BASE/v1/embeddings "${CHAT[@]}" -d '{"model":"embed","input":"hello"}'
send "an alias the policy does not have" $BASE/v1/chat/completions "${CHAT[@]}" -d "{\"model\":\"gpt-9\",$HELLO}"
send "a member Anthropic has no counterpart for (n: 2): no target of claude can carry it" \
  $BASE/v1/chat/completions "${CHAT[@]}" -d "{\"model\":\"claude\",\"n\":2,$HELLO}"

echo
echo "### The audit log: the router's section of each request's record"
print_audit status path warden.router.alias warden.router.provider warden.router.model warden.router.attempts.outcome warden.router.failover_reason warden.router.decision
echo
echo "### Metrics per provider"
curl -s http://127.0.0.1:9904/stats | grep -E '^wasmcustom\.warden\.router\.' | grep -v ': 0$' || true
