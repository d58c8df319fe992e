//! The throwaway PostgreSQL cluster of `tests/support/postgres_cluster.rs`: fresh databases are distinct and
//! reachable, stop/start makes an outage, and the cluster is stopped and deleted when the test process exits
//! (normally, or killed with its whole process group).

#[path = "support/postgres_cluster.rs"]
mod postgres_cluster;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postgres_cluster::cluster;
use sqlx::{Connection as _, PgConnection, Row as _};
use tokio::sync::RwLock;

/// Tests that use the cluster hold it shared; the outage test holds it exclusively.
static OUTAGE: RwLock<()> = RwLock::const_new(());

/// Set for the child test process that [`child_starts_a_cluster`] is run in.
const CHILD_ENV: &str = "HOOKD_PG_HARNESS_CHILD";

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

async fn select_one(conn: &mut PgConnection) -> i32 {
    sqlx::query("SELECT 1")
        .fetch_one(conn)
        .await
        .expect("SELECT 1")
        .get(0)
}

#[tokio::test]
async fn fresh_databases_are_distinct_and_reachable() {
    let _shared = OUTAGE.read().await;
    let pg = cluster();
    let socket = pg.dir().join(format!(".s.PGSQL.{}", pg.port()));
    assert!(socket.exists(), "{} exists", socket.display());
    assert!(
        socket.as_os_str().len() < 100,
        "{} is short enough",
        socket.display()
    );

    let (a, b) = (pg.fresh_database().await, pg.fresh_database().await);
    assert_ne!(a, b);
    let (mut conn_a, mut conn_b) = (connect(&a).await, connect(&b).await);
    assert_eq!(select_one(&mut conn_a).await, 1);
    assert_eq!(select_one(&mut conn_b).await, 1);
    let current = "SELECT current_database()";
    let name_a: String = sqlx::query(current)
        .fetch_one(&mut conn_a)
        .await
        .expect("a's name")
        .get(0);
    let name_b: String = sqlx::query(current)
        .fetch_one(&mut conn_b)
        .await
        .expect("b's name")
        .get(0);
    assert_ne!(name_a, name_b);
    assert_eq!(a, pg.url(&name_a));

    sqlx::query("CREATE TABLE only_in_a (id int)")
        .execute(&mut conn_a)
        .await
        .expect("create the table");
    let lookup = "SELECT to_regclass('only_in_a')::text";
    let in_a: Option<String> = sqlx::query(lookup)
        .fetch_one(&mut conn_a)
        .await
        .expect("look in a")
        .get(0);
    let in_b: Option<String> = sqlx::query(lookup)
        .fetch_one(&mut conn_b)
        .await
        .expect("look in b")
        .get(0);
    assert_eq!(in_a.as_deref(), Some("only_in_a"));
    assert_eq!(
        in_b, None,
        "a table created in one fresh database is absent in another"
    );
}

#[tokio::test]
async fn pg_stat_statements_is_preloaded_when_installed() {
    let _shared = OUTAGE.read().await;
    let pg = cluster();
    let mut conn = connect(&pg.fresh_database().await).await;
    let preload: String = sqlx::query("SHOW shared_preload_libraries")
        .fetch_one(&mut conn)
        .await
        .expect("SHOW")
        .get(0);
    assert_eq!(
        preload.contains("pg_stat_statements"),
        pg.has_pg_stat_statements(),
        "{preload:?}"
    );
    if pg.has_pg_stat_statements() {
        sqlx::query("CREATE EXTENSION pg_stat_statements")
            .execute(&mut conn)
            .await
            .expect("create the extension");
        let calls: i64 = sqlx::query("SELECT count(*) FROM pg_stat_statements")
            .fetch_one(&mut conn)
            .await
            .expect("read pg_stat_statements")
            .get(0);
        assert!(calls >= 0);
    }
}

#[tokio::test]
async fn stop_makes_an_outage_and_start_ends_it() {
    let _exclusive = OUTAGE.write().await;
    let pg = cluster();
    let url = pg.fresh_database().await;
    let mut before = connect(&url).await;
    assert_eq!(select_one(&mut before).await, 1);

    pg.stop();
    let connecting =
        tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url)).await;
    assert!(
        matches!(connecting, Ok(Err(_))),
        "connecting to a stopped cluster fails promptly: {connecting:?}"
    );
    let querying = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::query("SELECT 1").fetch_one(&mut before),
    );
    assert!(
        matches!(querying.await, Ok(Err(_))),
        "a session from before the stop is gone"
    );

    pg.start();
    let mut after = connect(&url).await;
    assert_eq!(
        select_one(&mut after).await,
        1,
        "the database survives a restart"
    );
    assert!(pg.log_path().is_file());
}

/// Run only as the child of [`cluster_is_removed_when_the_process_exits`] and
/// [`cluster_is_removed_when_the_process_group_is_killed`]: starts a cluster, reports it, and then exits or
/// waits to be killed.
#[test]
#[ignore = "run by the watchdog tests in a child process"]
fn child_starts_a_cluster() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let pg = cluster();
    let postmaster =
        std::fs::read_to_string(pg.dir().join("data/postmaster.pid")).expect("postmaster.pid");
    let postmaster: u32 = postmaster
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .expect("the postmaster's pid");
    let children = children_of(postmaster);
    assert!(
        !children.is_empty(),
        "the postmaster {postmaster} has children"
    );
    println!(
        "CLUSTER dir={} postmaster={postmaster} children={}",
        pg.dir().display(),
        children
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    if mode == "wait" {
        std::thread::sleep(Duration::from_secs(120));
    }
}

/// What a child process reported about its cluster.
struct ChildCluster {
    dir: PathBuf,
    pids: Vec<u32>,
}

fn parse_report(line: &str) -> Option<ChildCluster> {
    // The harness prints `test child_starts_a_cluster ... ` before the test's own output on the same line.
    let (_, report) = line.split_once("CLUSTER ")?;
    let mut fields = report.split(' ');
    let dir = PathBuf::from(fields.next()?.strip_prefix("dir=")?);
    let mut pids = vec![fields.next()?.strip_prefix("postmaster=")?.parse().ok()?];
    for pid in fields.next()?.strip_prefix("children=")?.split(',') {
        pids.push(pid.parse().ok()?);
    }
    Some(ChildCluster { dir, pids })
}

fn child_command(mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args([
        "child_starts_a_cluster",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    cmd
}

/// Waits until the child's cluster directory is gone and none of its processes is left.
fn assert_cleaned_up(cluster: &ChildCluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alive: Vec<u32> = cluster
            .pids
            .iter()
            .copied()
            .filter(|pid| is_alive(*pid))
            .collect();
        let mentioning = processes_mentioning(&cluster.dir);
        if !cluster.dir.exists() && alive.is_empty() && mentioning.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after the test process exited: dir {} exists: {}, its server processes alive: {alive:?}, processes \
             naming it: {mentioning:?}",
            cluster.dir.display(),
            cluster.dir.exists()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cluster_is_removed_when_the_process_exits() {
    let out = child_command("exit")
        .output()
        .expect("run the child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child: {}\n{stdout}", out.status);
    let cluster = stdout
        .lines()
        .find_map(parse_report)
        .unwrap_or_else(|| panic!("child's report in {stdout}"));
    assert_cleaned_up(&cluster);
}

#[test]
fn cluster_is_removed_when_the_process_group_is_killed() {
    use std::os::unix::process::CommandExt as _;

    let mut child = child_command("wait")
        .process_group(0)
        .spawn()
        .expect("spawn the child test process");
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let cluster = loop {
        let line = lines
            .next()
            .expect("the child reports its cluster")
            .expect("read the child's stdout");
        if let Some(cluster) = parse_report(&line) {
            break cluster;
        }
    };
    assert!(cluster.dir.exists());
    // What a harness that kills a test's process group (e.g. on a timeout) does.
    let pgid = child.id();
    let killed = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -KILL -{pgid}"))
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = child.wait().expect("wait for the child");
    assert!(!status.success());
    assert_cleaned_up(&cluster);
}

fn is_alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) is not alive.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The pids whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    proc_pids()
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
            ppid == Some(parent)
        })
        .collect()
}

/// The live processes whose command line names `dir`, other than this one.
fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    proc_pids()
        .filter(|pid| *pid != std::process::id() && is_alive(*pid))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

fn proc_pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}
