//! What every figure needs: a temporary project with the benchmark tools, the real `sdlc`
//! daemon as a child process, its API, and a few statistics.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// The trivial tool of every throughput figure: reads its input, answers ok.
pub const TRIVIAL_TOOL: &str = "#!/bin/sh\ncat > /dev/null\necho '{\"ok\":true}'\n";

/// A tool that records when it started (bash's clock builtin: no extra process).
pub fn stamp_tool(log: &Path) -> String {
    format!(
        "#!/bin/bash\necho \"$SDLC_ACTION_ID $EPOCHREALTIME\" >> {}\ncat > /dev/null\necho '{{\"ok\":true}}'\n",
        log.display()
    )
}

/// A temporary project.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> anyhow::Result<Project> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join(".sdlc/tools"))?;
        Ok(Project { dir })
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.root().join(".sdlc/orchestrator.db")
    }

    /// Writes an executable tool and returns its path.
    pub fn tool(&self, name: &str, script: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root().join(".sdlc/tools").join(name);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("tool");
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }
}

/// The `sdlc` binary built beside this one.
pub fn sdlc_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("sdlc");
    if !path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    token: String,
    http: reqwest::Client,
}

impl Daemon {
    pub fn start(project: &Project, extra: &[&str]) -> anyhow::Result<Daemon> {
        let mut child = Command::new(sdlc_binary()?)
            .args(["orchestrate", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--root")
            .arg(project.root())
            .env(
                "RUST_LOG",
                std::env::var("SDLC_BENCH_DAEMON_LOG").map_or("warn", |_| "info"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start the daemon")?;
        let mut reader = BufReader::new(child.stderr.take().expect("piped"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("the daemon exited before listening");
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split(',').next().unwrap_or_default().trim().parse()?;
            }
        };
        // Keep draining stderr so the daemon never blocks on a full pipe; with
        // SDLC_BENCH_DAEMON_LOG=<file>, its "stopped" lines (counts of runs and commits) are
        // appended there.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
            if let Ok(path) = std::env::var("SDLC_BENCH_DAEMON_LOG") {
                let stopped: String = String::from_utf8_lossy(&sink)
                    .lines()
                    .filter(|line| line.contains("stopped"))
                    .map(|line| format!("{line}\n"))
                    .collect();
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, stopped.as_bytes()));
            }
        });
        let info: Value = serde_json::from_slice(&std::fs::read(
            project.root().join(".sdlc/orchestrator.db.daemon.json"),
        )?)?;
        Ok(Daemon {
            child,
            addr,
            token: info["token"].as_str().unwrap_or_default().to_string(),
            http: reqwest::Client::new(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(
                method,
                format!("http://{}/api/orchestrator{path}", self.addr),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let value: Value = response.json().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {value}");
        }
        Ok(value)
    }

    /// Registers `POST /webhooks/<path>` for `tool` (input `{}`); returns the route's URL.
    pub async fn add_route(&self, path: &str, tool: &str) -> anyhow::Result<String> {
        self.api(
            reqwest::Method::POST,
            "/webhooks/routes",
            Some(serde_json::json!({"path": path, "tool_name": tool, "input_template": "{}"})),
        )
        .await?;
        Ok(format!("http://{}/webhooks/{path}", self.addr))
    }

    /// How many actions are completed (by the daemon's own count).
    pub async fn completed(&self) -> anyhow::Result<u64> {
        let status = self.api(reqwest::Method::GET, "/status", None).await?;
        Ok(status["actions"]["completed"].as_u64().unwrap_or(0))
    }

    /// Waits (polling the status API) until `n` actions are completed.
    pub async fn wait_completed(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.completed().await? < n {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {n} completed within {timeout:?}",
                    self.completed().await?
                );
            }
            // Polling only detects the end; figures come from the stored records.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The daemon's peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the daemon process itself has used (user + system), not its tools'.
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid())
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) -> anyhow::Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The p-th percentile (0..=100) of sorted values.
/// CPU time process `pid` has used itself (user + system, not its children's).
pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // /proc reports clock ticks in USER_HZ, which Linux fixes at 100 for user space.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / 100.0)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The median of a few timings.
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// A deterministic pseudo-random sequence in [0, 1) (the bench needs spread, not secrecy).
pub struct Spread(u64);

impl Spread {
    pub fn new(seed: u64) -> Spread {
        Spread(seed | 1)
    }

    pub fn next_unit(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `seq n | xargs -P concurrency -n 1 program args...`: `n` runs of `program` (each given
/// its number last), `concurrency` at a time, storing nothing: the baseline of the
/// throughput figures.
pub fn xargs_wall(
    program: &Path,
    args: &[&str],
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let input: String = (0..n).map(|i| format!("{i}\n")).collect();
    let started = Instant::now();
    let mut child = Command::new("xargs")
        .args(["-P", &concurrency.to_string(), "-n", "1"])
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(input.as_bytes())?;
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "xargs failed: {status}");
    Ok(started.elapsed())
}

/// Prints one result line: the figure, ours, the baseline and the verdict.
pub fn report(name: &str, ours: &str, baseline: &str, ratio: Option<f64>, target: &str, met: bool) {
    let ratio = ratio.map(|r| format!(", ratio {r:.2}")).unwrap_or_default();
    let verdict = if met { "met" } else { "MISSED" };
    println!("{name}: {ours}; baseline {baseline}{ratio}; target {target}: {verdict}");
}
