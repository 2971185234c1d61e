//! Side-by-side load measurements: the same Envoy with and without a Warden filter, under the
//! same `wrk` load, in one run, alternating rounds so drift hits both sides alike.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figures {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: Figures,
    pub filtered: Figures,
    pub added_p50_us: f64,
    pub added_p99_us: f64,
}

impl Comparison {
    /// The median round of each side, figure by figure.
    pub fn from_rounds(baseline: &[Figures], filtered: &[Figures]) -> Comparison {
        let (baseline, filtered) = (median(baseline), median(filtered));
        Comparison {
            baseline,
            filtered,
            added_p50_us: round1(filtered.p50_us - baseline.p50_us),
            added_p99_us: round1(filtered.p99_us - baseline.p99_us),
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn median(rounds: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(f).collect();
        values.sort_by(|a, b| a.total_cmp(b));
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    Figures { rps: pick(|f| f.rps).round(), p50_us: round1(pick(|f| f.p50_us)), p99_us: round1(pick(|f| f.p99_us)) }
}

/// The load: `wrk` with a fixed number of connections on one thread; a GET, or a POST of
/// `body` when one is given.
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: u32,
    pub duration: Duration,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Load {
    /// Runs `wrk` against `url`; fails if any response was not 2xx (a denied request is cheaper
    /// than an allowed one and would flatter the filter).
    pub fn run(&self, url: &str) -> Result<Figures> {
        let mut command = Command::new("wrk");
        command.args([
            "-t1",
            "-c",
            &self.connections.to_string(),
            "-d",
            &format!("{}s", self.duration.as_secs()),
            "--latency",
        ]);
        for (name, value) in &self.headers {
            command.args(["-H", &format!("{name}: {value}")]);
        }
        // wrk sends a body only from a Lua script; the script reads it from a file, so any
        // bytes can be sent without quoting them into Lua.
        let dir = tempfile::tempdir()?;
        if let Some(body) = &self.body {
            let body_path = dir.path().join("body");
            std::fs::write(&body_path, body)?;
            let script = dir.path().join("post.lua");
            std::fs::write(
                &script,
                format!(
                    "wrk.method = \"POST\"\nwrk.body = io.open({:?}):read(\"*a\")\n",
                    body_path.display().to_string()
                ),
            )?;
            command.args(["-s", &script.display().to_string()]);
        }
        let output = command.arg(url).output().context("running wrk (install it with `make setup`)")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!("wrk failed: {}{}", text, String::from_utf8_lossy(&output.stderr));
        }
        if text.contains("Non-2xx or 3xx responses") || text.contains("Socket errors") {
            bail!("the load saw errors or non-2xx answers, so the figures would not be comparable:\n{text}");
        }
        parse_wrk(&text)
    }
}

pub fn parse_wrk(text: &str) -> Result<Figures> {
    let percentile = |p: &str| -> Result<f64> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(p))
            .with_context(|| format!("no {p} line in wrk output"))?;
        let value = line.split_whitespace().nth(1).context("malformed percentile line")?;
        duration_us(value)
    };
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .context("no Requests/sec in wrk output")?
        .trim()
        .parse::<f64>()?;
    Ok(Figures { rps, p50_us: percentile("50%")?, p99_us: percentile("99%")? })
}

fn duration_us(value: &str) -> Result<f64> {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1_000.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1_000_000.0)
    } else {
        bail!("unknown duration {value}")
    };
    Ok(number.parse::<f64>()? * scale)
}

/// Median time to the first byte of a streamed answer to `body` (POSTed as JSON, with `bearer`
/// as its token when given), over `n` requests in turn, in microseconds.
pub async fn first_byte_us(url: &str, bearer: Option<&str>, body: &str, n: usize) -> Result<f64> {
    let client = reqwest::Client::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = std::time::Instant::now();
        let mut request = client.post(url).header("content-type", "application/json").body(body.to_string());
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await?;
        anyhow::ensure!(response.status().is_success(), "streamed request refused: {}", response.status());
        response.chunk().await?;
        times.push(start.elapsed().as_secs_f64() * 1e6);
        while response.chunk().await?.is_some() {}
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times[n / 2] * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latency_output() {
        let text = "  Latency Distribution\n     50%  320.50us\n     75%  1.20ms\n     90%  2.00ms\n     99%    1.50ms\n  115000 requests in 5.00s\nRequests/sec:  23000.00\n";
        let f = parse_wrk(text).unwrap();
        assert_eq!((f.rps, f.p50_us, f.p99_us), (23000.0, 320.5, 1500.0));
    }

    #[test]
    fn median_is_taken_per_figure() {
        let a = Figures { rps: 10.0, p50_us: 100.0, p99_us: 900.0 };
        let b = Figures { rps: 30.0, p50_us: 300.0, p99_us: 300.0 };
        let c = Figures { rps: 20.0, p50_us: 200.0, p99_us: 600.0 };
        let m = median(&[a, b, c]);
        assert_eq!((m.rps, m.p50_us, m.p99_us), (20.0, 200.0, 600.0));
    }
}
