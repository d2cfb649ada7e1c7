//! The role a bench measures runs as a child process, so that its CPU time, memory and metrics
//! are its own: starting it, and reading those from /proc and its admin port.

use std::path::PathBuf;
use std::process::Stdio;

/// Linux's USER_HZ: the unit of utime and stime in /proc/<pid>/stat.
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of a process so far, in µs (/proc/<pid>/stat fields 14 and 15).
pub(super) fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / TICKS_PER_SECOND)
}

/// The configuration file this process was started with, for the `herald` it starts.
pub(super) fn config_path() -> Option<PathBuf> {
    <crate::cli::Cli as clap::Parser>::try_parse()
        .ok()
        .and_then(|cli| cli.config)
}

/// `herald [--config F]` with the bench's overrides, its errors to this process's stderr.
pub(super) fn herald(config: &Option<PathBuf>, env: &[(&str, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("herald")),
    );
    if let Some(path) = config {
        command.arg("--config").arg(path);
    }
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Peak resident set size of a process, in KiB (Linux `VmHWM`).
pub(super) fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(super) async fn fetch_metrics(port: u16) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(url.trim_start_matches("http://").split('/').next()?)
                .ok()?;
        stream
            .write_all(
                format!(
                    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        Some(body)
    })
    .await
    .ok()
    .flatten()
}

/// The pid of a local stack server (`kafka`, `cassandra`, `registry`) that `dev/stack up`
/// started, from its pid file; `None` for a stack run some other way.
pub(super) fn stack_server_pid(name: &str) -> Option<u32> {
    let stack_dir = match std::env::var_os("HERALD_STACK_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HERALD_CACHE") {
            Some(cache) => PathBuf::from(cache).join("stack"),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/herald/stack"),
        },
    };
    std::fs::read_to_string(stack_dir.join(format!("run/{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A counter's value from Prometheus text (the sum over its label sets).
pub(super) fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
