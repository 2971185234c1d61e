//! The filters as OCI images in the form Istio's agent pulls (`pkg/wasm/imagefetcher.go`): the
//! Wasm OCI artifact, whose manifest has exactly two layers, the runtime config
//! (`application/vnd.module.wasm.config.v1+json`) and the module
//! (`application/vnd.module.wasm.content.layer.v1+wasm`, the raw bytes). `build` writes each
//! image as an OCI image layout (a directory `skopeo` and `oras` read too); `push` sends a
//! layout to a registry with the `oci-client` crate, the manifest as the very bytes whose
//! `sha256` the layout names, so the digest a `WasmPlugin` pins is the one built.

use crate::Failure;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use warden_policy::root_ids;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The proxy-wasm ABI the Rust SDK's modules export (`proxy_abi_version_0_2_1`).
const ABI_VERSION: &str = "v0.2.1";

/// An image: its name, the module it carries and the root ids that module answers.
pub struct ImageSpec {
    pub name: &'static str,
    pub module: &'static str,
    pub root_ids: &'static [&'static str],
}

/// The images Warden ships: the whole chain in one module (`warden`), and each filter's own.
pub const IMAGES: [ImageSpec; 6] = [
    ImageSpec { name: "warden", module: "warden.wasm", root_ids: &root_ids::CHAIN },
    ImageSpec { name: "identity", module: "warden_identity.wasm", root_ids: &[root_ids::IDENTITY] },
    ImageSpec { name: "tool-acl", module: "warden_tool_acl.wasm", root_ids: &[root_ids::TOOL_ACL] },
    ImageSpec { name: "redaction", module: "warden_redaction.wasm", root_ids: &[root_ids::REDACTION] },
    ImageSpec { name: "token-budget", module: "warden_token_budget.wasm", root_ids: &[root_ids::TOKEN_BUDGET] },
    ImageSpec { name: "router", module: "warden_router.wasm", root_ids: &[root_ids::ROUTER, root_ids::ROUTER_ATTEMPT] },
];

/// One image written as a layout: where, and what a `WasmPlugin` pins.
pub struct Built {
    pub name: &'static str,
    pub layout: PathBuf,
    pub manifest_digest: String,
    pub module_bytes: usize,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn descriptor(media_type: &str, bytes: &[u8], title: Option<&str>) -> Value {
    let mut d = json!({"mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len()});
    if let Some(title) = title {
        d["annotations"] = json!({"org.opencontainers.image.title": title});
    }
    d
}

/// The runtime config, the manifest, and the module, as the blobs of one image.
pub struct Blobs {
    pub config: Vec<u8>,
    pub module: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// The image's blobs. JSON objects are written with their keys sorted (serde_json's map), so
/// the same module always gives the same manifest digest.
pub fn blobs(spec: &ImageSpec, module: Vec<u8>, version: &str) -> Blobs {
    let config = json!({"type": "envoy_proxy", "abiVersions": [ABI_VERSION], "config": {"root_ids": spec.root_ids}});
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &config, None),
        "layers": [
            descriptor(CONFIG_MEDIA_TYPE, &config, Some("runtime-config.json")),
            descriptor(WASM_MEDIA_TYPE, &module, Some("plugin.wasm")),
        ],
        "annotations": {
            "org.opencontainers.image.title": spec.name,
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.description": format!("Warden proxy-wasm module, root ids: {}", spec.root_ids.join(", ")),
        },
    });
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    Blobs { config, module, manifest }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// Writes every image as an OCI image layout under `out/<name>/`, tagged `version`.
pub fn build(wasm_dir: &Path, out: &Path, version: &str) -> Result<Vec<Built>, Failure> {
    let mut built = Vec::new();
    for spec in &IMAGES {
        let module = crate::read(&wasm_dir.join(spec.module))?;
        let module_bytes = module.len();
        let blobs = blobs(spec, module, version);
        let layout = out.join(spec.name);
        let blob_dir = layout.join("blobs/sha256");
        // A layout holds exactly this build: blobs of an earlier one would linger unreferenced.
        if layout.exists() {
            std::fs::remove_dir_all(&layout).map_err(|e| Failure::usage(format!("{}: {e}", layout.display())))?;
        }
        std::fs::create_dir_all(&blob_dir).map_err(|e| Failure::usage(format!("{}: {e}", blob_dir.display())))?;
        for bytes in [&blobs.config, &blobs.module, &blobs.manifest] {
            let digest = sha256_digest(bytes);
            write(&blob_dir.join(&digest["sha256:".len()..]), bytes)?;
        }
        let mut manifest = descriptor(MANIFEST_MEDIA_TYPE, &blobs.manifest, None);
        manifest["annotations"] = json!({"org.opencontainers.image.ref.name": version});
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest]});
        write(&layout.join("index.json"), &serde_json::to_vec(&index).unwrap_or_default())?;
        write(&layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        built.push(Built { name: spec.name, layout, manifest_digest: sha256_digest(&blobs.manifest), module_bytes });
    }
    Ok(built)
}

/// An image read back from its layout.
pub struct Layout {
    pub manifest: Vec<u8>,
    /// The blobs the manifest names, by digest.
    pub blobs: Vec<(String, Vec<u8>)>,
}

/// Reads back a layout written by `build`: the manifest bytes and the blobs it names, each
/// checked against its digest.
pub fn read_layout(layout: &Path) -> Result<Layout, Failure> {
    let bad = |why: String| Failure::refused(format!("{}: {why}", layout.display()));
    let index: Value = serde_json::from_slice(&crate::read(&layout.join("index.json"))?)
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let digest = index["manifests"][0]["digest"].as_str().ok_or_else(|| bad("index.json names no manifest".into()))?;
    let blob = |digest: &str| -> Result<Vec<u8>, Failure> {
        let hex = digest.strip_prefix("sha256:").ok_or_else(|| bad(format!("{digest}: not a sha256 digest")))?;
        let bytes = crate::read(&layout.join("blobs/sha256").join(hex))?;
        if sha256_digest(&bytes) != digest {
            return Err(bad(format!("blob {digest} does not match its digest")));
        }
        Ok(bytes)
    };
    let manifest = blob(digest)?;
    let parsed: Value = serde_json::from_slice(&manifest).map_err(|e| bad(format!("manifest: {e}")))?;
    let mut blobs = Vec::new();
    let named = std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().into_iter().flatten());
    for descriptor in named {
        let digest = descriptor["digest"].as_str().ok_or_else(|| bad("a descriptor without a digest".into()))?;
        if !blobs.iter().any(|(d, _)| d == digest) {
            blobs.push((digest.to_string(), blob(digest)?));
        }
    }
    Ok(Layout { manifest, blobs })
}

/// Pushes a layout to `reference` (`host[:port]/repository:tag`). `plain_http` for a registry
/// without TLS (a local test registry). Returns the pushed image by digest.
pub fn push(
    layout: &Path,
    reference: &str,
    plain_http: bool,
    credentials: Option<&(String, String)>,
) -> Result<String, Failure> {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    let Layout { manifest, blobs } = read_layout(layout)?;
    let image: Reference = reference.parse().map_err(|e| Failure::usage(format!("{reference}: {e}")))?;
    let registry = image.resolve_registry().to_string();
    let loopback = registry.starts_with("127.") || registry.starts_with("localhost") || registry.starts_with("[::1]");
    if plain_http && credentials.is_some() && !loopback {
        return Err(Failure::usage(format!(
            "{registry}: credentials are not sent over plain HTTP to a registry off this host: drop --plain-http"
        )));
    }
    let protocol = if plain_http { ClientProtocol::Http } else { ClientProtocol::Https };
    // reqwest is built without a default TLS provider: ring, installed once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig { protocol, ..ClientConfig::default() });
    let auth = match credentials {
        Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
        None => RegistryAuth::Anonymous,
    };
    let digest = sha256_digest(&manifest);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let failed = |what: &str, e: oci_client::errors::OciDistributionError| {
            Failure::refused(format!("{reference}: pushing the {what}: {e}"))
        };
        client.auth(&image, &auth, oci_client::RegistryOperation::Push).await.map_err(|e| failed("credentials", e))?;
        for (blob_digest, bytes) in blobs {
            client.push_blob(&image, bytes, &blob_digest).await.map_err(|e| failed("blob", e))?;
        }
        let content_type = MANIFEST_MEDIA_TYPE.parse().map_err(|_| Failure::usage("bad media type"))?;
        client.push_manifest_raw(&image, manifest, content_type).await.map_err(|e| failed("manifest", e))?;
        Ok::<(), Failure>(())
    })?;
    let repository = format!("{}/{}", image.resolve_registry(), image.repository());
    Ok(format!("{repository}@{digest}"))
}
