# Sourced by the example scripts (run from the repository root): the Envoy binary, the dev tool,
# a log folder, cleanup on exit, and helpers to check ports and start Envoy.

VERSION=${WARDEN_ENVOY_VERSION:-1.40.0}
ENVOY=.venv/envoy/$VERSION/envoy/_bin/envoy
DEV=target/debug/warden-dev
LOGS=$(mktemp -d)

# Stops everything the script started in the background.
cleanup() {
  local pids
  pids=$(jobs -p)
  [ -n "$pids" ] && kill $pids 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM # Ctrl-C is how `make run` is meant to stop

# Refuses to start when one of the given ports on 127.0.0.1 is taken.
require_free_ports() {
  for port in "$@"; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
      echo "port $port on 127.0.0.1 is in use: stop what holds it (another 'make run'?) and try again" >&2
      exit 1
    fi
  done
}

# Waits until something listens on 127.0.0.1:PORT (up to 10 s); otherwise prints LOG and exits.
wait_port() {
  local port=$1 name=$2 log=$3
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$name did not start on port $port:" >&2
  cat "$log" >&2
  exit 1
}

# Starts Redis on REDIS_PORT and Warden's rate-limit service on PORT in front of it (mutual TLS
# with the gateway's test certificates), in the background; RATELIMIT_PID is the service's.
start_ratelimit() {
  local port=$1 redis_port=$2
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$LOGS/redis.log" 2>&1 &
  wait_port "$redis_port" Redis "$LOGS/redis.log"
  target/debug/warden-ratelimit --listen "127.0.0.1:$port" --redis "redis://127.0.0.1:$redis_port/0" \
    --tls-cert testdata/tls/ratelimit.pem --tls-key testdata/tls/ratelimit.key --client-ca testdata/tls/ratelimit-ca.pem \
    >"$LOGS/ratelimit.log" 2>&1 &
  RATELIMIT_PID=$!
}

# Starts Envoy with CONFIG in the background and waits until its admin port ADMIN is ready.
# Envoy's stdout is the audit log (one JSON record per request); its own log goes to stderr.
start_envoy() {
  local config=$1 admin=$2
  # The router's attempt filter reads provider keys from the proxy's environment (host_env_keys);
  # the demo's mock providers accept any, so demo values stand in unless you set real ones.
  OPENAI_API_KEY=${OPENAI_API_KEY:-sk-openai-demo-0000} ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY:-sk-ant-demo-0000} \
  "$ENVOY" -c "$config" --concurrency 2 --disable-hot-restart --log-level warn --file-flush-interval-msec 100 \
    >"$LOGS/audit.log" 2>"$LOGS/envoy.log" &
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "Envoy did not start:"
  cat "$LOGS/envoy.log"
  exit 1
}

# Prints the audit log (Envoy's access log, one JSON record per request): the given fields of
# each record, an argument hash shortened to its first 12 characters.
print_audit() {
  sleep 0.3 # the access log is flushed every 100 ms
  # Fields are paths into the line (docs/audit.md): `status`, `warden.principal.agent`,
  # `warden.identity.decision` (verdict;rule;reason), `warden.tool_acl.calls.tool`.
  python3 - "$LOGS/audit.log" "$@" <<'PY'
import json, sys

def walk(value, path):
    if value is None or not path:
        return value
    if isinstance(value, str) and value.startswith("{"):
        value = json.loads(value)  # the record as JSON text (auditFormat: json, printed PLAIN)
    if isinstance(value, dict) and "@type" in value and "value" in value:
        value = value["value"]  # a filter's record, as Envoy prints a Struct
    if isinstance(value, list):
        found = [walk(v, path) for v in value]
        return ",".join(str(f) for f in found if f is not None) or None
    head, rest = path[0], path[1:]
    if head == "decision" and isinstance(value, dict) and "verdict" in value:
        return f"{value['verdict']};rule={value['rule']};reason={value['reason']}"
    return walk(value.get(head) if isinstance(value, dict) else None, rest)

fields = sys.argv[2:]
for line in open(sys.argv[1]):
    r = json.loads(line)
    out = {}
    for f in fields:
        v = walk(r, f.split("."))
        if f.endswith("args_sha256") and v:
            v = v[:12] + "…"
        out[f.removeprefix("warden.")] = v  # keys as in the record
    print(json.dumps(out, ensure_ascii=False))
PY
}
