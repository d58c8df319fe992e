//! A throwaway PostgreSQL cluster for tests and the bench: one per test binary (or bench process), started on
//! first use by [`cluster`], reachable only over a Unix socket in its own temporary directory, and stopped and
//! deleted when the process exits for any reason (a watchdog child waits for a pipe the process holds to close).
//!
//! Include it with `#[path = "../support/postgres_cluster.rs"] mod postgres_cluster;` (tests) or
//! `#[path = "../tests/support/postgres_cluster.rs"] mod postgres_cluster;` (benches). It depends on std,
//! tokio, tempfile and sqlx only, not on hookd.
//!
//! Needs PostgreSQL's server binaries (Debian: `apt-get install postgresql`); found through `HOOKD_PG_BIN`, else
//! the highest `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`. PostgreSQL refuses to run as root, so as
//! root the cluster runs as the `postgres` system user (`runuser`).
//!
//! [`PgCluster::stop`] and [`PgCluster::start`] affect every test of the binary that uses the cluster: a test
//! binary with an outage test must keep its other tests from running during the outage (e.g. an `RwLock`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The superuser `initdb` creates; every URL connects as it (trust authentication).
const SUPERUSER: &str = "hookd";
/// The system user the cluster runs as when the process is root.
const SYSTEM_USER: &str = "postgres";

/// A running PostgreSQL cluster in a temporary directory, listening only on a Unix socket in that directory.
pub struct PgCluster {
    /// The temporary directory: holds `data/`, `log` and the socket `.s.PGSQL.<port>`.
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    superuser: String,
    /// Whether to run PostgreSQL's programs through `runuser -u postgres` (the process is root).
    as_postgres: bool,
    /// The `-o` options `pg_ctl start` passes to the server.
    server_options: String,
    /// Whether the server preloads `pg_stat_statements` (the contrib library is installed).
    pg_stat_statements: bool,
    /// Serialises `stop`/`start`.
    control: Mutex<()>,
    /// The write end of the watchdog's stdin, never written: it closes when the process exits, and the
    /// watchdog then stops the cluster and deletes `dir`.
    _watchdog_pipe: ChildStdin,
    _watchdog: Child,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The one cluster of this test binary, started on first use, stopped and deleted when the process exits.
///
/// Panics (on every call) when the cluster cannot be set up, e.g. PostgreSQL is not installed.
pub fn cluster() -> &'static PgCluster {
    match CLUSTER.get_or_init(PgCluster::setup) {
        Ok(cluster) => cluster,
        Err(why) => panic!("the test PostgreSQL cluster could not be started: {why}"),
    }
}

impl PgCluster {
    /// A new, empty database (a unique name per call) and the URL that reaches it.
    pub async fn fresh_database(&self) -> String {
        use sqlx::Connection as _;

        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!("hookd_t_{}_{n}", std::process::id());
        let admin_url = self.url("postgres");
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connect to {admin_url}: {e} (server log: {})",
                    self.log_path().display()
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        conn.close().await.expect("close the admin connection");
        self.url(&name)
    }

    /// The URL that reaches `database` over the cluster's Unix socket:
    /// `postgres:///DATABASE?host=SOCKET_DIR&port=PORT&user=hookd`. (The user cannot go before an empty host,
    /// `postgres://hookd@/DATABASE`: the `url` crate sqlx parses with rejects that as an empty host.)
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres:///{database}?host={}&port={}&user={}",
            self.dir.display(),
            self.port,
            self.superuser
        )
    }

    /// The directory that holds the data dir, the log and the socket (the socket dir).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server preloads `pg_stat_statements`, so that `CREATE EXTENSION pg_stat_statements` works
    /// (false when the contrib library is not installed).
    pub fn has_pg_stat_statements(&self) -> bool {
        self.pg_stat_statements
    }

    /// Stops the server (fast shutdown: open sessions are ended) and waits until it is down.
    pub fn stop(&self) {
        let _control = self
            .control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let data = self.data_dir();
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        if let Err(why) = run(cmd) {
            panic!("stop the test PostgreSQL cluster: {why}");
        }
    }

    /// Starts the server again after [`stop`](Self::stop) and waits until it accepts connections.
    pub fn start(&self) {
        let _control = self
            .control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(why) = self.pg_ctl_start(&self.server_options) {
            panic!("start the test PostgreSQL cluster: {why}");
        }
    }

    /// The server's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn setup() -> Result<Self, String> {
        let bin = find_bin_dir()?;
        let as_postgres = is_root()?;
        let dir = tempfile::Builder::new()
            .prefix("hookd-pg")
            .tempdir_in("/tmp")
            .map_err(|e| format!("create a temporary directory in /tmp: {e}"))?;
        // The watchdog owns the directory's deletion from here on, also when the setup below fails: dropping
        // its pipe (on the error return) makes it clean up.
        let dir = dir.keep();
        let (watchdog, watchdog_pipe) = spawn_watchdog(&bin, &dir, as_postgres)?;
        if as_postgres {
            let mut chown = Command::new("chown");
            chown
                .arg("-R")
                .arg(format!("{SYSTEM_USER}:{SYSTEM_USER}"))
                .arg(&dir);
            run(chown).map_err(|e| format!("{e} (is there a `{SYSTEM_USER}` system user?)"))?;
        }
        let port_base = 20000 + (std::process::id() % 20000) as u16;
        let mut cluster = PgCluster {
            dir,
            port: port_base,
            bin,
            superuser: SUPERUSER.to_owned(),
            as_postgres,
            server_options: String::new(),
            pg_stat_statements: false,
            control: Mutex::new(()),
            _watchdog_pipe: watchdog_pipe,
            _watchdog: watchdog,
        };
        cluster.initdb()?;
        cluster.pg_stat_statements = cluster.pg_stat_statements_available();
        let mut last_error = String::new();
        for attempt in 0..5u16 {
            cluster.port = port_base + attempt;
            cluster.server_options = cluster.options();
            match cluster.pg_ctl_start(&cluster.server_options) {
                Ok(()) => return Ok(cluster),
                Err(why) => last_error = why,
            }
        }
        Err(last_error)
    }

    fn initdb(&self) -> Result<(), String> {
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                &self.superuser,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .args(["--no-sync", "--no-instructions"]);
        run(cmd)
    }

    fn options(&self) -> String {
        let mut options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={} -c max_connections=300 \
             -c shared_buffers=64MB -c fsync=on",
            self.dir.display(),
            self.port
        );
        if self.pg_stat_statements {
            options.push_str(" -c shared_preload_libraries=pg_stat_statements");
        }
        options
    }

    fn pg_ctl_start(&self, options: &str) -> Result<(), String> {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o", options, "start"]);
        run(cmd).map_err(|why| {
            format!(
                "{why}\nserver log {}:\n{}",
                self.log_path().display(),
                self.log_tail()
            )
        })
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether the server can preload `pg_stat_statements` (the contrib library is installed).
    fn pg_stat_statements_available(&self) -> bool {
        let mut candidates = Vec::new();
        if let Some(lib) = self.bin.parent() {
            candidates.push(lib.join("lib")); // Debian: /usr/lib/postgresql/15/{bin,lib}
        }
        for pg_config in [self.bin.join("pg_config"), PathBuf::from("pg_config")] {
            if let Some(dir) = command_line(Command::new(&pg_config).arg("--pkglibdir")) {
                candidates.push(PathBuf::from(dir));
            }
        }
        candidates
            .iter()
            .any(|dir| dir.join("pg_stat_statements.so").is_file())
    }

    /// A command running one of PostgreSQL's programs as the user the cluster runs as.
    fn pg_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", SYSTEM_USER, "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        // The postgres user may not be able to enter the test's working directory.
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }
}

/// Starts the process that stops the cluster and deletes `dir` once its stdin closes, i.e. when this process
/// exits. It runs in its own process group, so a signal to the test's group (Ctrl-C) does not take it along.
fn spawn_watchdog(
    bin: &Path,
    dir: &Path,
    as_postgres: bool,
) -> Result<(Child, ChildStdin), String> {
    use std::os::unix::process::CommandExt as _;

    let stop = if as_postgres {
        format!("runuser -u {SYSTEM_USER} -- \"$1\"")
    } else {
        "\"$1\"".to_owned()
    };
    let script = format!(
        "read _; {stop} -D \"$2\" -m immediate -w -t 60 stop >/dev/null 2>&1; rm -rf \"$3\""
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("hookd-pg-watchdog")
        .arg(bin.join("pg_ctl"))
        .arg(dir.join("data"))
        .arg(dir)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn the cleanup watchdog (sh): {e}"))?;
    let pipe = child.stdin.take().ok_or("the watchdog has no stdin pipe")?;
    Ok((child, pipe))
}

/// The directory of PostgreSQL's server binaries.
fn find_bin_dir() -> Result<PathBuf, String> {
    const INSTALL: &str = "PostgreSQL's server binaries (initdb, pg_ctl, postgres) are needed for the PostgreSQL \
                           tests: install Debian's `postgresql` package (apt-get install postgresql), or set \
                           HOOKD_PG_BIN to the directory that holds them";
    if let Some(bin) = std::env::var_os("HOOKD_PG_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.join("initdb").is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "HOOKD_PG_BIN={} holds no initdb. {INSTALL}",
                bin.display()
            ))
        };
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(bin) = command_line(Command::new("pg_config").arg("--bindir")).map(PathBuf::from) {
        if bin.join("initdb").is_file() {
            return Ok(bin);
        }
    }
    Err(INSTALL.to_owned())
}

fn is_root() -> Result<bool, String> {
    let uid = command_line(Command::new("id").arg("-u")).ok_or("`id -u` failed")?;
    Ok(uid == "0")
}

/// The trimmed standard output of `cmd`, if it ran and succeeded.
fn command_line(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `cmd` to completion; its output is in the error when it fails.
fn run(mut cmd: Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("run {shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
