//! The role a bench measures runs as a child process, so that its CPU time, memory and metrics
//! are its own: starting it, and reading those from /proc and its admin port.

use std::path::PathBuf;
use std::process::Stdio;

use crate::config_file::HeraldConfig;

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

/// The container image's malloc setting (see the Dockerfile), so that a bench measures the
/// memory a deployed role uses; a value in the bench's own environment wins.
const MALLOC_ARENA_MAX: &str = "MALLOC_ARENA_MAX";
const IMAGE_ARENA_MAX: &str = "2";

/// The overrides every role a bench starts runs with: the run's own topics and keyspace, and
/// quiet logs. Callers add their role's own (`HERALD_ADMIN__LISTEN`, ...).
pub(super) fn run_env(config: &HeraldConfig) -> Vec<(&'static str, String)> {
    vec![
        (
            "HERALD_KAFKA__TOPIC_PREFIX",
            config.kafka.topic_prefix.clone(),
        ),
        ("HERALD_STORE__KEYSPACE", config.store.keyspace.clone()),
        ("HERALD_TELEMETRY__LOG_LEVEL", "warn".to_owned()),
    ]
}

/// `herald [--config F]` with the bench's overrides, its errors to this process's stderr.
pub(super) fn herald(config: &Option<PathBuf>, env: &[(&str, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("herald")),
    );
    if let Some(path) = config {
        command.arg("--config").arg(path);
    }
    if std::env::var_os(MALLOC_ARENA_MAX).is_none() {
        command.env(MALLOC_ARENA_MAX, IMAGE_ARENA_MAX);
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

/// Busy CPU time of the whole machine so far, in µs (every CPU's user, nice, system, irq and
/// softirq time from the first line of /proc/stat).
pub(super) fn machine_cpu_micros() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...: busy is user to softirq but idle
    // and iowait.
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum();
    Some(busy * 1_000_000 / TICKS_PER_SECOND)
}

/// What a role's process and the machine had spent at one moment, and how much work the role
/// had done by then (a counter of its own): two readings give the cost per unit of work.
#[derive(Debug, Clone)]
pub(super) struct Spent {
    role_cpu: Option<u64>,
    machine_cpu: Option<u64>,
    cql_server_cpu: Option<u64>,
    kafka_cpu: Option<u64>,
    allocations: f64,
    statements: f64,
    work: f64,
}

impl Spent {
    /// Reads process `pid`'s CPU and its `/metrics` on `admin_port`; `work` names the counter
    /// that counts its units of work (summed over its labels).
    pub(super) async fn read(pid: u32, admin_port: u16, work: &str) -> Self {
        let metrics = fetch_metrics(admin_port).await.unwrap_or_default();
        Self {
            role_cpu: cpu_micros(pid),
            machine_cpu: machine_cpu_micros(),
            cql_server_cpu: stack_server_pid("cassandra").and_then(cpu_micros),
            kafka_cpu: stack_server_pid("kafka").and_then(cpu_micros),
            allocations: counter(&metrics, herald_runtime::metric_names::PROCESS_ALLOCATIONS),
            statements: counter(&metrics, herald_runtime::metric_names::STORE_STATEMENTS),
            work: counter(&metrics, work),
        }
    }

    /// Lines saying what one unit of work (`unit`, e.g. "event", and its plural `units`) cost
    /// between `self` and `later`: CPU of the machine, the CQL server, the role and Kafka,
    /// statements and allocations.
    pub(super) fn per_unit(&self, later: &Spent, unit: &str, plural: &str) -> Vec<String> {
        let units = later.work - self.work;
        if units <= 0.0 {
            return vec![format!("no {plural} counted between the two readings")];
        }
        let micros = |from: Option<u64>, to: Option<u64>| {
            from.zip(to)
                .and_then(|(from, to)| to.checked_sub(from))
                .map_or("n/a".to_owned(), |us| format!("{:.1}", us as f64 / units))
        };
        vec![
            format!(
                "CPU µs per {unit} ({units:.0} {plural} measured): whole machine {} / CQL server {} / herald {} / Kafka {}",
                micros(self.machine_cpu, later.machine_cpu),
                micros(self.cql_server_cpu, later.cql_server_cpu),
                micros(self.role_cpu, later.role_cpu),
                micros(self.kafka_cpu, later.kafka_cpu),
            ),
            format!(
                "per {unit}: {:.2} CQL statements, {:.0} allocations",
                (later.statements - self.statements) / units,
                (later.allocations - self.allocations) / units,
            ),
        ]
    }
}

/// Polls `/readyz` on `admin_port` until it answers 200 (at most a minute).
pub(super) async fn wait_ready(admin_port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the role on admin port {admin_port} was not ready within a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
