//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` in a temporary folder,
//! the system's `postgres` on a free loopback port, one fresh database per test, and the whole
//! cluster stopped and removed on drop.
//!
//! It uses the server binaries of Debian's `postgresql` package (`/usr/lib/postgresql/<N>/bin`,
//! the newest found) or the folder `SDLC_PG_BIN` names. Where there are none, [`Cluster::start`]
//! fails saying which package to install: a test that needs PostgreSQL fails, never skips.
//! PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user
//! (which the package creates) and the cluster's folder is handed to it.
//!
//! A test binary shares one cluster ([`Cluster::shared`], a database per test): `initdb` takes
//! seconds. Statics are never dropped, so the shared server is started from a thread that lives
//! as long as the process and dies with it (`PR_SET_PDEATHSIG`), and the next start removes
//! the folders such servers left.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The file in a cluster's folder naming the process it belongs to.
const OWNER_FILE: &str = "owner.pid";

/// How long a starting server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running PostgreSQL cluster of its own, removed on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    owner: Option<nix::unistd::User>,
    durable: bool,
    server: Option<Child>,
    databases: AtomicU32,
}

impl Cluster {
    /// Starts a cluster tuned for tests: `fsync` off (a killed server still recovers every
    /// commit from its WAL; only a crash of the machine could lose one), commits synchronous.
    pub fn start() -> Result<Cluster, String> {
        Cluster::start_with(false)
    }

    /// Starts a cluster; `durable` keeps PostgreSQL's defaults (fsync on), for benchmarks.
    pub fn start_with(durable: bool) -> Result<Cluster, String> {
        let bin = server_binaries()?;
        let owner = unprivileged_owner()?;
        let dir = tempfile::Builder::new()
            .prefix("sdlc-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a folder for the PostgreSQL cluster: {e}"))?;
        // Which process the folder belongs to, for `remove_abandoned`.
        std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .map_err(|e| format!("cannot write in {}: {e}", dir.path().display()))?;
        if let Some(user) = &owner {
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).map_err(|e| {
                format!("cannot hand {} to user postgres: {e}", dir.path().display())
            })?;
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            owner,
            durable,
            server: None,
            databases: AtomicU32::new(0),
        };
        cluster.initdb()?;
        cluster.port = free_port()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// The cluster of this process, started on first use (see the module's header). Fails
    /// the same way every time it is asked when it could not start.
    pub fn shared() -> Result<&'static Cluster, String> {
        static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                remove_abandoned();
                let (sender, receiver) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name("sdlc-pgtest".into())
                    .spawn(move || {
                        let _ = sender.send(Cluster::start());
                        // The server's parent-death signal is tied to this thread: it must
                        // outlive every test.
                        loop {
                            std::thread::park();
                        }
                    })
                    .map_err(|e| format!("cannot start the cluster's thread: {e}"))?;
                receiver.recv().map_err(|_| {
                    "the cluster's thread ended before the cluster started".to_string()
                })?
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new empty database and returns its URL: each test gets its own.
    pub fn fresh_database(&self) -> Result<String, String> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{n}");
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                &name,
            ])
            .output()
            .map_err(|e| format!("cannot run createdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "createdb {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(self.url(&name))
    }

    /// Stops the server at once, as a crash would (`immediate`: no checkpoint; the next start
    /// replays the WAL).
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGQUIT is PostgreSQL's immediate shutdown: every backend exits at once.
            let pid = nix::unistd::Pid::from_raw(server.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
            let _ = server.wait();
        }
    }

    /// Starts the server again on the same folder and port (after [`Cluster::kill`]).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.start_server()
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A command of the server's binaries, run as the cluster's owner.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.stdin(Stdio::null()).env_remove("PGDATABASE");
        if let Some(user) = &self.owner {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        command
    }

    fn initdb(&self) -> Result<(), String> {
        let data = self.data();
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.join("initdb").display()))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    fn start_server(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the server log: {e}"))?;
        if let Some(user) = &self.owner {
            let _ = nix::unistd::chown(&self.log_path(), Some(user.uid), Some(user.gid));
        }
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "max_connections=300"])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if !self.durable {
            command.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // The server does not outlive the thread that started it (nor the process).
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGQUIT)
                    .map_err(std::io::Error::from)
            });
        }
        let server = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.join("postgres").display()))?;
        self.server = Some(server);
        self.wait_until_ready()
    }

    /// Waits until the server accepts connections (`pg_isready`), or it exited.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map_err(|e| format!("cannot run pg_isready: {e}"))?;
            if ready.success() {
                return Ok(());
            }
            if let Some(server) = self.server.as_mut()
                && let Ok(Some(status)) = server.try_wait()
            {
                self.server = None;
                return Err(format!(
                    "postgres exited ({status}) at start: {}",
                    self.log()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "postgres did not accept connections within {START_LIMIT:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The folder of the server binaries: `SDLC_PG_BIN`, or the newest Debian layout.
fn server_binaries() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("SDLC_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "SDLC_PG_BIN={} holds no initdb and postgres: point it at PostgreSQL's server binaries",
                dir.display()
            ))
        };
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "the PostgreSQL tests need the PostgreSQL server binaries and found none in \
         /usr/lib/postgresql/*/bin: install Debian's postgresql package \
         (apt-get install postgresql), or point SDLC_PG_BIN at a folder holding initdb and postgres"
            .to_string()
    })
}

fn has_server(dir: &Path) -> bool {
    ["initdb", "postgres", "pg_isready", "createdb"]
        .iter()
        .all(|name| dir.join(name).is_file())
}

/// Under root, the user the server runs as (`postgres`); None otherwise.
fn unprivileged_owner() -> Result<Option<nix::unistd::User>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(
            "running as root, and PostgreSQL refuses to run as root: it needs the user \
             'postgres', which Debian's postgresql package creates (apt-get install postgresql)"
                .to_string(),
        ),
    }
}

/// Removes the folders of clusters whose process is gone (a shared cluster's, or one of a
/// test process that was killed): their owner file names a process that no longer runs. (A
/// server's own pid would not do: a cluster being restarted has none running for a moment.)
fn remove_abandoned() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_cluster = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("sdlc-pg-"));
        if !is_cluster {
            continue;
        }
        let owner = std::fs::read_to_string(path.join(OWNER_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        let running = owner.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        });
        // A folder without an owner file may be a cluster being made right now: left alone.
        if owner.is_some() && !running {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_hands_out_databases_survives_a_kill_and_is_removed() {
        let mut cluster = Cluster::start().expect("a PostgreSQL cluster");
        let first = cluster.fresh_database().unwrap();
        let second = cluster.fresh_database().unwrap();
        assert_ne!(first, second);
        assert!(first.starts_with("postgres://postgres@127.0.0.1:"));
        cluster.restart().unwrap();
        // The databases made before the crash are still there.
        let out = cluster
            .command("psql")
            .args([&first, "-Atc", "select current_database()"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "t0",
            "{}",
            cluster.log()
        );
        let dir = cluster.dir.path().to_path_buf();
        drop(cluster);
        assert!(!dir.exists(), "the cluster's folder is removed");
    }

    #[test]
    fn the_shared_cluster_is_started_once() {
        let a = Cluster::shared().expect("the shared cluster");
        let b = Cluster::shared().unwrap();
        assert_eq!(a.port(), b.port());
        assert_ne!(a.fresh_database().unwrap(), b.fresh_database().unwrap());
    }
}
