//! HTTP clients for end-to-end tests: plain, and mTLS with an agent's client certificate.

use crate::repo;
use anyhow::{Context, Result};

fn install_crypto_provider() {
    // Several tests may race to install it; only the first call can succeed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn plain() -> Result<reqwest::Client> {
    install_crypto_provider();
    Ok(reqwest::Client::builder().no_proxy().build()?)
}

/// A client that trusts the test CA and presents `testdata/tls/<agent>.pem` as its identity.
pub fn mtls(agent: &str) -> Result<reqwest::Client> {
    install_crypto_provider();
    let ca = std::fs::read(repo::testdata("tls/ca.pem"))?;
    let mut identity = std::fs::read(repo::testdata(&format!("tls/{agent}.pem")))?;
    identity.extend(std::fs::read(repo::testdata(&format!("tls/{agent}.key")))?);
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .identity(reqwest::Identity::from_pem(&identity).context("agent certificate and key")?)
        .build()?)
}
