#!/usr/bin/env bash
# Regenerates the test-only keys and certificates in this folder. Never use them outside tests.
# The committed files were made with this script; tests do not run it.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p keys tls
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out keys/rsa.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out keys/rsa-other.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out keys/ec256.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out keys/ec384.pem
openssl genpkey -algorithm ED25519 -out keys/ed25519.pem
openssl pkey -in keys/rsa.pem -pubout -out keys/rsa.pub.pem

# A CA, a server certificate for 127.0.0.1/localhost, and agent client certificates whose
# URI SAN is a SPIFFE ID (one trusted domain, one foreign).
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
  -subj "/CN=Warden Test CA" -keyout tls/ca.key -out tls/ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
issue() { # name subject san
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" -keyout "tls/$1.key" -out "tls/$1.csr"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > "tls/$1.ext"
  openssl x509 -req -in "tls/$1.csr" -CA tls/ca.pem -CAkey tls/ca.key -CAcreateserial -days $days -out "tls/$1.pem" -extfile "tls/$1.ext"
  rm -f "tls/$1.csr" "tls/$1.ext"
}
issue server localhost "DNS:localhost,IP:127.0.0.1"
issue agent-planner planner "URI:spiffe://warden.test/ns/agents/sa/planner"
issue agent-foreign intruder "URI:spiffe://evil.test/ns/agents/sa/planner"
rm -f tls/ca.srl

# The rate-limit service's own CA: only gateways hold a client certificate it signed, so no
# other peer (an agent's certificate from the CA above included) can draw or settle budgets.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
  -subj "/CN=Warden Rate-Limit CA" -keyout tls/ratelimit-ca.key -out tls/ratelimit-ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
issue_rl() { # name subject san usage
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" -keyout "tls/$1.key" -out "tls/$1.csr"
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=%s\n' "$3" "$4" > "tls/$1.ext"
  openssl x509 -req -in "tls/$1.csr" -CA tls/ratelimit-ca.pem -CAkey tls/ratelimit-ca.key -CAcreateserial -days $days -out "tls/$1.pem" -extfile "tls/$1.ext"
  rm -f "tls/$1.csr" "tls/$1.ext"
}
issue_rl ratelimit ratelimit "DNS:ratelimit,DNS:localhost,IP:127.0.0.1" serverAuth
issue_rl gateway warden-gateway "URI:spiffe://warden.test/ns/warden/sa/gateway" clientAuth
rm -f tls/ratelimit-ca.srl
