//! Shared set-up for the end-to-end tests: a temporary project with real tools, the real
//! `sdlc` binary, a daemon process on a free loopback port, and a minimal HTTP client.
//!
//! Waiting is always for a condition with a deadline (`wait_for`), never a fixed sleep.

#![allow(dead_code)]

pub mod receiver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SDLC: &str = env!("CARGO_BIN_EXE_sdlc");

/// A temporary project: a folder with `.sdlc/tools/`, its data in a redb file in it or, for
/// a project made with `on_database`, in a PostgreSQL database.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database every command of this project uses (`SDLC_DATABASE_URL`).
    pub db_url: Option<String>,
}

/// Generates, for each scenario `fn name(backend: Backend)`, one test on a redb file
/// (`on_redb::name`) and one on a fresh PostgreSQL database (`on_postgres::name`): the
/// end-to-end suite runs on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Redb) } )*
        }
        mod on_postgres {
            $( #[test] fn $name() { super::$name($crate::common::Backend::Postgres) } )*
        }
    };
}

/// Which store a test's project keeps its data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redb,
    Postgres,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join(".sdlc/tools")).unwrap();
        Project { dir, db_url: None }
    }

    /// A project on `backend`: a fresh PostgreSQL database for each such project.
    pub fn on(backend: Backend) -> Project {
        match backend {
            Backend::Redb => Project::new(),
            Backend::Postgres => Project::on_database(&fresh_database()),
        }
    }

    /// A project whose data is in the PostgreSQL database `url` (several projects may share
    /// one: each is a node's machine).
    pub fn on_database(url: &str) -> Project {
        Project {
            db_url: Some(url.to_string()),
            ..Project::new()
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executable shell tool. `--meta` answers with `meta` (or a bare name).
    pub fn tool(&self, name: &str, run_body: &str) {
        self.tool_with_meta(name, &format!(r#"{{"name":"{name}"}}"#), run_body);
    }

    pub fn tool_with_meta(&self, name: &str, meta: &str, run_body: &str) {
        let dir = self.root().join(".sdlc/tools").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "#!/bin/sh\nif [ \"$1\" = \"--meta\" ]; then cat <<'META'\n{meta}\nMETA\nexit 0\nfi\n{run_body}\n"
        );
        let path = dir.join("tool");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Writes `.sdlc/plans/<id>.json`.
    pub fn plan(&self, id: &str, plan: &Value) {
        let dir = self.root().join(".sdlc/plans");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.json")), plan.to_string()).unwrap();
    }

    /// A tool that appends its action's label to `runs.log` and succeeds.
    pub fn counting_tool(&self, name: &str) {
        self.tool(
            name,
            &format!(
                "echo \"$SDLC_ACTION_LABEL\" >> {}\necho '{{\"ok\":true}}'",
                self.runs_log().display()
            ),
        );
    }

    /// Copies the repository's quality-check tool, with `config` as its config.yaml.
    pub fn quality_check(&self, config: &str) {
        let source =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.sdlc/tools/quality-check/tool");
        let dir = self.root().join(".sdlc/tools/quality-check");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&source, dir.join("tool")).unwrap();
        std::fs::write(dir.join("config.yaml"), config).unwrap();
    }

    pub fn runs_log(&self) -> PathBuf {
        self.root().join("runs.log")
    }

    /// Lines of `runs.log` equal to `label`.
    pub fn runs_of(&self, label: &str) -> usize {
        std::fs::read_to_string(self.runs_log())
            .unwrap_or_default()
            .lines()
            .filter(|line| *line == label)
            .count()
    }

    pub fn db_path(&self) -> PathBuf {
        self.root().join(".sdlc/orchestrator.db")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(SDLC);
        command
            .args(args)
            .current_dir(self.root())
            .env_remove("SDLC_ROOT")
            .env_remove("RUST_LOG")
            .env_remove("SDLC_ORCHESTRATOR_TOKEN")
            .env_remove("SDLC_DATABASE_URL")
            .stdin(Stdio::null());
        if let Some(url) = &self.db_url {
            command.env("SDLC_DATABASE_URL", url);
        }
        command
    }

    /// Runs `sdlc args...` in the project and returns its output. A command still running
    /// after `COMMAND_LIMIT` is killed and fails the test naming it, so a hang shows which
    /// command waited and on what (the daemon's log follows, see `Daemon`'s drop).
    pub fn sdlc(&self, args: &[&str]) -> Output {
        output_within(self.command(args), COMMAND_LIMIT).unwrap_or_else(|partial| {
            panic!("sdlc {args:?} still running after {COMMAND_LIMIT:?}; it had printed: {partial}")
        })
    }

    /// Runs `sdlc args...` and returns stdout, failing the test if it did not succeed.
    pub fn sdlc_ok(&self, args: &[&str]) -> String {
        let out = self.sdlc(args);
        assert!(
            out.status.success(),
            "sdlc {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `sdlc orchestrate add ...`; returns the printed id.
    pub fn add(&self, args: &[&str]) -> String {
        let mut full = vec!["orchestrate", "add"];
        full.extend_from_slice(args);
        let id = self.sdlc_ok(&full).trim().to_string();
        assert_eq!(id.len(), 36, "add printed '{id}', not an id alone");
        id
    }

    /// `sdlc orchestrate list --json`.
    pub fn list(&self) -> Vec<Value> {
        let out = self.sdlc_ok(&["orchestrate", "list", "--json", "--limit", "100000"]);
        serde_json::from_str(&out).expect("list --json prints a JSON array")
    }

    pub fn find(&self, id: &str) -> Value {
        let out = self.sdlc_ok(&["orchestrate", "show", id, "--json"]);
        serde_json::from_str(&out).unwrap()
    }

    /// Starts a daemon on a free loopback port with extra flags.
    pub fn daemon(&self, extra: &[&str]) -> Daemon {
        let mut args = vec!["orchestrate", "--listen", "127.0.0.1:0"];
        // On PostgreSQL a daemon killed and started again is a new node: the runs it left
        // are recovered once its lease runs out, so tests use a short one.
        if self.db_url.is_some() && !extra.contains(&"--lease") {
            args.extend(["--lease", "5s"]);
        }
        args.extend_from_slice(extra);
        Daemon::start_command(self.command(&args))
    }
}

/// A fresh database on the PostgreSQL server this test process shares (started from the
/// system's server binaries; see `sdlc-pgtest`).
pub fn fresh_database() -> String {
    sdlc_pgtest::Cluster::shared()
        .expect("the PostgreSQL tests need a server")
        .fresh_database()
        .expect("a fresh PostgreSQL database")
}

/// The longest one `sdlc` command may take in a test (following a plan run included): far
/// beyond what any test's command needs, short of the CI's limit.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// Runs `command` to its end and returns its output, or kills it after `limit` and returns
/// what it had printed (stdout, then stderr).
pub fn output_within(mut command: Command, limit: Duration) -> Result<Output, String> {
    // Its own process group, so that what it started goes with it (and lets go of the pipes).
    let child = std::os::unix::process::CommandExt::process_group(&mut command, 0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sdlc");
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, ended) = std::sync::mpsc::channel::<()>();
    // A watchdog rather than polling: the command's end is seen at once, and only a command
    // still running at the limit is killed.
    let watchdog = std::thread::spawn(move || {
        let expired = ended.recv_timeout(limit).is_err();
        if expired {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        expired
    });
    let output = child.wait_with_output().expect("wait for sdlc");
    let _ = done.send(());
    if watchdog.join().unwrap() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}

/// Waits until `check` returns Some, at most `timeout`; panics with `what` otherwise.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until action `id` has `status` (tolerating an id not yet visible, such as a webhook
/// delivery not yet dispatched); returns its `show --json` record.
/// `wait_for_status` for a database at `db` (10 s).
pub fn wait_for_status_in(project: &Project, id: &str, status: &str, db: &str) -> Value {
    wait_for(
        &format!("{id} to be {status}"),
        Duration::from_secs(10),
        || {
            let out = project.sdlc(&["orchestrate", "show", id, "--json", "--db", db]);
            let action: Value = serde_json::from_slice(&out.stdout).ok()?;
            (action["status"] == status).then_some(action)
        },
    )
}

pub fn wait_for_status(project: &Project, id: &str, status: &str, timeout: Duration) -> Value {
    wait_for(&format!("action {id} to be {status}"), timeout, || {
        let out = project.sdlc(&["orchestrate", "show", id, "--json"]);
        let action: Value = serde_json::from_slice(&out.stdout).ok()?;
        (action["status"] == status).then_some(action)
    })
}

/// How long after it was due an action started.
pub fn lateness(action: &Value) -> chrono::Duration {
    let at = |field: &str| -> chrono::DateTime<chrono::Utc> {
        action[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing in {action}"))
            .parse()
            .unwrap()
    };
    at("started_at") - at("due_at")
}

/// Whether process `pid` is gone: no /proc entry (reaped), or a zombie waiting to be reaped.
pub fn process_gone(pid: &str) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    state.is_empty()
        || state
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
}

/// Statuses of the listed actions, by label.
pub fn status_of(actions: &[Value], label: &str) -> Vec<String> {
    actions
        .iter()
        .filter(|a| a["label"] == label)
        .map(|a| a["status"].as_str().unwrap().to_string())
        .collect()
}

/// A running daemon. Killed (SIGKILL) on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn start_command(mut command: Command) -> Daemon {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daemon");
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let stderr = Arc::new(Mutex::new(String::new()));
        // The start-up line names the address; read up to it, then keep draining stderr.
        let mut addr = None;
        let mut line = String::new();
        while addr.is_none() {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                let status = child.wait().unwrap();
                panic!(
                    "daemon exited ({status}) before listening: {}",
                    stderr.lock().unwrap()
                );
            }
            stderr.lock().unwrap().push_str(&line);
            let announced = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1));
            if let Some(rest) = announced {
                addr = rest.split(',').next().and_then(|a| a.trim().parse().ok());
            }
        }
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        rest.clear();
                        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
                        sink.lock().unwrap().push_str(&rest);
                    }
                }
            }
        });
        Daemon {
            child,
            addr: addr.unwrap(),
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The token from the daemon file.
    pub fn token(&self, project: &Project) -> String {
        let path = project.root().join(".sdlc/orchestrator.db.daemon.json");
        let info: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        info["token"].as_str().unwrap().to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed with this daemon up: its log is what explains why.
            eprintln!(
                "--- daemon log (pid {}) ---\n{}",
                self.child.id(),
                self.stderr()
            );
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain HTTP/1.1 exchange on loopback; returns the status code and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let answer = http_answer(addr, method, path, headers, body);
    (answer.status, answer.body)
}

/// Bodies without Content-Length come chunked; this undoes it well enough for JSON bodies.
fn decode_chunked(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size_line, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            return body.to_string();
        };
        if size == 0 {
            return out;
        }
        if after.len() < size {
            return body.to_string();
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// A response with its headers (names lower-cased).
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// [`http`], keeping the response's headers.
pub fn http_answer(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: decode_chunked(body),
    }
}
