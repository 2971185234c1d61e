//! The identity filter's reply to a host fault; the host itself is `warden_proxy_host`.

use warden_policy::host::{Host, HostError};
pub use warden_proxy_host::ProxyHost;

/// Refuses the current request after a host call failed: a request nobody could check is
/// never passed on.
pub fn refuse_after_host_fault(error: &HostError) {
    log::error!("warden identity: host call failed: {error}");
    let body = br#"{"error":{"message":"identity check failed","type":"service_unavailable","code":"host_error"}}"#;
    let _ = ProxyHost.send_local_reply(503, &[("content-type", "application/json")], body);
}
