//! `wardenctl`: Warden's policy and operations tool, sharing the filters' policy crate.
//!
//! Exit codes: 0 done (a policy or config is valid); 1 what was given is refused (an invalid
//! policy, a config that would hang every request, an unreadable audit line); 2 the command
//! itself is wrong (usage, a file that cannot be read).

mod audit_report;
mod ecds;
mod envoy_check;
mod explain;
mod istio;
mod oci;
mod yaml_out;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden_policy::compiled_policy::CompiledPolicy;

#[derive(Parser)]
#[command(name = "wardenctl", version, about = "Validate and explain Warden policies, read its audit log.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a policy as every filter does at configure time (errors name the field), and/or
    /// check Envoy configs and Istio manifests: a body-reading filter that holds the request
    /// headers needs `allow_on_headers_stop_iteration: true`, and every inline policy compiles.
    Validate {
        /// Policy documents (YAML or JSON).
        policies: Vec<PathBuf>,
        /// An Envoy config, Istio WasmPlugin or EnvoyFilter to check (repeatable).
        #[arg(long = "envoy", value_name = "CONFIG")]
        envoy: Vec<PathBuf>,
    },
    /// Each filter's decision for one request, with rule and reason, without a proxy. Counters,
    /// approvals and sessions are not consulted: this is what the policy says.
    Explain(Box<explain::Request>),
    /// Reports from audit lines (Envoy's access log, one JSON record a line): spend and tokens
    /// by tenant, agent, model and day, denials by filter and reason, top tools, failovers.
    Audit {
        /// Access-log files; `-` (or none) reads standard input.
        logs: Vec<PathBuf>,
        /// Only the records of this session.
        #[arg(long)]
        session: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Renders what a deployment loads from a policy.
    Render {
        #[command(subcommand)]
        what: Render,
    },
    /// Builds every filter's OCI image (and the whole chain's, `warden`) from the built modules,
    /// as OCI image layouts in the form Istio's agent pulls: two layers, the runtime config
    /// (application/vnd.module.wasm.config.v1+json) and the module
    /// (application/vnd.module.wasm.content.layer.v1+wasm).
    Oci {
        /// Where the built modules are.
        #[arg(long, default_value = "target/wasm32-wasip1/release")]
        wasm_dir: PathBuf,
        /// Where to write one layout per image.
        #[arg(long, default_value = "target/oci")]
        out: PathBuf,
        /// The tag the layouts carry.
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        tag: String,
    },
    /// Pushes the images `oci` built to REGISTRY/PREFIX/<image>:<tag> and prints each by digest
    /// (what a WasmPlugin's `url` and `sha256` pin). Credentials: --username, and the password
    /// in WARDENCTL_REGISTRY_PASSWORD (never on the command line).
    Push {
        /// Where to push, e.g. registry.example.com/platform/warden.
        #[arg(long)]
        to: String,
        /// Only these images (repeatable; default: every image built).
        #[arg(long = "image")]
        images: Vec<String>,
        #[arg(long, default_value = "target/oci")]
        oci_dir: PathBuf,
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        tag: String,
        /// Talk plain HTTP (a registry on loopback without TLS).
        #[arg(long)]
        plain_http: bool,
        #[arg(long)]
        username: Option<String>,
    },
}

#[derive(Subcommand)]
enum Render {
    /// The chain's Warden filters as ECDS resources: one DiscoveryResponse file per filter in
    /// OUT (written beside its name and moved into place, which Envoy's directory watch picks up),
    /// and with --envoy-out the Envoy config that loads them from there. A policy a filter would
    /// refuse is refused before anything is written.
    Ecds {
        /// The policy document.
        policy: PathBuf,
        /// The Envoy config with the filters inline (e.g. envoy/warden.yaml).
        #[arg(long)]
        envoy: PathBuf,
        /// The directory Envoy watches.
        #[arg(long)]
        out: PathBuf,
        /// Where to write the Envoy config that loads the filters through ECDS.
        #[arg(long)]
        envoy_out: Option<PathBuf>,
    },
    /// One namespace's Istio manifests from a policy, on standard output: identity as a
    /// WasmPlugin; the body-reading filters as one EnvoyFilter (they need the header flag a
    /// WasmPlugin cannot set), with the router's providers' hop and a ServiceEntry with TLS
    /// origination per external provider. The policy and every Wasm config are checked first.
    Istio {
        /// The policy document.
        policy: PathBuf,
        /// The namespace the manifests go to (Istio's root namespace, e.g. istio-system, makes
        /// a manifest without --selector or --gateway mesh-wide).
        #[arg(long)]
        namespace: String,
        /// Workload labels the filters attach to, KEY=VALUE (repeatable); none: every workload
        /// of the namespace.
        #[arg(long = "selector", value_name = "KEY=VALUE")]
        selector: Vec<String>,
        /// A Kubernetes Gateway (gateway.networking.k8s.io) of the namespace to attach to
        /// (targetRefs) instead of a selector.
        #[arg(long)]
        gateway: Option<String>,
        /// The selected workloads are gateways (Envoy's GATEWAY context), not sidecars.
        #[arg(long)]
        gateway_workload: bool,
        /// Where the images are: IMAGES/<image>:<tag>.
        #[arg(long, default_value = "oci://registry.example.internal/warden")]
        images: String,
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        tag: String,
        /// The route (its Istio name) carrying model calls, which the router sends to the
        /// providers; needed when the policy has a router.
        #[arg(long)]
        model_route: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A command that could not be carried out: its message, and the exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// What was given is refused (exit 1).
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }

    /// The command cannot be carried out as asked (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: 2, message: message.into() }
    }
}

pub fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// Compiles a policy file; the proxy's environment is this process's.
pub fn compile(path: &Path) -> Result<CompiledPolicy, Failure> {
    let text = read(path)?;
    let env = |name: &str| std::env::var(name).ok();
    CompiledPolicy::compile(&text, &env).map_err(|e| Failure::refused(format!("{}: {e}", path.display())))
}

fn validate(policies: &[PathBuf], envoy: &[PathBuf]) -> Result<String, Failure> {
    if policies.is_empty() && envoy.is_empty() {
        return Err(Failure::usage("give policies, --envoy CONFIG, or both (see --help)"));
    }
    let mut report = Vec::new();
    for path in policies {
        let compiled = compile(path)?;
        let sections: Vec<&str> = [
            ("identity", compiled.identity.is_some()),
            ("toolAcl", compiled.tool_acl.is_some()),
            ("redaction", compiled.redaction.is_some()),
            ("tokenBudget", compiled.token_budget.is_some()),
            ("router", compiled.router.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        report.push(format!("{}: valid ({})", path.display(), sections.join(", ")));
        let env = compiled.environment();
        if !env.is_empty() {
            report.push(format!(
                "  the proxy must expose to the filters' VMs (vm_config.environment_variables.host_env_keys): {}",
                env.join(", ")
            ));
        }
    }
    let mut refusals = Vec::new();
    for path in envoy {
        let text = read(path)?;
        match envoy_check::check(&text) {
            Ok(checked) => report.push(format!(
                "{}: {} Warden filter(s) checked: each body-reading one can hold the request headers or \
                 releases them, and each inline policy compiles",
                path.display(),
                checked
            )),
            Err(envoy_check::Refused::Unreadable(why)) => {
                return Err(Failure::usage(format!("{}: {why}", path.display())))
            }
            Err(envoy_check::Refused::Findings(findings)) => {
                refusals.extend(findings.into_iter().map(|f| format!("{}: {f}", path.display())))
            }
        }
    }
    if refusals.is_empty() {
        Ok(report.join("\n"))
    } else {
        Err(Failure::refused(refusals.join("\n")))
    }
}

fn run(cli: Cli) -> Result<String, Failure> {
    match cli.command {
        Command::Validate { policies, envoy } => validate(&policies, &envoy),
        Command::Explain(request) => explain::run(&request),
        Command::Audit { logs, session, output } => audit_report::run(&logs, session.as_deref(), output),
        Command::Render { what: Render::Ecds { policy, envoy, out, envoy_out } } => {
            let rendered = ecds::render(&envoy, &policy, &out, envoy_out.as_deref())?;
            let files: Vec<String> = rendered.files.iter().map(|f| f.display().to_string()).collect();
            Ok(format!("policy version {}: {}", rendered.version, files.join(", ")))
        }
        Command::Render {
            what: Render::Istio { policy, namespace, selector, gateway, gateway_workload, images, tag, model_route },
        } => {
            let target = istio::Target {
                namespace: &namespace,
                selector: &selector,
                gateway: gateway.as_deref(),
                gateway_workload,
                images: &images,
                tag: &tag,
                model_route: model_route.as_deref(),
            };
            istio::render(&policy, &target).map(|yaml| yaml.trim_end().to_string())
        }
        Command::Oci { wasm_dir, out, tag } => {
            let built = oci::build(&wasm_dir, &out, &tag)?;
            Ok(built
                .iter()
                .map(|b| {
                    format!("{:<13} {:>9} bytes  {}  {}", b.name, b.module_bytes, b.manifest_digest, b.layout.display())
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        Command::Push { to, images, oci_dir, tag, plain_http, username } => {
            let auth = match username {
                Some(user) => {
                    let password = std::env::var("WARDENCTL_REGISTRY_PASSWORD")
                        .map_err(|_| Failure::usage("--username needs WARDENCTL_REGISTRY_PASSWORD"))?;
                    Some((user, password))
                }
                None => None,
            };
            let mut pushed = Vec::new();
            for spec in oci::IMAGES.iter().filter(|s| images.is_empty() || images.iter().any(|i| i == s.name)) {
                let reference = format!("{}/{}:{tag}", to.trim_end_matches('/'), spec.name);
                let by_digest = oci::push(&oci_dir.join(spec.name), &reference, plain_http, auth.as_ref())?;
                pushed.push(format!("{reference} -> {by_digest}"));
            }
            if pushed.is_empty() {
                return Err(Failure::usage(format!("no image is named {images:?}")));
            }
            Ok(pushed.join("\n"))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(out) => {
            if !out.is_empty() {
                // A reader that went away (`| head`) is not an error of ours.
                use std::io::Write;
                let _ = writeln!(std::io::stdout(), "{out}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("wardenctl: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
