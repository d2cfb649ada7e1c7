//! Test helpers shared by every crate's integration tests: where the local stack is, unique
//! names so tests run in parallel and rerun without cleanup, a handle that runs the `herald`
//! binary against its own topics and keyspace, and readers for what landed in Kafka.
//!
//! The stack is the one `dev/stack up` starts; override its addresses with
//! `HERALD_TEST_KAFKA`, `HERALD_TEST_CQL` and `HERALD_TEST_REGISTRY`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod browser;
pub mod chart;
pub mod deliver;
pub mod dispatch;
pub mod inbox;
pub mod kafka;
pub mod keys;
pub mod otlp;
pub mod proxy;
pub mod smtp;
pub mod sse;
pub mod standin;
pub mod track;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use herald_contracts::TopicNames;
use herald_contracts::registry::RegistryConfig;
use herald_kafka::KafkaConfig;
use herald_store::StoreConfig;

/// Where the local stack listens.
#[derive(Debug, Clone)]
pub struct Stack {
    pub kafka: String,
    pub cql: String,
    pub registry: String,
}

impl Stack {
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Self {
            kafka: var("HERALD_TEST_KAFKA", "127.0.0.1:9092"),
            cql: var("HERALD_TEST_CQL", "127.0.0.1:9042"),
            registry: var("HERALD_TEST_REGISTRY", "http://127.0.0.1:8081"),
        }
    }
}

/// A local stack server frozen with SIGSTOP until the guard is dropped: to its clients it
/// looks like a server that stopped answering (requests time out, connections stay open).
#[derive(Debug)]
pub struct Frozen {
    pid: u32,
}

impl Stack {
    /// Freezes the Cassandra that `dev/stack up` started (its pid file names it).
    pub fn freeze_database(&self) -> Frozen {
        freeze("cassandra")
    }

    /// Freezes the schema registry that `dev/stack up` started.
    pub fn freeze_registry(&self) -> Frozen {
        freeze("registry")
    }

    /// Freezes the Kafka broker that `dev/stack up` started.
    pub fn freeze_broker(&self) -> Frozen {
        freeze("kafka")
    }
}

/// Freezes the stack server `name` (`cassandra`, `kafka`, `registry`) by its pid file.
fn freeze(name: &str) -> Frozen {
    let cache = std::env::var("HERALD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/herald"));
    let stack_dir = std::env::var("HERALD_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cache.join("stack"));
    let pid_file = stack_dir.join(format!("run/{name}.pid"));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()))
        .trim()
        .parse()
        .unwrap();
    signal(pid, "-STOP");
    Frozen { pid }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.pid, "-CONT");
    }
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {which} {pid}");
}

/// A name no other test run uses: `<name>_<12 hex digits>`, safe for topics and keyspaces.
pub fn unique(name: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{name}_{}", &id[..12])
}

/// A new directory of its own for one test's files, under `<tmp>/herald-tests/`, named
/// `unique(name)`.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("herald-tests").join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a finished `herald` invocation printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as one JSON document, after checking that the command succeeded (the `--json`
    /// output of `herald replay` and `herald dlq`).
    pub fn json(&self) -> serde_json::Value {
        self.assert_code(0);
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: stdout is not one JSON document:\n{}", self.stdout))
    }

    /// The first stdout line that starts with `prefix` (a bench's figure).
    pub fn line(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in\n{}", self.stdout))
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// One test's private Herald: its own topic prefix, keyspace and config file.
#[derive(Debug)]
pub struct HeraldEnv {
    pub stack: Stack,
    pub name: String,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    bin: PathBuf,
}

impl HeraldEnv {
    /// `bin` is `env!("CARGO_BIN_EXE_herald")` in the calling test.
    pub fn new(bin: &str, name: &str) -> Self {
        let stack = Stack::from_env();
        let dir = test_dir(name);
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap().to_owned();
        let config_path = dir.join("herald.toml");
        let config = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ntopic_prefix = \"{name}.\"\n\n\
             [registry]\nurl = \"{}\"\n\n\
             [store]\nnodes = [\"{}\"]\nkeyspace = \"{name}\"\n\n\
             [telemetry]\nlog_format = \"text\"\n",
            stack.kafka, stack.registry, stack.cql
        );
        std::fs::write(&config_path, config).unwrap();
        Self {
            stack,
            name,
            dir,
            config_path,
            bin: PathBuf::from(bin),
        }
    }

    pub fn topics(&self) -> TopicNames {
        TopicNames::new(format!("{}.", self.name))
    }

    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.stack.kafka.clone(),
            topic_prefix: format!("{}.", self.name),
            ..KafkaConfig::default()
        }
    }

    pub fn registry_config(&self) -> RegistryConfig {
        RegistryConfig {
            url: self.stack.registry.clone(),
            ..RegistryConfig::default()
        }
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            nodes: vec![self.stack.cql.clone()],
            keyspace: self.name.clone(),
            ..StoreConfig::default()
        }
    }

    /// A session on this env's keyspace, migrated to the current schema.
    pub async fn migrated_session(&self) -> std::sync::Arc<scylla::client::session::Session> {
        let config = self.store_config();
        let session = std::sync::Arc::new(herald_store::connect(&config).await.unwrap());
        herald_store::migrate(&session, &config).await.unwrap();
        session
    }

    /// The sections every role runs with, for a role run in-process: this env's Kafka,
    /// registry and keyspace, as its configuration file names them. The admin server binds an
    /// ephemeral port so several roles can run side by side.
    pub fn common(&self) -> herald_runtime::CommonConfig {
        herald_runtime::CommonConfig {
            kafka: self.kafka_config(),
            registry: self.registry_config(),
            store: self.store_config(),
            admin: herald_runtime::admin::AdminConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
            },
        }
    }

    /// Every record of `topic` as `herald tail` prints it, once there are at least `count`.
    pub fn tail_until(
        &self,
        topic: &str,
        count: usize,
        timeout: std::time::Duration,
    ) -> Vec<serde_json::Value> {
        wait_for(&format!("{count} records in {topic}"), timeout, || {
            let run = self.run(&["tail", topic, "--timeout", "20s"], None);
            let records: Vec<serde_json::Value> = run
                .stdout
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            (run.code == 0 && records.len() >= count).then_some(records)
        })
    }

    /// Every record of `topic` now, read to the end of each partition (`read_committed`):
    /// an exact count once the processes writing to it have stopped.
    pub fn read_all(&self, topic: &str) -> Vec<serde_json::Value> {
        let run = self.run(&["tail", topic, "--timeout", "60s"], None);
        run.assert_code(0);
        run.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Loads `dev/demo/seed.json` (users, categories, templates) into this env's keyspace.
    pub fn seed_demo(&self) {
        let seed = repo_root().join("dev/demo/seed.json");
        self.run(&["seed", seed.to_str().unwrap()], None)
            .assert_code(0);
    }

    /// `herald --config <this env's file> <args>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("HERALD_CONFIG")
            .env_remove("RUST_LOG");
        command
    }

    /// Runs `herald <args>` with `stdin` fed in, and waits for it.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        run(self.command(args), stdin)
    }

    /// Appends `toml` to this env's configuration file (tables after the ones it has).
    pub fn append_config(&self, toml: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config_path)
            .unwrap();
        file.write_all(toml.as_bytes()).unwrap();
    }

    /// Writes a file into this test's directory and returns its path.
    pub fn write(&self, file: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Topics (replication factor 1), schemas and, with `database`, the keyspace: what most
    /// tests need before they start.
    pub fn prepare(&self, database: bool) {
        let partitions = TEST_PARTITIONS.to_string();
        self.run(
            &[
                "topics",
                "apply",
                "--replication-factor",
                "1",
                "--partitions",
                &partitions,
            ],
            None,
        )
        .assert_code(0);
        self.run(&["schemas", "register"], None).assert_code(0);
        if database {
            self.run(&["db", "migrate"], None).assert_code(0);
        }
    }
}

/// Partitions per topic in test envs: enough for partitions to be shared and handed over,
/// few enough that a whole test run stays within the broker's open-file limit (each
/// partition holds files open, and every test env declares 29 topics).
pub const TEST_PARTITIONS: i32 = 3;

/// A long-running `herald` role started as its own process, so a test can kill it.
#[derive(Debug)]
pub struct RoleProcess {
    child: std::process::Child,
    pub log: PathBuf,
    /// Where its admin server (`/healthz`, `/readyz`, `/metrics`) listens.
    pub admin: std::net::SocketAddr,
}

impl HeraldEnv {
    /// Starts `herald <args>` in the background with extra environment; output goes to a log
    /// file in the test's directory (named after `name`, numbered per start).
    pub fn spawn(&self, name: &str, args: &[&str], envs: &[(&str, &str)]) -> RoleProcess {
        let mut n = 0;
        let log = loop {
            let candidate = self.dir.join(format!("{name}-{n}.log"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        let file = std::fs::File::create(&log).unwrap();
        let admin = free_local_port();
        let mut command = self.command(args);
        command
            .env("HERALD_ADMIN__LISTEN", admin.to_string())
            .env(
                "HERALD_TELEMETRY__LOG_LEVEL",
                "warn,herald_router=info,herald_kafka=info",
            )
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = command.spawn().unwrap();
        RoleProcess { child, log, admin }
    }
}

/// A loopback address no one listens on right now, for a child process to bind. (Another
/// process could take it in between; on a test machine that does not happen in practice.)
pub fn free_local_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `GET http://<addr><path>`: the status code and body, or `None` while nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let timeout = std::time::Duration::from_secs(5);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// The number after `label` in `line` (`"p99 12.5 ms"` -> 12.5), commas and a `%` dropped: a
/// figure a bench printed.
pub fn number_after(line: &str, label: &str) -> f64 {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {line}"))
        + label.len()..];
    rest.split_whitespace()
        .next()
        .and_then(|n| n.trim_end_matches('%').replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("a number after {label} in {line}"))
}

/// The value of one Prometheus series in a `/metrics` text: `series` is the name with its
/// labels as rendered (`name` or `name{a="b"}`); the sum when several series match a bare name.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            let matches = name == series
                || (!series.contains('{') && name.starts_with(&format!("{series}{{")));
            matches.then(|| value.parse().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

impl RoleProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (for one that could not start, e.g. its port was
    /// taken).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit code.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_for("the role to exit", timeout, || {
            self.child.try_wait().unwrap()
        })
        .code()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET <path>` on the role's admin server, or `None` while it does not answer.
    pub fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.admin, path)
    }

    /// Whether `/readyz` says ready (`None` while the admin server does not answer).
    pub fn ready(&self) -> Option<bool> {
        self.admin_get("/readyz").map(|(code, _)| code == 200)
    }

    /// A series' value on the role's `/metrics` (see [`metric_value`]).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (code, text) = self.admin_get("/metrics")?;
        if code != 200 {
            return None;
        }
        metric_value(&text, series)
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion, feeding it `stdin`.
pub fn run(mut command: Command, stdin: Option<&str>) -> Run {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// JSON lines of invoice requests `<id_prefix>-<i>` for `i` in `range`, spread over `users`
/// recipients with direct email addresses: what the router tests feed in bulk.
pub fn invoice_requests(id_prefix: &str, range: std::ops::Range<usize>, users: usize) -> String {
    range
        .map(|i| {
            let user = i % users.max(1);
            serde_json::json!({
                "event_id": format!("{id_prefix}-{i}"),
                "tenant": "acme",
                "category": "billing.invoice_ready",
                "template": {"id": "invoice_ready"},
                "recipient": {"user_id": format!("u{user}"), "email": format!("u{user}@example.com")},
                "channels": ["email"],
                "data": {"name": "U", "invoice": {"number": format!("INV-{i}"), "amount": "1.00"}},
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// (status, channel, reason) of one status record, `""` where a field is absent.
pub type Outcome = (String, String, String);

/// One [`Outcome`], for writing expectations.
pub fn outcome(status: &str, channel: &str, reason: &str) -> Outcome {
    (status.to_owned(), channel.to_owned(), reason.to_owned())
}

/// Status records (as `herald tail` prints them) grouped by event id, each event's outcomes
/// sorted.
pub fn outcomes_by_event(
    records: &[serde_json::Value],
) -> std::collections::BTreeMap<String, Vec<Outcome>> {
    let mut by_event: std::collections::BTreeMap<String, Vec<Outcome>> = Default::default();
    for r in records {
        let v = &r["value"];
        let text = |f: &str| v[f].as_str().unwrap_or("").to_owned();
        by_event.entry(text("event_id")).or_default().push((
            text("status"),
            text("channel"),
            text("reason"),
        ));
    }
    for list in by_event.values_mut() {
        list.sort();
    }
    by_event
}

impl HeraldEnv {
    /// The first outcome of `event_id` on the status topic whose status is one of `statuses`
    /// (`routed`, `dead_lettered`, `suppressed`, ...), waiting up to a minute for it.
    pub fn wait_for_outcome(&self, event_id: &str, statuses: &[&str]) -> Outcome {
        let topic = self.topics().status();
        wait_for(
            &format!("a {statuses:?} status of {event_id}"),
            std::time::Duration::from_secs(60),
            || {
                let records = self.read_all(&topic);
                outcomes_by_event(&records)
                    .remove(event_id)?
                    .into_iter()
                    .find(|(status, _, _)| statuses.contains(&status.as_str()))
            },
        )
    }
}

/// The bytes of a hex string (trace and span ids, `tail`'s `value_hex`).
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The repository root (for `schemas/`, `dev/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python interpreter with the test requirements (`dev/test` installs it with
/// `dev/pyenv` and exports it as `HERALD_TEST_PYTHON`).
pub fn python() -> PathBuf {
    exported_tool("HERALD_TEST_PYTHON", "dev/pyenv")
}

/// The `helm` binary the chart tests render with (`dev/test` builds it with `dev/helm` and
/// exports it as `HERALD_TEST_HELM`).
pub fn helm() -> PathBuf {
    exported_tool("HERALD_TEST_HELM", "dev/helm")
}

/// The `promtool` binary the chart's alert rules are checked with (`dev/test` builds it with
/// `dev/promtool` and exports it as `HERALD_TEST_PROMTOOL`).
pub fn promtool() -> PathBuf {
    exported_tool("HERALD_TEST_PROMTOOL", "dev/promtool")
}

/// A tool's path that `dev/test` exports in `var`, from the script that prints it last.
fn exported_tool(var: &str, script: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run the tests with dev/test, or export {var}=$({script} | tail -n1)"
        )
    })
}
