//! `hookd demo`, `hookd completions` and `hookd man`, run as the real binary. The demo's own report is
//! checked against its per-message lines and, with `--keep`, against the daemon it leaves serving, through
//! the very commands it prints.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::HOOKD;

const WAIT: Duration = Duration::from_secs(60);

/// A running `hookd demo` whose output lines (stderr ones prefixed `stderr: `) arrive on a channel.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    deadline: Instant,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(HOOKD)
            .arg("demo")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let forward = |stream: Box<dyn Read + Send>, prefix: &'static str| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(format!("{prefix}{line}")).is_err() {
                        break;
                    }
                }
            });
        };
        forward(Box::new(child.stdout.take().unwrap()), "");
        forward(Box::new(child.stderr.take().unwrap()), "stderr: ");
        Demo {
            child,
            lines,
            seen: Vec::new(),
            deadline: Instant::now() + WAIT,
        }
    }

    /// The next line, or `None` once the demo closed its output; panics at the deadline.
    fn next_line(&mut self) -> Option<String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!(
                    "hookd demo did not finish within {WAIT:?}:\n{}",
                    self.output()
                )
            }
        }
    }

    /// Reads until a line satisfies `wanted` and returns it.
    fn until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        while let Some(line) = self.next_line() {
            if wanted(&line) {
                return line;
            }
        }
        panic!(
            "hookd demo ended without the line expected:\n{}",
            self.output()
        )
    }

    /// Reads to the end of the output and returns the exit status.
    fn finish(&mut self) -> ExitStatus {
        while self.next_line().is_some() {}
        self.child.wait().unwrap()
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }

    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the demo reported: its summary counts and each message's last word (delivered or dead).
#[derive(Debug)]
struct Report {
    delivered: usize,
    dead: usize,
    messages: usize,
    sent: Vec<String>,
    last_word: BTreeMap<String, String>,
    retries: usize,
}

fn report(lines: &[String]) -> Report {
    let summary = lines
        .iter()
        .find_map(|l| l.strip_prefix("summary: "))
        .unwrap_or_else(|| panic!("no summary:\n{}", lines.join("\n")));
    // "14 delivered, 1 dead letter (15 messages, 18 attempts)"
    let numbers: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let mut report = Report {
        delivered: numbers[0],
        dead: numbers[1],
        messages: numbers[2],
        sent: Vec::new(),
        last_word: BTreeMap::new(),
        retries: 0,
    };
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["sent", id, ..] => report.sent.push((*id).to_owned()),
            [word @ ("delivered" | "dead"), id, ..] => {
                report
                    .last_word
                    .insert((*id).to_owned(), (*word).to_owned());
            }
            ["retry", ..] => report.retries += 1,
            _ => {}
        }
    }
    report
}

fn ids_with(report: &Report, word: &str) -> Vec<String> {
    report
        .last_word
        .iter()
        .filter(|(_, w)| w.as_str() == word)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The demo's summary agrees with its own per-message lines: every message sent ended delivered or dead,
/// exactly one dead (the poison message), and the flaky receiver caused retries.
fn check_report(report: &Report, output: &str) {
    assert_eq!(report.sent.len(), report.messages, "{output}");
    assert!(report.messages > 5, "a mix of messages: {output}");
    assert_eq!(
        report.last_word.len(),
        report.messages,
        "every message settled: {output}"
    );
    assert_eq!(
        ids_with(report, "delivered").len(),
        report.delivered,
        "{output}"
    );
    assert_eq!(ids_with(report, "dead").len(), report.dead, "{output}");
    assert_eq!(report.dead, 1, "{output}");
    assert_eq!(report.delivered, report.messages - 1, "{output}");
    assert!(
        report.retries > 0,
        "the flaky receiver made retries: {output}"
    );
}

/// Runs a command line the demo printed (its program replaced by the binary under test), plus `extra`.
fn run_printed(line: &str, extra: &[&str]) -> (bool, String) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let output = Command::new(HOOKD)
        .args(&words[1..])
        .args(extra)
        .env_remove("HOOKD_SOCKET")
        .env_remove("HOOKD_TOKEN")
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn demo_delivers_every_message_but_the_poison_one_and_exits_cleanly() {
    let mut demo = Demo::start(&[]);
    let status = demo.finish();
    let output = demo.output();
    assert!(status.success(), "{status}:\n{output}");
    assert!(!output.contains("stderr: "), "{output}");
    check_report(&report(&demo.seen), &output);
    let socket = demo
        .seen
        .iter()
        .find_map(|l| l.trim().strip_prefix("socket"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the temp dir and socket are gone: {socket}"
    );
}

#[test]
fn demo_keep_serves_the_commands_it_prints_until_interrupted() {
    let mut demo = Demo::start(&["--keep"]);
    demo.until(|l| l.starts_with("serving until Ctrl-C"));
    let report = report(&demo.seen);
    check_report(&report, &demo.output());
    let dead = ids_with(&report, "dead").remove(0);
    let commands: Vec<String> = demo
        .seen
        .iter()
        .skip_while(|l| l.as_str() != "try:")
        .cloned()
        .collect();
    let printed = |verb: &str| {
        commands
            .iter()
            .find(|l| l.split_whitespace().skip(1).take(2).eq(verb.split(' ')))
            .unwrap_or_else(|| panic!("no `{verb}` command printed:\n{}", commands.join("\n")))
            .clone()
    };

    let (ok, out) = run_printed(&printed("dlq list"), &["--json"]);
    assert!(ok, "{out}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{out}");
    assert_eq!(items[0]["id"], dead.as_str());

    let (ok, out) = run_printed(&printed("status --socket"), &["--json"]);
    assert!(ok, "{out}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["totals"]["delivered"], report.delivered);
    assert_eq!(stats["totals"]["dead"], 1);

    let (ok, out) = run_printed(&printed("msg show"), &["--json"]);
    assert!(ok, "{out}");
    let message: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(message["id"], dead.as_str());
    assert_eq!(message["state"], "dead");

    // A replay is printed live; the flaky receiver refuses the poison message again.
    let (ok, out) = run_printed(&printed("dlq replay"), &[]);
    assert!(ok && out.contains("replayed 1"), "{out}");
    demo.until(|l| l.starts_with("replayed") && l.contains(&dead));
    demo.until(|l| l.starts_with("dead") && l.contains(&dead));

    demo.interrupt();
    let status = demo.finish();
    assert!(status.success(), "{status}:\n{}", demo.output());
    let (ok, out) = run_printed(&printed("dlq list"), &[]);
    assert!(!ok && out.contains("not running"), "stopped: {out}");
}

#[test]
fn completions_and_the_man_page_describe_the_cli() {
    let run = |args: &[&str]| {
        let output = Command::new(HOOKD).args(args).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script) = run(&["completions", shell]);
        assert!(
            ok && script.contains("dlq") && script.contains("replay"),
            "{shell}: {script}"
        );
    }
    let (ok, page) = run(&["man"]);
    assert!(ok, "{page}");
    assert!(
        page.contains(".TH") && page.contains("hookd") && page.contains("dlq"),
        "{page}"
    );
    let (ok, _) = run(&["completions", "cmd.exe"]);
    assert!(!ok, "an unknown shell is refused");
}
