//! The real Envoy, started from a repository config on free loopback ports.
//!
//! A test names a config under `envoy/`, the policy each Warden filter should get, and where
//! each cluster's single endpoint listens. The harness rewrites the listener, admin and cluster
//! ports, writes the result to a temporary folder, starts Envoy from the repository root (the
//! configs use paths relative to it), waits until the admin endpoint says `LIVE`, and kills the
//! process when dropped — printing Envoy's log if the test is failing.

use crate::{http_client, ports, repo};
use anyhow::{anyhow, bail, Context, Result};
use serde_norway::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EnvoyBuilder {
    config: PathBuf,
    version: String,
    policies: BTreeMap<String, String>,
    clusters: BTreeMap<String, u16>,
    concurrency: u32,
    removed_filters: Vec<String>,
    code: BTreeMap<String, PathBuf>,
    hcm: Vec<(String, Value)>,
    added_filters: Vec<Value>,
    env: Vec<(String, String)>,
    replaced: Vec<(String, String)>,
    rerouted: Vec<(String, String)>,
}

pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    pub version: String,
    pub admin_port: u16,
    listeners: BTreeMap<String, u16>,
}

impl Envoy {
    /// Starts from `config`, a path relative to the repository root.
    pub fn builder(config: &str) -> EnvoyBuilder {
        EnvoyBuilder {
            config: repo::root().join(config),
            version: repo::envoy_version(),
            policies: BTreeMap::new(),
            clusters: BTreeMap::new(),
            concurrency: 2,
            removed_filters: Vec::new(),
            code: BTreeMap::new(),
            hcm: Vec::new(),
            added_filters: Vec::new(),
            env: Vec::new(),
            replaced: Vec::new(),
            rerouted: Vec::new(),
        }
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.listeners.get(listener).copied().unwrap_or(0)
    }

    /// `http://127.0.0.1:<port>` of a listener.
    pub fn url(&self, listener: &str) -> String {
        format!("http://127.0.0.1:{}", self.port(listener))
    }

    /// Envoy's process id (for its memory, in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Access-log lines (the audit records), one JSON object each.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until at least `n` access-log records are written (Envoy flushes them shortly
    /// after each request ends).
    pub async fn wait_for_access_log(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.access_log();
            if records.len() >= n || Instant::now() > deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A counter or gauge from the admin `/stats` endpoint; 0 when absent.
    pub async fn stat(&self, name: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/stats?filter=^{}$", self.admin_port, regex_escape(name));
        let Ok(response) = admin_get(&url).await else {
            return 0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

async fn admin_get(url: &str) -> Result<reqwest::Response> {
    Ok(http_client::plain()?.get(url).send().await?)
}

fn regex_escape(name: &str) -> String {
    name.replace('.', "\\.")
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- Envoy {} log ----\n{}\n---- end of Envoy log ----", self.version, self.log());
        }
    }
}

impl EnvoyBuilder {
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_string();
        self
    }

    /// The policy document for the Wasm filter named `filter` (e.g. `warden.identity`).
    pub fn policy(mut self, filter: &str, policy: &str) -> Self {
        self.policies.insert(filter.to_string(), policy.to_string());
        self
    }

    /// Points cluster `name` at `127.0.0.1:<port>`.
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.insert(name.to_string(), port);
        self
    }

    /// Removes the HTTP filter named `filter` from every chain: the same Envoy, without Warden,
    /// for side-by-side benchmarks.
    pub fn without_filter(mut self, filter: &str) -> Self {
        self.removed_filters.push(filter.to_string());
        self
    }

    /// Runs another `.wasm` in place of the Wasm filter named `filter` (same position, same
    /// configuration): e.g. a do-nothing filter, to measure the Wasm runtime's own cost.
    pub fn wasm_code(mut self, filter: &str, wasm: &Path) -> Self {
        self.code.insert(filter.to_string(), wasm.to_path_buf());
        self
    }

    /// Sets `key` to `yaml` in every HTTP connection manager of a listener with an address
    /// (e.g. an operator's `internal_address_config`).
    pub fn hcm(mut self, key: &str, yaml: &str) -> Self {
        let value = serde_norway::from_str(yaml).unwrap_or(Value::Null);
        self.hcm.push((key.to_string(), value));
        self
    }

    /// Inserts an HTTP filter (the YAML of one `http_filters` entry) just before Envoy's router
    /// in every chain: e.g. Envoy's own `buffer` filter after Warden's.
    pub fn filter_before_router(mut self, yaml: &str) -> Self {
        self.added_filters.push(serde_norway::from_str(yaml).unwrap_or(Value::Null));
        self
    }

    /// Sets a variable in Envoy's environment (e.g. a provider credential a Wasm VM exposes).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces every string value `from` in the config with `to`: e.g. an SDS file's path with
    /// a copy the test rotates.
    pub fn replace_value(mut self, from: &str, to: &str) -> Self {
        self.replaced.push((from.to_string(), to.to_string()));
        self
    }

    /// Sends the route named `route` straight to `cluster`, without its retry policy: e.g. the
    /// model route to one provider, for the chain without the router.
    pub fn route_to(mut self, route: &str, cluster: &str) -> Self {
        self.rerouted.push((route.to_string(), cluster.to_string()));
        self
    }

    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    /// Writes the config and returns it with the listener ports chosen, without starting Envoy.
    pub fn render(&self, dir: &Path) -> Result<(PathBuf, u16, BTreeMap<String, u16>)> {
        let text =
            std::fs::read_to_string(&self.config).with_context(|| format!("reading {}", self.config.display()))?;
        let mut config: Value = serde_norway::from_str(&text).context("parsing the Envoy config")?;
        let admin_port = ports::free_port()?;
        set_path(&mut config, &["admin", "address", "socket_address", "port_value"], Value::from(admin_port))?;
        let mut listeners = BTreeMap::new();
        for listener in seq_mut(&mut config, &["static_resources", "listeners"]) {
            if listener.get("internal_listener").is_some() {
                // In-process, no socket.
                continue;
            }
            let name = listener.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let port = ports::free_port()?;
            set_path(listener, &["address", "socket_address", "port_value"], Value::from(port))?;
            listeners.insert(name, port);
        }
        for cluster in seq_mut(&mut config, &["static_resources", "clusters"]) {
            let name = cluster.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            if let Some(port) = self.clusters.get(&name) {
                for endpoint in seq_mut(cluster, &["load_assignment", "endpoints"]) {
                    for lb in seq_mut(endpoint, &["lb_endpoints"]) {
                        set_path(lb, &["endpoint", "address", "socket_address", "port_value"], Value::from(*port))?;
                    }
                }
            }
        }
        for (from, to) in &self.replaced {
            if replace_string(&mut config, from, to) == 0 {
                bail!("no value {from:?} in {}", self.config.display());
            }
        }
        for (filter, policy) in &self.policies {
            if replace_policy(&mut config, filter, policy) == 0 {
                bail!("no Wasm filter named {filter} in {}", self.config.display());
            }
        }
        for (filter, wasm) in &self.code {
            if !replace_code(&mut config, filter, wasm) {
                bail!("no Wasm filter named {filter} in {}", self.config.display());
            }
        }
        for filter in &self.removed_filters {
            remove_filter(&mut config, filter);
        }
        for (route, cluster) in &self.rerouted {
            if !reroute(&mut config, route, cluster) {
                bail!("no route named {route} in {}", self.config.display());
            }
        }
        // The agents' side only: an internal listener (the router's providers hop) keeps its own.
        let mut managers = Vec::new();
        for listener in seq_mut(&mut config, &["static_resources", "listeners"]) {
            if listener.get("internal_listener").is_none() {
                managers.extend(http_connection_managers(listener));
            }
        }
        for manager in managers {
            for (key, value) in &self.hcm {
                manager[key.as_str()] = value.clone();
            }
            if let Some(Value::Sequence(filters)) = manager.get_mut("http_filters") {
                let router = filters
                    .iter()
                    .position(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.router"))
                    .unwrap_or(filters.len());
                for (i, filter) in self.added_filters.iter().enumerate() {
                    filters.insert(router + i, filter.clone());
                }
            }
        }
        // The audit log goes to a file the test can read, not to the test's stdout.
        let access_log = dir.join("access.log");
        redirect_access_logs(&mut config, &access_log);
        let path = dir.join("envoy.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        Ok((path, admin_port, listeners))
    }

    pub async fn start(self) -> Result<Envoy> {
        let binary = repo::envoy_binary(&self.version);
        if !binary.exists() {
            bail!("Envoy {} is not installed at {}: run `make setup`", self.version, binary.display());
        }
        // The ports are free when chosen, but another process may take one before Envoy binds
        // it (tests run in parallel): then Envoy starts again on ports chosen anew.
        let mut attempt = 1;
        loop {
            match self.start_once(&binary).await {
                Err(e) if attempt < 3 && format!("{e:#}").contains("Address already in use") => attempt += 1,
                result => return result,
            }
        }
    }

    async fn start_once(&self, binary: &Path) -> Result<Envoy> {
        let dir = tempfile::tempdir()?;
        let (config_path, admin_port, listeners) = self.render(dir.path())?;
        let log = std::fs::File::create(dir.path().join("envoy.log"))?;
        let child = Command::new(binary)
            .current_dir(repo::root())
            .arg("-c")
            .arg(&config_path)
            .args(["--concurrency", &self.concurrency.to_string(), "--disable-hot-restart", "--log-level", "info"])
            // Access-log files are flushed every 10 s by default; tests read them sooner.
            .args(["--file-flush-interval-msec", "100"])
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut envoy = Envoy { child, dir, version: self.version.clone(), admin_port, listeners };
        envoy.wait_ready().await?;
        Ok(envoy)
    }
}

impl Envoy {
    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("http://127.0.0.1:{}/ready", self.admin_port);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("Envoy {} exited with {status} before it was ready:\n{}", self.version, self.log());
            }
            if let Ok(response) = admin_get(&url).await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(anyhow!("Envoy {} was not ready within {READY_TIMEOUT:?}:\n{}", self.version, self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The plugin configuration (the policy) a repository config gives the Wasm filter `filter`.
pub fn config_policy(config: &str, filter: &str) -> Result<String> {
    fn find(value: &Value, filter: &str) -> Option<String> {
        match value {
            Value::Mapping(map) => {
                if map.get("name").and_then(Value::as_str) == Some(filter) {
                    let policy =
                        map.get("typed_config")?.get("config")?.get("configuration")?.get("value")?.as_str()?;
                    return Some(policy.to_string());
                }
                map.iter().find_map(|(_, child)| find(child, filter))
            }
            Value::Sequence(items) => items.iter().find_map(|item| find(item, filter)),
            _ => None,
        }
    }
    let text = std::fs::read_to_string(repo::root().join(config))?;
    let value: Value = serde_norway::from_str(&text)?;
    find(&value, filter).ok_or_else(|| anyhow!("{config} has no Wasm filter named {filter}"))
}

/// Runs `envoy --mode validate` on a config; returns Envoy's output on failure.
pub fn validate(version: &str, config: &Path) -> Result<String> {
    let output = Command::new(repo::envoy_binary(version))
        .current_dir(repo::root())
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(config)
        .output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        Err(anyhow!(text))
    }
}

fn set_path(value: &mut Value, path: &[&str], new: Value) -> Result<()> {
    let mut current = value;
    for key in path {
        current = current.get_mut(*key).ok_or_else(|| anyhow!("config has no {}", path.join(".")))?;
    }
    *current = new;
    Ok(())
}

fn seq_mut<'v>(value: &'v mut Value, path: &[&str]) -> Vec<&'v mut Value> {
    let mut current = Some(value);
    for key in path {
        current = current.and_then(|v| v.get_mut(*key));
    }
    match current {
        Some(Value::Sequence(items)) => items.iter_mut().collect(),
        _ => Vec::new(),
    }
}

/// Sets the plugin configuration of every Wasm filter named `filter`; returns how many.
fn replace_policy(value: &mut Value, filter: &str, policy: &str) -> usize {
    match value {
        Value::Mapping(map) => {
            let mut count = 0;
            if map.get("name").and_then(Value::as_str) == Some(filter) {
                if let Some(configuration) = map
                    .get_mut("typed_config")
                    .and_then(|t| t.get_mut("config"))
                    .and_then(|c| c.get_mut("configuration"))
                {
                    configuration["value"] = Value::from(policy);
                    count += 1;
                }
            }
            for (_, child) in map.iter_mut() {
                count += replace_policy(child, filter, policy);
            }
            count
        }
        Value::Sequence(items) => items.iter_mut().map(|item| replace_policy(item, filter, policy)).sum(),
        _ => 0,
    }
}

/// Points the Wasm filter named `filter` at another module; false when there is none.
fn replace_code(value: &mut Value, filter: &str, wasm: &Path) -> bool {
    match value {
        Value::Mapping(map) => {
            let mut found = false;
            if map.get("name").and_then(Value::as_str) == Some(filter) {
                if let Some(local) = map
                    .get_mut("typed_config")
                    .and_then(|t| t.get_mut("config"))
                    .and_then(|c| c.get_mut("vm_config"))
                    .and_then(|v| v.get_mut("code"))
                    .and_then(|c| c.get_mut("local"))
                {
                    local["filename"] = Value::from(wasm.display().to_string());
                    found = true;
                }
            }
            for (_, child) in map.iter_mut() {
                found |= replace_code(child, filter, wasm);
            }
            found
        }
        Value::Sequence(items) => items.iter_mut().fold(false, |found, item| replace_code(item, filter, wasm) | found),
        _ => false,
    }
}

const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Every HTTP connection manager's `typed_config` in a config.
pub fn http_connection_managers(value: &mut Value) -> Vec<&mut Value> {
    match value {
        Value::Mapping(map) if map.get("@type").and_then(Value::as_str) == Some(HCM_TYPE) => vec![value],
        Value::Mapping(map) => map.iter_mut().flat_map(|(_, child)| http_connection_managers(child)).collect(),
        Value::Sequence(items) => items.iter_mut().flat_map(http_connection_managers).collect(),
        _ => Vec::new(),
    }
}

/// Points the route named `route` at `cluster`, dropping its retry policy.
fn reroute(value: &mut Value, route: &str, cluster: &str) -> bool {
    match value {
        Value::Mapping(map) => {
            let named = map.get("name").and_then(Value::as_str) == Some(route);
            if let (true, Some(Value::Mapping(action))) = (named, map.get_mut("route")) {
                action.insert(Value::from("cluster"), Value::from(cluster));
                action.remove("retry_policy");
                return true;
            }
            map.iter_mut().fold(false, |found, (_, child)| reroute(child, route, cluster) | found)
        }
        Value::Sequence(items) => items.iter_mut().fold(false, |found, item| reroute(item, route, cluster) | found),
        _ => false,
    }
}

/// Replaces every string scalar equal to `from` with `to`; how many were replaced.
fn replace_string(value: &mut Value, from: &str, to: &str) -> usize {
    match value {
        Value::String(text) if text == from => {
            *text = to.to_string();
            1
        }
        Value::Mapping(map) => map.iter_mut().map(|(_, child)| replace_string(child, from, to)).sum(),
        Value::Sequence(items) => items.iter_mut().map(|item| replace_string(item, from, to)).sum(),
        _ => 0,
    }
}

/// Drops every entry named `filter` from every `http_filters` list.
fn remove_filter(value: &mut Value, filter: &str) {
    match value {
        Value::Mapping(map) => {
            if let Some(Value::Sequence(filters)) = map.get_mut("http_filters") {
                filters.retain(|f| f.get("name").and_then(Value::as_str) != Some(filter));
            }
            for (_, child) in map.iter_mut() {
                remove_filter(child, filter);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|item| remove_filter(item, filter)),
        _ => {}
    }
}

/// Turns every stdout access logger into a file access logger writing to `path`.
fn redirect_access_logs(value: &mut Value, path: &Path) {
    match value {
        Value::Mapping(map) => {
            let stdout = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
            if map.get("@type").and_then(Value::as_str) == Some(stdout) {
                map.insert(
                    Value::from("@type"),
                    Value::from("type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"),
                );
                map.insert(Value::from("path"), Value::from(path.display().to_string()));
            }
            for (_, child) in map.iter_mut() {
                redirect_access_logs(child, path);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|item| redirect_access_logs(item, path)),
        _ => {}
    }
}
