//! The identity root's work, natively: a key-set fetch sent when due, its answer loading the
//! keys, and a request that waited for them decided on its own stream and resumed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jsonwebtoken::Algorithm;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use warden_policy::host::Host;
use warden_policy::identity::compile::CompiledIdentity;
use warden_policy::identity::request::CapturedRequest;
use warden_policy::identity::vm::{release, IdentityVm, Waiting};
use warden_policy::policy::parse_document;
use warden_policy::testing::{tokens, MemoryHost};

const POLICY: &str = "identity:\n  issuers:\n    - name: corp\n      issuer: https://idp.warden.test\n      algorithms: [RS256]\n      jwks:\n        remote: { cluster: jwks, path: /jwks.json, authority: idp.warden.test }\n  routes: [{ name: api, agent: [jwt] }]\n";

fn vm() -> Rc<RefCell<IdentityVm>> {
    let section = parse_document(POLICY.as_bytes()).unwrap().identity.unwrap();
    Rc::new(RefCell::new(IdentityVm::new(CompiledIdentity::compile(&section).unwrap())))
}

#[test]
fn a_request_that_waited_for_keys_is_decided_and_resumed_when_they_arrive() {
    let rsa = tokens::rsa(Algorithm::RS256);
    let now_secs = 1_800_000_000;
    let token = tokens::token(
        &rsa,
        &serde_json::json!({"iss": "https://idp.warden.test", "sub": "planner", "exp": now_secs + 600}),
    );
    let auth = format!("Bearer {token}");
    let host = MemoryHost::with_headers(&[(":authority", "gw"), (":path", "/v1/chat"), ("authorization", &auth)]);
    host.now_secs.set(now_secs);
    let vm = vm();
    let policy = Rc::clone(&vm.borrow().policy);
    let request = CapturedRequest::capture(&host, &policy).unwrap();
    let deadline = host.now() + Duration::from_secs(1);
    vm.borrow_mut().waiting.push(Waiting { context_id: 7, request, issuer: 0, deadline });

    assert!(vm.borrow_mut().start_fetches(&host, host.now()).is_empty(), "the fetch was sent");
    let call = host.http_calls.borrow().last().cloned().expect("a key-set fetch");
    assert_eq!(call.cluster, "jwks");
    // An answer to a callout that is not ours changes nothing.
    assert_eq!(vm.borrow_mut().on_key_answer(&host, 99, Some(200), b"{}", host.now()), None);

    let jwks = tokens::jwks(&[&rsa]);
    let issuer = vm.borrow_mut().on_key_answer(&host, 1, Some(200), jwks.as_bytes(), host.now());
    assert_eq!(issuer, Some(0));
    assert_eq!(host.metric("warden.identity.jwks_fetch.success"), 1);
    release(&host, &vm, |w| Some(w.issuer) == issuer);
    assert_eq!(*host.entered.borrow(), [7], "decided on the waiting request's own stream");
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(host.field("warden.principal", "agent").as_deref(), Some("planner"));
    assert!(vm.borrow().waiting.is_empty());
}

#[test]
fn a_failed_fetch_keeps_waiting_requests_until_released_and_then_refuses_them() {
    let host =
        MemoryHost::with_headers(&[(":authority", "gw"), (":path", "/v1/chat"), ("authorization", "Bearer x.y.z")]);
    host.now_secs.set(1_800_000_000);
    let vm = vm();
    let policy = Rc::clone(&vm.borrow().policy);
    let request = CapturedRequest::capture(&host, &policy).unwrap();
    vm.borrow_mut().waiting.push(Waiting { context_id: 3, request, issuer: 0, deadline: host.now() });
    vm.borrow_mut().start_fetches(&host, host.now());
    assert_eq!(vm.borrow_mut().on_key_answer(&host, 1, None, b"", host.now()), Some(0));
    assert_eq!(host.metric("warden.identity.jwks_fetch.failure"), 1);
    release(&host, &vm, |_| true);
    assert_eq!(host.resumed.get(), 0, "never passed on");
    assert!(host.reply.borrow().as_ref().is_some_and(|r| r.status >= 400));
}
