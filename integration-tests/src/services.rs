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
            command.args(["--redis", url]);
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
