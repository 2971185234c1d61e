//! Real services a test starts and stops: a Redis server (Debian's `redis-server`) and
//! Warden's rate-limit service (`target/debug/warden-ratelimit`), each on its own free
//! loopback port, killed when dropped.

use crate::{ports, repo};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits until something accepts connections on `port`, or `child` exits.
fn wait_listening(child: &mut Child, port: u16, what: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited with {status} before it listened on {port}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on {port} within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Result<Redis> {
        let mut redis = Redis { port: ports::free_port()?, child: None };
        redis.restart()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) on its port, with nothing persisted to disk.
    pub fn restart(&mut self) -> Result<()> {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (make setup installs it from Debian)")?;
        wait_listening(&mut child, self.port, "redis-server")?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server, as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct RateLimitService {
    pub port: u16,
    child: Child,
}

pub fn ratelimit_binary() -> PathBuf {
    repo::root().join("target/debug/warden-ratelimit")
}

impl RateLimitService {
    /// Starts the service, on Redis when `redis_url` is given.
    pub fn start(redis_url: Option<&str>) -> Result<RateLimitService> {
        Self::start_binary(&ratelimit_binary(), redis_url)
    }

    /// Starts the service from `binary` (the benchmarks run an optimised build).
    pub fn start_binary(binary: &std::path::Path, redis_url: Option<&str>) -> Result<RateLimitService> {
        if !binary.exists() {
            return Err(anyhow!("{} is not built: run `make build`", binary.display()));
        }
        let port = ports::free_port()?;
        let mut command = Command::new(binary);
        command.args(["--listen", &format!("127.0.0.1:{port}")]);
        // Mutual TLS, as shipped: only a gateway's certificate may draw or settle.
        let tls = |name: &str| repo::testdata(&format!("tls/{name}")).display().to_string();
        command.args(["--tls-cert", &tls("ratelimit.pem"), "--tls-key", &tls("ratelimit.key")]);
        command.args(["--client-ca", &tls("ratelimit-ca.pem")]);
        if let Some(url) = redis_url {
            // A list of nodes is a Redis Cluster.
            command.args([if url.contains(',') { "--redis-cluster" } else { "--redis" }, url]);
        }
        let mut child =
            command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting warden-ratelimit")?;
        wait_listening(&mut child, port, "warden-ratelimit")?;
        Ok(RateLimitService { port, child })
    }
}

impl Drop for RateLimitService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A container registry (Debian's `docker-registry`, the CNCF Distribution `registry`) on its
/// own loopback port, plain HTTP, storing under a temporary folder; killed when dropped.
pub struct Registry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Result<Registry> {
        let dir = tempfile::tempdir()?;
        let port = ports::free_port()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry (make setup installs it from Debian)")?;
        wait_listening(&mut child, port, "docker-registry")?;
        Ok(Registry { port, child, _dir: dir })
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster on loopback from Debian's `redis-server`: `masters` masters with one replica
/// each, a low `cluster-node-timeout` so a replica takes over a killed master within seconds.
/// Every node is killed when dropped.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Result<RedisCluster> {
        let dir = tempfile::tempdir()?;
        let mut cluster = RedisCluster { ports: Vec::new(), children: Vec::new(), _dir: dir };
        for _ in 0..masters * 2 {
            let port = ports::free_port()?;
            let bus = ports::free_port()?;
            let node_dir = cluster._dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir)?;
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--cluster-port", &bus.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "1000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--cluster-config-file", "nodes.conf"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting redis-server (make setup installs it from Debian)")?;
            wait_listening(&mut child, port, "redis-server")?;
            cluster.ports.push(port);
            cluster.children.push(Some(child));
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("redis-cli (Debian's redis-tools, with redis-server)")?;
        if !out.status.success() {
            bail!("redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.healthy() {
            if Instant::now() > deadline {
                bail!("the cluster did not become healthy");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// The nodes, as the service's `--redis-cluster` takes them.
    pub fn urls(&self) -> String {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn live_port(&self) -> Option<u16> {
        self.ports.iter().zip(&self.children).find(|(_, c)| c.is_some()).map(|(p, _)| *p)
    }

    /// Each live node's view of the cluster, for a failure message.
    pub fn describe(&self) -> String {
        let port = self.live_port().unwrap_or_default();
        let mut out = String::new();
        for (p, _) in self.ports.iter().zip(&self.children).filter(|(_, c)| c.is_some()) {
            out.push_str(&format!("node {p}:\n{}\n", self.cli(*p, &["cluster", "nodes"])));
        }
        format!("{}\n{out}", self.cli(port, &["cluster", "info"]))
    }

    /// Whether every live node sees the cluster as healthy (every slot served).
    pub fn healthy(&self) -> bool {
        self.ports
            .iter()
            .zip(&self.children)
            .filter(|(_, c)| c.is_some())
            .all(|(p, _)| self.cli(*p, &["cluster", "info"]).lines().any(|l| l.trim() == "cluster_state:ok"))
    }

    /// The index of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> Result<usize> {
        let port = self.live_port().ok_or_else(|| anyhow!("no live node"))?;
        let slot: u16 = self.cli(port, &["cluster", "keyslot", key]).trim().parse().context("cluster keyslot")?;
        for line in self.cli(port, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            let node_port: Option<u16> = fields[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok());
            if let (true, Some(node_port)) = (serves, node_port) {
                return self.ports.iter().position(|p| *p == node_port).ok_or_else(|| anyhow!("unknown node"));
            }
        }
        bail!("no master serves slot {slot}")
    }

    /// A key's value, asked of whichever node serves it.
    pub fn get(&self, key: &str) -> Option<String> {
        let value = self.cli(self.live_port()?, &["-c", "GET", key]);
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_string())
    }

    /// Keys matching `pattern` on every live node, with their values (for a failure message).
    pub fn scan(&self, pattern: &str) -> String {
        let mut out = String::new();
        for (port, _) in self.ports.iter().zip(&self.children).filter(|(_, c)| c.is_some()) {
            for key in self.cli(*port, &["--scan", "--pattern", pattern]).lines() {
                let value = self.cli(*port, &["GET", key]);
                out.push_str(&format!("{port} {key} = {}\n", value.trim()));
            }
        }
        out
    }

    /// Waits until a replica has taken over from the killed node `index`. Redis fails over by
    /// itself within a few node timeouts; when it has not within 10 s (an election can stall on
    /// a busy machine), the replica is told to take over, as an operator would.
    pub fn await_failover(&self, index: usize) -> Result<()> {
        let wait = |limit: Duration| {
            let deadline = Instant::now() + limit;
            while !self.healthy() {
                if Instant::now() > deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            true
        };
        if wait(Duration::from_secs(10)) {
            return Ok(());
        }
        let dead = format!("127.0.0.1:{}", self.ports[index]);
        let port = self.live_port().ok_or_else(|| anyhow!("no live node"))?;
        let nodes = self.cli(port, &["cluster", "nodes"]);
        let dead_id = nodes.lines().find(|l| l.contains(&dead)).and_then(|l| l.split_whitespace().next());
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 3 && fields[2].contains("slave") && Some(fields[3]) == dead_id {
                if let Some(replica) = fields[1].split(['@', ':']).nth(1).and_then(|p| p.parse::<u16>().ok()) {
                    self.cli(replica, &["cluster", "failover", "takeover"]);
                }
            }
        }
        if wait(Duration::from_secs(10)) {
            Ok(())
        } else {
            bail!("no replica took over: {}", self.describe())
        }
    }

    /// Kills node `index`, as a crash would.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}
