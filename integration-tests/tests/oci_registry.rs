//! The filters' OCI images through a real registry and a standard client: `wardenctl oci`
//! builds them, `wardenctl push` sends them to Debian's `docker-registry`, and `skopeo` pulls
//! each back by the digest `push` printed. Istio's agent (`pkg/wasm/imagefetcher.go`) takes an
//! OCI manifest with exactly two layers, one of them the raw module as
//! `application/vnd.module.wasm.content.layer.v1+wasm`, and checks a WasmPlugin's `sha256`
//! against the manifest's digest: all of that is checked here, with the bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::Command;
use warden_integration_tests::repo;
use warden_integration_tests::services::Registry;

const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
const WASM_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wardenctl() -> Command {
    let mut command = Command::new(repo::root().join("target/debug/wardenctl"));
    command.current_dir(repo::root());
    command
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn every_image_is_pulled_back_by_digest_in_the_form_istio_takes() {
    let registry = Registry::start().unwrap();
    let layouts = tempfile::tempdir().unwrap();
    let out = layouts.path().to_str().unwrap();
    run(wardenctl().args(["oci", "--out", out, "--tag", "test"]));
    let to = format!("{}/platform/warden", registry.address());
    let pushed = run(wardenctl().args(["push", "--to", &to, "--oci-dir", out, "--tag", "test", "--plain-http"]));

    let images = [
        ("warden", "warden.wasm", 6),
        ("identity", "warden_identity.wasm", 1),
        ("tool-acl", "warden_tool_acl.wasm", 1),
        ("redaction", "warden_redaction.wasm", 1),
        ("token-budget", "warden_token_budget.wasm", 1),
        ("router", "warden_router.wasm", 2),
    ];
    assert_eq!(pushed.lines().count(), images.len(), "{pushed}");
    for (name, module, root_ids) in images {
        let line = pushed
            .lines()
            .find(|l| l.starts_with(&format!("{to}/{name}:test -> ")))
            .unwrap_or_else(|| panic!("{name}: {pushed}"));
        let by_digest = line.rsplit(" -> ").next().unwrap();
        let digest = by_digest.rsplit_once('@').unwrap().1;

        // The manifest, by digest, as a standard client sees it: its bytes hash to that digest.
        let raw = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{by_digest}"),
        ]));
        assert_eq!(sha256(raw.as_bytes()), digest, "{name}: the manifest's bytes are what the digest names");
        let manifest: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "{name}: Istio's OCI variant needs exactly two layers");
        assert_eq!(layers[0]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(layers[1]["mediaType"], WASM_MEDIA_TYPE);

        // The tag resolves to the same manifest.
        let tagged = run(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{to}/{name}:test"),
        ]));
        assert_eq!(tagged, raw, "{name}: tag and digest");

        // Pulled whole: the module's bytes are the built module's, the runtime config names its root ids.
        let pulled = tempfile::tempdir().unwrap();
        let dest = format!("dir:{}", pulled.path().display());
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{by_digest}"),
            &dest,
        ]));
        let local = std::fs::read(repo::root().join("target/wasm32-wasip1/release").join(module)).unwrap();
        let layer_digest = layers[1]["digest"].as_str().unwrap();
        assert_eq!(layer_digest, sha256(&local), "{name}: the layer is the built module");
        let blob = std::fs::read(pulled.path().join(layer_digest.trim_start_matches("sha256:"))).unwrap();
        assert!(blob == local, "{name}: the pulled module differs from the built one");
        assert_eq!(&blob[..4], b"\0asm", "{name}: a raw Wasm module, not an archive");
        let config_digest = layers[0]["digest"].as_str().unwrap();
        let config: Value = serde_json::from_slice(
            &std::fs::read(pulled.path().join(config_digest.trim_start_matches("sha256:"))).unwrap(),
        )
        .unwrap();
        assert_eq!(config["type"], "envoy_proxy");
        assert_eq!(config["config"]["root_ids"].as_array().unwrap().len(), root_ids, "{name}: {config}");
    }
}

/// A layout whose module was altered after it was built is refused before anything is pushed.
#[test]
fn a_tampered_layout_is_not_pushed() {
    let registry = Registry::start().unwrap();
    let layouts = tempfile::tempdir().unwrap();
    let out = layouts.path().to_str().unwrap();
    run(wardenctl().args(["oci", "--out", out, "--tag", "test"]));
    let blobs = layouts.path().join("router/blobs/sha256");
    let module = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&module).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&module, bytes).unwrap();
    let to = format!("{}/warden", registry.address());
    let out = wardenctl()
        .args(["push", "--to", &to, "--oci-dir", out, "--image", "router", "--plain-http"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not match its digest"), "{stderr}");
    let listed = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{to}/router:0.1.0")])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "nothing was pushed");
}
