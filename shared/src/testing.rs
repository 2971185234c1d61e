//! An in-memory [`Host`] for native tests: headers, properties and shared data with real CAS.

use crate::host::{Host, HostError};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A gRPC call a test host was asked to send.
#[derive(Debug, Clone)]
pub struct SentGrpcCall {
    pub cluster: String,
    pub service: String,
    pub method: String,
    pub message: Vec<u8>,
}

/// An HTTP callout a test host was asked to send.
#[derive(Debug, Clone)]
pub struct SentHttpCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct MemoryHost {
    pub now_secs: Cell<u64>,
    pub headers: RefCell<Vec<(String, String)>>,
    pub properties: RefCell<BTreeMap<String, Vec<u8>>>,
    pub shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    failing_cas_writes: Cell<u32>,
    pub reply: RefCell<Option<LocalReply>>,
    pub metrics: RefCell<BTreeMap<String, i64>>,
    pub http_calls: RefCell<Vec<SentHttpCall>>,
    /// How many times the route was asked to be chosen again.
    pub route_cache_cleared: Cell<u32>,
    /// The request body held; the response body chunk (or body) the filter sees now.
    pub request_body: RefCell<Vec<u8>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    pub response_body: RefCell<Vec<u8>>,
    pub grpc_calls: RefCell<Vec<SentGrpcCall>>,
    /// The message of the gRPC answer being delivered; `failing_grpc_calls` makes sends fail.
    pub grpc_answer: RefCell<Vec<u8>>,
    pub failing_grpc_calls: Cell<bool>,
    /// Times a paused request was resumed.
    pub resumed: Cell<u32>,
    /// Declared properties: name → read-only (a read-only one takes one write, as in Envoy).
    pub declared: RefCell<BTreeMap<String, bool>>,
    /// The HTTP callout answer being delivered (status, body); the streams a root entered.
    pub http_answer: RefCell<(Option<u16>, Vec<u8>)>,
    pub entered: RefCell<Vec<u32>>,
}

impl MemoryHost {
    /// A structured record written under `key`.
    pub fn record(&self, key: &str) -> Option<serde_json::Value> {
        let bytes = self.properties.borrow().get(key).cloned()?;
        crate::audit::decode(&bytes).map(serde_json::Value::Object)
    }

    /// One field of the record under `key` (see [`field`]).
    pub fn field(&self, key: &str, path: &str) -> Option<String> {
        field(&self.record(key)?, path)
    }

    /// Writes the principal as the identity filter before this one would.
    pub fn set_principal(&self, principal: &crate::principal::Principal) {
        let record = crate::audit::encode(&principal.record(), crate::audit::AuditFormat::Json);
        self.properties.borrow_mut().insert(crate::attributes::PRINCIPAL.to_string(), record);
    }

    pub fn with_headers(headers: &[(&str, &str)]) -> Self {
        let host = Self::default();
        *host.headers.borrow_mut() = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        host
    }

    pub fn shared_keys(&self) -> Vec<String> {
        self.shared.borrow().keys().cloned().collect()
    }

    /// The next `n` CAS writes fail as if another worker had written first.
    pub fn fail_next_cas_writes(&self, n: u32) {
        self.failing_cas_writes.set(n);
    }

    pub fn metric(&self, name: &str) -> i64 {
        self.metrics.borrow().get(name).copied().unwrap_or(0)
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        self.response_headers.borrow().iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.borrow().iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }
}

/// Sets (`Some`) or removes (`None`) a header, as Envoy's header map does.
fn set_header(headers: &RefCell<Vec<(String, String)>>, name: &str, value: Option<&str>) {
    let mut headers = headers.borrow_mut();
    headers.retain(|(k, _)| k != name);
    if let Some(value) = value {
        headers.push((name.to_string(), value.to_string()));
    }
}

/// The first `size` bytes of a buffer, as `proxy_get_buffer_bytes(0, size)` reads them.
fn prefix(buffer: &RefCell<Vec<u8>>, size: usize) -> Vec<u8> {
    let buffer = buffer.borrow();
    buffer[..size.min(buffer.len())].to_vec()
}

/// Replaces the first `size` bytes of a buffer, as `proxy_set_buffer_bytes(0, size)` does.
fn replace_prefix(buffer: &RefCell<Vec<u8>>, size: usize, bytes: &[u8]) {
    let mut buffer = buffer.borrow_mut();
    let end = size.min(buffer.len());
    buffer.splice(..end, bytes.iter().copied());
}

impl Host for MemoryHost {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(self.now_secs.get())
    }

    fn request_headers(&self) -> Result<Vec<(String, String)>, HostError> {
        Ok(self.headers.borrow().clone())
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        set_header(&self.headers, name, value);
        Ok(())
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(prefix(&self.request_body, size))
    }

    fn set_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        replace_prefix(&self.request_body, size, body);
        Ok(())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.resumed.set(self.resumed.get() + 1);
        Ok(())
    }

    fn enter_context(&self, context_id: u32) -> Result<(), HostError> {
        self.entered.borrow_mut().push(context_id);
        Ok(())
    }

    fn response_header_values(&self, name: &str) -> Result<Vec<String>, HostError> {
        let headers = self.response_headers.borrow();
        Ok(headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).collect())
    }

    fn set_response_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        set_header(&self.response_headers, name, value);
        Ok(())
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(prefix(&self.response_body, size))
    }

    fn set_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        replace_prefix(&self.response_body, size, body);
        Ok(())
    }

    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        _timeout: std::time::Duration,
    ) -> Result<u32, HostError> {
        if self.failing_grpc_calls.get() {
            return Err(HostError::Failed { call: "grpc_call", status: "BadArgument".into() });
        }
        let mut calls = self.grpc_calls.borrow_mut();
        calls.push(SentGrpcCall {
            cluster: cluster.to_string(),
            service: service.to_string(),
            method: method.to_string(),
            message: message.to_vec(),
        });
        Ok(calls.len() as u32)
    }

    fn grpc_response(&self, size: usize) -> Result<Vec<u8>, HostError> {
        Ok(prefix(&self.grpc_answer, size))
    }

    fn http_call_answer(&self, size: usize) -> Result<(Option<u16>, Vec<u8>), HostError> {
        let (status, body) = self.http_answer.borrow().clone();
        Ok((status, body[..size.min(body.len())].to_vec()))
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.properties.borrow().get(&path.join(".")).cloned())
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        let key = path.join(".");
        let readonly = self.declared.borrow().get(&key).copied().unwrap_or(false);
        if readonly && self.properties.borrow().contains_key(&key) {
            return Err(HostError::Failed { call: "set_property", status: "BadArgument".into() });
        }
        self.properties.borrow_mut().insert(key, value.to_vec());
        Ok(())
    }

    fn declare_property(&self, arguments: &[u8]) -> Result<(), HostError> {
        let declared: crate::audit::wire::DeclarePropertyArguments = prost::Message::decode(arguments)
            .map_err(|e| HostError::Failed { call: "declare_property", status: e.to_string() })?;
        self.declared.borrow_mut().insert(declared.name, declared.readonly);
        Ok(())
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        // As through the proxy-wasm SDK: an empty value reads as no value.
        Ok(match self.shared.borrow().get(key) {
            Some((value, cas)) if value.is_empty() => (None, Some(*cas)),
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut shared = self.shared.borrow_mut();
        // Envoy's semantics: a CAS token is checked only against an existing key.
        if let (Some((_, current)), Some(cas)) = (shared.get(key), cas) {
            if *current != cas {
                return Err(HostError::CasMismatch);
            }
            if self.failing_cas_writes.get() > 0 {
                self.failing_cas_writes.set(self.failing_cas_writes.get() - 1);
                // Simulate another worker's write winning the race.
                let bumped = self.next_cas.get() + 1;
                self.next_cas.set(bumped);
                if let Some(entry) = shared.get_mut(key) {
                    entry.1 = bumped;
                }
                return Err(HostError::CasMismatch);
            }
        }
        let next = self.next_cas.get() + 1;
        self.next_cas.set(next);
        shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn increment(&self, metric: &str, by: i64) -> Result<(), HostError> {
        *self.metrics.borrow_mut().entry(metric.to_string()).or_default() += by;
        Ok(())
    }

    fn set_gauge(&self, metric: &str, value: u64) -> Result<(), HostError> {
        self.metrics.borrow_mut().insert(metric.to_string(), value as i64);
        Ok(())
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        _timeout: std::time::Duration,
    ) -> Result<u32, HostError> {
        let mut calls = self.http_calls.borrow_mut();
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        calls.push(SentHttpCall { cluster: cluster.to_string(), headers });
        Ok(calls.len() as u32)
    }

    fn clear_route_cache(&self) -> Result<(), HostError> {
        self.route_cache_cleared.set(self.route_cache_cleared.get() + 1);
        Ok(())
    }

    fn send_local_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        *self.reply.borrow_mut() = Some(LocalReply {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.to_vec(),
        });
        Ok(())
    }
}

/// A rate-limit service's answer to a one-descriptor call: `code` (`rls::CODE_OK` or
/// `rls::CODE_OVER_LIMIT`), hits remaining, and a window that resets in 600 s.
pub fn rls_answer(code: i32, remaining: u32) -> Vec<u8> {
    use crate::budget::rls::{DescriptorStatus, ProtoDuration, RateLimitResponse};
    prost::Message::encode_to_vec(&RateLimitResponse {
        overall_code: code,
        statuses: vec![DescriptorStatus {
            code,
            current_limit: None,
            limit_remaining: remaining,
            duration_until_reset: Some(ProtoDuration { seconds: 600, nanos: 0 }),
        }],
    })
}

/// Test-only signing keys (`testdata/keys`, made by `testdata/generate.sh`) and token minting,
/// shared by native tests, the wasm harness, end-to-end tests and benchmarks.
pub mod tokens {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey};

    pub const RSA_PEM: &[u8] = include_bytes!("../../testdata/keys/rsa.pem");
    pub const RSA_OTHER_PEM: &[u8] = include_bytes!("../../testdata/keys/rsa-other.pem");
    pub const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../../testdata/keys/rsa.pub.pem");
    pub const EC256_PEM: &[u8] = include_bytes!("../../testdata/keys/ec256.pem");
    pub const EC384_PEM: &[u8] = include_bytes!("../../testdata/keys/ec384.pem");
    pub const ED25519_PEM: &[u8] = include_bytes!("../../testdata/keys/ed25519.pem");

    /// A private key with the algorithm and `kid` it signs with.
    pub struct SigningKey {
        pub key: EncodingKey,
        pub alg: Algorithm,
        pub kid: String,
    }

    fn load(pem: &[u8], alg: Algorithm, kid: &str) -> SigningKey {
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        };
        #[allow(clippy::expect_used)]
        SigningKey { key: key.expect("test key PEM loads"), alg, kid: kid.to_string() }
    }

    pub fn rsa(alg: Algorithm) -> SigningKey {
        load(RSA_PEM, alg, "rsa-1")
    }
    pub fn rsa_other() -> SigningKey {
        load(RSA_OTHER_PEM, Algorithm::RS256, "rsa-2")
    }
    pub fn ec256() -> SigningKey {
        load(EC256_PEM, Algorithm::ES256, "ec-256")
    }
    pub fn ec384() -> SigningKey {
        load(EC384_PEM, Algorithm::ES384, "ec-384")
    }
    pub fn ed25519() -> SigningKey {
        load(ED25519_PEM, Algorithm::EdDSA, "ed-1")
    }

    /// A JWKS with the public half of each key, `kid` and `alg` set.
    pub fn jwks(keys: &[&SigningKey]) -> String {
        let keys = keys
            .iter()
            .map(|k| {
                #[allow(clippy::expect_used)]
                let mut jwk = Jwk::from_encoding_key(&k.key, k.alg).expect("public JWK from test key");
                jwk.common.key_id = Some(k.kid.clone());
                jwk
            })
            .collect();
        #[allow(clippy::expect_used)]
        serde_json::to_string(&JwkSet { keys }).expect("JWKS serializes")
    }

    pub fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs exactly the given header and payload JSON text: attacks need byte-level control.
    pub fn sign_raw(header_json: &str, payload_json: &str, key: &EncodingKey, alg: Algorithm) -> String {
        let input = format!("{}.{}", b64(header_json.as_bytes()), b64(payload_json.as_bytes()));
        #[allow(clippy::expect_used)]
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("test token signs");
        format!("{input}.{signature}")
    }

    /// A token with the key's `alg` and `kid` and the given claims.
    pub fn token(key: &SigningKey, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": format!("{:?}", key.alg), "typ": "JWT", "kid": key.kid});
        sign_raw(&header.to_string(), &claims.to_string(), &key.key, key.alg)
    }

    pub fn now_secs() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// One field of a structured record, as text, for terse assertions. `path` walks objects by
/// key (`tokens.input`); over an array it takes the rest of the path from every element and
/// joins what it finds with `,` (`calls.tool`). `decision` (at any depth: `tool_acl.decision`) is that object's
/// `verdict;rule=…;reason=…`. Leaf arrays are joined with `,`.
pub fn field(record: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    if path == "decision" {
        let part = |k: &str| record.get(k).and_then(Value::as_str);
        return Some(format!("{};rule={};reason={}", part("verdict")?, part("rule")?, part("reason")?));
    }
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let value = record.get(head)?;
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    match (value, rest) {
        (Value::Array(items), Some(rest)) => {
            let found: Vec<String> = items.iter().filter_map(|item| field(item, rest)).collect();
            (!found.is_empty()).then(|| found.join(","))
        }
        (Value::Array(items), None) => Some(items.iter().filter_map(text).collect::<Vec<_>>().join(",")),
        (value, Some(rest)) => field(value, rest),
        (value, None) => text(value),
    }
}

/// The principal the identity filter records, for tests of the filters after it.
pub mod principal {
    use crate::principal::{AuthMethod, Principal};

    /// An agent acting for a user in tenant `acme`, session `sess-1`, allowed to call tools.
    pub fn example() -> Principal {
        Principal {
            agent: "spiffe://warden.test/ns/agents/sa/planner".into(),
            user: Some("alice".into()),
            tenant: Some("acme".into()),
            session: Some("sess-1".into()),
            methods: vec![AuthMethod::Jwt],
            scopes: vec!["tools:call".into()],
            actors: Vec::new(),
            acr: None,
        }
    }

    /// `example()` with other parts, e.g. `with(|p| p.tenant = Some("globex".into()))`.
    pub fn with(change: impl FnOnce(&mut Principal)) -> Principal {
        let mut principal = example();
        change(&mut principal);
        principal
    }
}
