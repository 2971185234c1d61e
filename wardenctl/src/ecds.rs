//! `wardenctl render ecds`: a policy as the Extension Config Discovery (ECDS) resources of a
//! chain's Warden filters, so Envoy takes a new policy without a restart.
//!
//! From an Envoy config with the filters inline (`envoy/warden.yaml`, say), it writes one
//! `DiscoveryResponse` file per Warden HTTP filter (`<dir>/<filter>.yaml`: the filter's Wasm
//! config with the policy in place) and, with `--envoy-out`, the same Envoy config with each of
//! those filters loaded through `config_discovery` from its file, the directory watched. Each
//! file is written beside its final name and moved there, the change Envoy's watch reacts to.
//! A policy that a filter would refuse is refused here, before any file is touched.

use crate::envoy_check;
use crate::Failure;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const EXTENSION_TYPE: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// What was written.
pub struct Rendered {
    pub files: Vec<PathBuf>,
    pub version: String,
}

fn usage(path: &Path, e: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("{}: {e}", path.display()))
}

/// Writes `bytes` to `path` by way of a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&temporary, bytes).map_err(|e| usage(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| usage(path, e))
}

pub fn render(envoy: &Path, policy: &Path, dir: &Path, envoy_out: Option<&Path>) -> Result<Rendered, Failure> {
    let policy_text = crate::read(policy)?;
    let policy_text = String::from_utf8(policy_text).map_err(|e| usage(policy, e))?;
    let version = hex::encode(&Sha256::digest(policy_text.as_bytes())[..8]);
    let config_text = crate::read(envoy)?;
    let mut config =
        Value::deserialize(serde_norway::Deserializer::from_slice(&config_text)).map_err(|e| usage(envoy, e))?;
    std::fs::create_dir_all(dir).map_err(|e| usage(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| usage(dir, e))?;
    // Every filter's new config is built and checked (its policy compiled as it would compile
    // it, the header flag its policy needs) before any file is written: all or nothing.
    let mut rendered: Vec<(String, Value)> = Vec::new();
    let mut findings = Vec::new();
    // The connection managers' filters; a cluster's upstream filters (the router's attempt
    // plugin) keep their inline policy.
    let listeners = config.pointer_mut("/static_resources/listeners").and_then(Value::as_array_mut);
    for listener in listeners.into_iter().flatten() {
        let chains = listener.get_mut("filter_chains").and_then(Value::as_array_mut);
        for chain in chains.into_iter().flatten() {
            let filters = chain.get_mut("filters").and_then(Value::as_array_mut);
            for network in filters.into_iter().flatten() {
                let Some(http_filters) =
                    network.pointer_mut("/typed_config/http_filters").and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for filter in http_filters.iter_mut() {
                    let Some(name) = filter.get("name").and_then(Value::as_str).map(str::to_string) else { continue };
                    let Some(mut typed) = filter.get("typed_config").cloned() else { continue };
                    let root_id = typed.pointer("/config/root_id").and_then(Value::as_str).unwrap_or_default();
                    if typed.get("@type").and_then(Value::as_str) != Some(WASM_TYPE) || !root_id.starts_with("warden.")
                    {
                        continue;
                    }
                    typed["config"]["configuration"] =
                        json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": policy_text});
                    envoy_check::check_wasm(&typed["config"], &mut findings);
                    let file = dir.join(format!("{name}.yaml"));
                    *filter = json!({
                        "name": name,
                        "config_discovery": {
                            "config_source": {
                                "resource_api_version": "V3",
                                "path_config_source": {"path": file, "watched_directory": {"path": dir}},
                            },
                            "type_urls": [WASM_TYPE],
                        },
                    });
                    rendered.push((name, typed));
                }
            }
        }
    }
    if !findings.is_empty() {
        return Err(Failure::refused(format!("{}: {}", policy.display(), findings.join("\n"))));
    }
    if rendered.is_empty() {
        return Err(Failure::refused(format!("{}: no Warden Wasm filter in a connection manager", envoy.display())));
    }
    let mut files = Vec::new();
    for (name, typed) in rendered {
        let response = json!({
            "version_info": version,
            "resources": [{"@type": EXTENSION_TYPE, "name": name, "typed_config": typed}],
        });
        let file = dir.join(format!("{name}.yaml"));
        write_atomically(&file, &serde_json::to_vec_pretty(&response).unwrap_or_default())?;
        files.push(file);
    }
    if let Some(out) = envoy_out {
        // An xDS subscription, even from a file, needs the node named.
        if config.get("node").is_none() {
            config["node"] = json!({"id": "warden", "cluster": "warden"});
        }
        std::fs::write(out, serde_json::to_vec_pretty(&config).unwrap_or_default()).map_err(|e| usage(out, e))?;
    }
    Ok(Rendered { files, version })
}
