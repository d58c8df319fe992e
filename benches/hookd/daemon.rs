//! The real daemon under test: `hookd serve` (the bench-profile binary cargo built) with its own temp dir,
//! config and socket, started the way an operator would (default log level), and read from outside: its
//! memory from `/proc/<pid>/status`, its data dir by walking it.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub const HOOKD: &str = env!("CARGO_BIN_EXE_hookd");

/// sled's page cache in the bench config; bounds the store's share of the daemon's memory.
pub const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Requests in flight per endpoint (`concurrency`); the HTTP ceiling uses as many connections.
pub const ENDPOINT_CONCURRENCY: usize = 32;
/// Time allowed for the daemon to start serving (a restart over a large store replays sled's log).
const START_DEADLINE: Duration = Duration::from_secs(180);
/// Time allowed for a SIGTERM to end the daemon (the config's grace period is 2 s).
const STOP_DEADLINE: Duration = Duration::from_secs(120);

/// Daemons alive right now, so the watchdog can kill them before it ends the bench.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// One `[[endpoints]]` table of the bench config.
pub struct EndpointSpec {
    pub name: &'static str,
    pub url: String,
    /// How long one attempt may take; long for an endpoint meant to hang.
    pub timeout_ms: u64,
    /// Requests in flight at most (`concurrency`).
    pub concurrency: usize,
}

impl EndpointSpec {
    pub fn new(name: &'static str, url: String) -> EndpointSpec {
        EndpointSpec {
            name,
            url,
            timeout_ms: 10_000,
            concurrency: ENDPOINT_CONCURRENCY,
        }
    }
}

/// Memory of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    /// VmHWM: the peak resident set size since the process started.
    pub hwm: u64,
}

/// A running (or stopped, between restarts) `hookd serve`.
pub struct BenchDaemon {
    dir: tempfile::TempDir,
    config_path: PathBuf,
    pub socket: PathBuf,
    log_path: PathBuf,
    /// TOML appended to the config (e.g. a `[defaults.json]` table).
    extra_config: String,
    /// Top-level keys of the config (e.g. `max_batch_messages = 50000`).
    top_level: String,
    child: Option<Child>,
}

impl BenchDaemon {
    /// Writes the bench config into a fresh temp dir under `parent` and starts the daemon. Answers the daemon
    /// and how long it took from spawn to "hookd is serving".
    pub async fn start(
        parent: &Path,
        endpoints: &[EndpointSpec],
    ) -> Result<(BenchDaemon, Duration)> {
        BenchDaemon::start_with(parent, endpoints, "").await
    }

    /// Like [`BenchDaemon::start`], with `extra` TOML appended to the config (tables only).
    pub async fn start_with(
        parent: &Path,
        endpoints: &[EndpointSpec],
        extra: &str,
    ) -> Result<(BenchDaemon, Duration)> {
        BenchDaemon::start_configured(parent, endpoints, "", extra).await
    }

    /// Like [`BenchDaemon::start_with`], with `top_level` keys added to the config's top level.
    pub async fn start_configured(
        parent: &Path,
        endpoints: &[EndpointSpec],
        top_level: &str,
        extra: &str,
    ) -> Result<(BenchDaemon, Duration)> {
        let dir = tempfile::Builder::new()
            .prefix("hookd-bench-")
            .tempdir_in(parent)
            .context("creating the daemon's temp dir")?;
        let mut daemon = BenchDaemon {
            config_path: dir.path().join("hookd.toml"),
            socket: dir.path().join("hookd.sock"),
            log_path: dir.path().join("hookd.log"),
            extra_config: extra.to_owned(),
            top_level: top_level.to_owned(),
            dir,
            child: None,
        };
        daemon.write_config(endpoints)?;
        let started_in = daemon.spawn().await?;
        Ok((daemon, started_in))
    }

    /// The bench config: loopback allowed, 32 MiB sled cache, queue depth far above the 1M phase, a short
    /// grace period, and `json` endpoints with 32 requests in flight. Every receiver answers 200, so the retry
    /// policy only matters for the hanging endpoint (whose attempts outlast every phase).
    pub fn write_config(&self, endpoints: &[EndpointSpec]) -> Result<()> {
        let mut text = format!(
            "data_dir = {:?}\nsocket = {:?}\nshutdown_grace_ms = 2000\nsled_cache_bytes = {SLED_CACHE_BYTES}\n\
             max_queue_depth = 5000000\n{}\n\n[destinations]\nallow = [\"127.0.0.0/8\"]\n",
            self.data_dir(),
            self.socket,
            self.top_level,
        );
        for e in endpoints {
            text.push_str(&format!(
                "\n[[endpoints]]\nname = {:?}\nurl = {:?}\nformat = \"json\"\nconcurrency = {}\n\
                 timeout_ms = {}\nretry = {{ initial_ms = 1000, max_ms = 60000, multiplier = 2.0, jitter = 0.0 }}\n",
                e.name, e.url, e.concurrency, e.timeout_ms
            ));
        }
        if !self.extra_config.is_empty() {
            text.push('\n');
            text.push_str(&self.extra_config);
        }
        std::fs::write(&self.config_path, text).context("writing the bench config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the process and waits until it logs that it serves; answers how long that took.
    pub async fn spawn(&mut self) -> Result<Duration> {
        let (spawned_at, ready_rx) = self.launch()?;
        self.wait_ready(spawned_at, ready_rx).await
    }

    /// Starts the process and polls `GET /v1/health` on its socket until it answers 200; answers the time
    /// from the spawn to that answer. Also waits for the "hookd is serving" line, so a daemon that answers
    /// but then fails is still caught.
    pub async fn spawn_until_healthy(&mut self) -> Result<Duration> {
        let (spawned_at, ready_rx) = self.launch()?;
        let deadline = spawned_at + START_DEADLINE;
        let healthy_in = loop {
            if crate::socket::health(&self.socket).await {
                break spawned_at.elapsed();
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "the daemon exited with {status} before answering; log:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the daemon's socket did not answer GET /v1/health within {START_DEADLINE:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        self.wait_ready(spawned_at, ready_rx).await?;
        Ok(healthy_in)
    }

    /// Spawns the process; answers when, and a channel that gets the time of its "hookd is serving" line.
    fn launch(&mut self) -> Result<(Instant, tokio::sync::oneshot::Receiver<Instant>)> {
        if self.child.is_some() {
            bail!("the daemon is already running");
        }
        let spawned_at = Instant::now();
        let mut child = daemon_command()
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env_remove("HOOKD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {HOOKD}"))?;
        live().push(child.id());
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // Drains the daemon's log (one line per delivery at the default level) so it never blocks on the pipe.
        std::thread::spawn(move || {
            let mut log = BufWriter::new(log);
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("hookd is serving") {
                    let _ = log.flush();
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Instant::now());
                    }
                }
            }
            let _ = log.flush();
        });
        self.child = Some(child);
        Ok((spawned_at, ready_rx))
    }

    async fn wait_ready(
        &self,
        spawned_at: Instant,
        ready_rx: tokio::sync::oneshot::Receiver<Instant>,
    ) -> Result<Duration> {
        match tokio::time::timeout(START_DEADLINE, ready_rx).await {
            Ok(Ok(serving_at)) => Ok(serving_at.duration_since(spawned_at)),
            Ok(Err(_)) => bail!(
                "the daemon exited before serving; log:\n{}",
                self.log_tail()
            ),
            Err(_) => bail!(
                "the daemon did not serve within {START_DEADLINE:?}; log:\n{}",
                self.log_tail()
            ),
        }
    }

    pub fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .context("the daemon is not running")
    }

    pub fn memory(&self) -> Result<Memory> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib: u64 = line
                .trim_start_matches(name)
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("cannot read `{line}`"))?;
            Ok(kib * 1024)
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            hwm: field("VmHWM:")?,
        })
    }

    /// The data dir's size: (apparent bytes, allocated bytes), summed over every file under it.
    pub fn data_size(&self) -> Result<(u64, u64)> {
        fn walk(dir: &Path, sizes: &mut (u64, u64)) -> std::io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    walk(&entry.path(), sizes)?;
                } else {
                    sizes.0 += meta.len();
                    sizes.1 += meta.blocks() * 512;
                }
            }
            Ok(())
        }
        let mut sizes = (0, 0);
        walk(&self.data_dir(), &mut sizes).context("walking the data dir")?;
        Ok(sizes)
    }

    /// SIGTERM, then waits for the exit (the daemon finishes in-flight attempts within its grace period).
    pub async fn terminate(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the daemon is not running")?;
        let pid = child.id();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !signalled.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            if let Some(status) = child.try_wait()? {
                forget(pid);
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                forget(pid);
                bail!("the daemon did not stop within {STOP_DEADLINE:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The end of the daemon's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            forget(child.id());
        }
    }
}

/// `hookd`, or, when `HOOKD_BENCH_WRAP` is set (`"valgrind --tool=callgrind"`, `"perf record -g --"`),
/// `hookd` run under that command, for profiling the daemon on the bench's workload. Memory figures are then
/// the wrapper's process.
fn daemon_command() -> Command {
    let wrap = std::env::var("HOOKD_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    match words.next() {
        None => Command::new(HOOKD),
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(HOOKD);
            command
        }
    }
}

fn live() -> std::sync::MutexGuard<'static, Vec<u32>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn forget(pid: u32) {
    live().retain(|p| *p != pid);
}

/// SIGKILLs every daemon still running (the watchdog's last act).
pub fn kill_all() {
    for pid in live().drain(..) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// utime + stime of `/proc/{pid}/stat` (`"self"` for this process), seconds (clock ticks of 100 Hz).
pub fn cpu_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds used so far by a daemon and by this bench process (its clients and receivers).
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub daemon: f64,
    pub bench: f64,
}

impl CpuUse {
    pub fn now(daemon: &BenchDaemon) -> CpuUse {
        let daemon = daemon
            .pid()
            .ok()
            .and_then(|pid| cpu_of(&pid.to_string()))
            .unwrap_or(0.0);
        CpuUse {
            daemon,
            bench: cpu_of("self").unwrap_or(0.0),
        }
    }

    /// The CPU used since `earlier`, per message of `messages`, in microseconds: (daemon, bench).
    pub fn per_message_since(self, earlier: CpuUse, messages: usize) -> (f64, f64) {
        let per = |now: f64, then: f64| (now - then) * 1e6 / messages.max(1) as f64;
        (
            per(self.daemon, earlier.daemon),
            per(self.bench, earlier.bench),
        )
    }
}
