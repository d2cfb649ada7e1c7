//! The command line.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 failure (server unreachable, change refused); \
2 bad configuration or arguments; 3 some input rejected (the rest was processed).";

/// Herald: a Kafka-native notification pipeline.
#[derive(Debug, Parser)]
#[command(name = "herald", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// Configuration file (TOML). `HERALD_<SECTION>__<KEY>` environment variables override it.
    #[arg(long, short, global = true, env = "HERALD_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Manage Avro schemas in the schema registry.
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Manage the database schema.
    #[command(subcommand)]
    Db(DbCommand),
    /// Produce notification requests from JSON lines (a file, or stdin).
    Produce(ProduceArgs),
    /// Print a Herald topic's records as JSON lines, headers included.
    Tail(TailArgs),
    /// Load users, preferences, category defaults and templates from a JSON file.
    Seed(SeedArgs),
    /// Run the router: requested events in, one dispatch per channel and statuses out,
    /// exactly once. Stops on SIGTERM after committing the open batch.
    Router,
    /// Run one channel's delivery worker: dispatches in, provider calls (each at most once
    /// per the send ledger), statuses, retry tiers and DLQ records out. Stops on SIGTERM after
    /// finishing the sends in flight and committing.
    Deliver(DeliverArgs),
    /// Run the HTTP API: `POST /v1/notifications` (and `/batch`) with tenant API keys,
    /// answered 202 once Kafka acknowledged the request. Stops on SIGTERM after finishing the
    /// requests in flight.
    Api,
    /// Run the tracker: statuses in, each notification's timeline, latest state per dispatch
    /// and the per-user index written to the database, effectively once. Stops on SIGTERM
    /// after writing and committing the open batch.
    Track,
    /// Manage tenant API keys for `herald api`.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Check the configuration (file and `HERALD_*` environment) without connecting anywhere.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure a role's throughput and latency against a baseline in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Copy a range of a Herald topic back into the pipeline, filtered, exactly once and
    /// resumable: `recover` keeps ids (only what never finished goes through), `resend`
    /// derives new ones (everything matched is processed again, once).
    Replay(Box<ReplayArgs>),
    /// Inspect the DLQ (`list`, `show`) and send its records back to the topics they came
    /// from (`redrive`), through the same exactly-once, resumable machinery as `replay`.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Seed users, produce events, then time a transactional copy of them (the baseline) and
    /// the router on the same topics. Creates its own topics and keyspace (`bench<time>`).
    Router(BenchRouterArgs),
    /// Produce webhook dispatches, then time a plain consume-and-POST loop (the baseline) and
    /// the delivery worker, in this process, against a local sink that answers 200 at once.
    /// Creates its own topics and keyspace (`bench<time>`).
    Deliver(BenchDeliverArgs),
    /// Produce records, then time a transactional copy of them (the baseline) and `herald
    /// replay` (recover mode, no filter) on the same topics, in this process. Creates its own
    /// topics (`bench<time>`).
    Replay(BenchReplayArgs),
    /// Start `herald api`, then time single notifications, batches of 100 and a fixed request
    /// rate from concurrent HTTP clients against a baseline producing the same records straight
    /// to Kafka from this process; prints the API's peak RSS and CPU per notification. Creates
    /// its own topics and keyspace (`bench<time>`).
    Api(BenchApiArgs),
    /// Produce status records (three per notification), then time a plain consume loop on
    /// them (the baseline, in this process) and `herald track` (a child process) reading the same
    /// records; prints the tracker's CPU per status beside the CQL server's and Kafka's, and its
    /// peak RSS. Creates its own topics and keyspace (`bench<time>`).
    Track(BenchTrackArgs),
    /// Start `herald api` with the inbox on, hold N Server-Sent Events streams on it, then
    /// produce one new message per stream's user to `notifications.inbox` and time until every
    /// stream has it, against a plain consumer reading the same records (the baseline); prints
    /// the API's RSS and CPU per message. Creates its own topics and keyspace (`bench<time>`).
    Inbox(BenchInboxArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BenchInboxArgs {
    /// Streams to hold, one user each.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) streams: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 12)]
    pub(crate) partitions: i32,
    /// Replication factor of the bench topics (1 on a single broker).
    #[arg(long, default_value_t = 1)]
    pub(crate) replication_factor: i32,
}

#[derive(Debug, Args)]
pub(crate) struct BenchApiArgs {
    /// Single notifications to post (and records the baseline produces).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) requests: usize,
    /// Batches of 100 notifications to post.
    #[arg(long, default_value_t = 200)]
    pub(crate) batches: usize,
    /// Concurrent HTTP clients (keep-alive), and records in flight in the baseline.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Requests per second of the fixed-rate phase (single notifications).
    #[arg(long, default_value_t = 2000)]
    pub(crate) rate: u32,
    /// Seconds of the fixed-rate phase.
    #[arg(long, default_value_t = 10)]
    pub(crate) rate_seconds: u32,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 12)]
    pub(crate) partitions: i32,
    /// Replication factor of the bench topics (1 on a single broker).
    #[arg(long, default_value_t = 1)]
    pub(crate) replication_factor: i32,
}

#[derive(Debug, Args)]
pub(crate) struct BenchReplayArgs {
    /// Records to produce and replay.
    #[arg(long, default_value_t = 500_000)]
    pub(crate) records: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 12)]
    pub(crate) partitions: i32,
    /// Replication factor of the bench topics (1 on a single broker).
    #[arg(long, default_value_t = 1)]
    pub(crate) replication_factor: i32,
}

#[derive(Debug, Args)]
pub(crate) struct BenchTrackArgs {
    /// Status records to produce and track (rounded up to whole notifications).
    #[arg(long, default_value_t = 500_000)]
    pub(crate) statuses: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 12)]
    pub(crate) partitions: i32,
    /// Replication factor of the bench topics (1 on a single broker).
    #[arg(long, default_value_t = 1)]
    pub(crate) replication_factor: i32,
}

#[derive(Debug, Args)]
pub(crate) struct BenchDeliverArgs {
    /// The channel to measure; only webhook has a local sink.
    #[arg(long)]
    pub(crate) channel: herald_contracts::Channel,
    /// Dispatches to produce.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) dispatches: usize,
    /// Distinct recipients the dispatches go to (the record key; one recipient's dispatches
    /// are delivered in order).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) recipients: usize,
    /// Requests in flight at once in the baseline.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 12)]
    pub(crate) partitions: i32,
    /// Replication factor of the bench topics (1 on a single broker).
    #[arg(long, default_value_t = 1)]
    pub(crate) replication_factor: i32,
    /// Dispatches per second of the steady phase after the backlog (latency at a steady load).
    #[arg(long, default_value_t = 1000)]
    pub(crate) steady_rate: u32,
    /// Seconds of the steady phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub(crate) steady_seconds: u32,
}

#[derive(Debug, Args)]
pub(crate) struct BenchRouterArgs {
    /// Users to seed.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) users: usize,
    /// Events to produce.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) events: usize,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 12)]
    pub(crate) partitions: i32,
    /// Replication factor of the bench topics (1 on a single broker).
    #[arg(long, default_value_t = 1)]
    pub(crate) replication_factor: i32,
    /// Events per second of the steady phase after the backlog (latency at a steady load).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) steady_rate: u32,
    /// Seconds of the steady phase (0 skips it).
    #[arg(long, default_value_t = 10)]
    pub(crate) steady_seconds: u32,
}

impl Command {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Topics(_) => "topics",
            Command::Schemas(_) => "schemas",
            Command::Db(_) => "db",
            Command::Produce(_) => "produce",
            Command::Tail(_) => "tail",
            Command::Seed(_) => "seed",
            Command::Router => "router",
            Command::Deliver(_) => "deliver",
            Command::Bench(_) => "bench",
            Command::Config(_) => "config",
            Command::Replay(_) => "replay",
            Command::Dlq(_) => "dlq",
            Command::Api => "api",
            Command::Track => "track",
            Command::Apikey(_) => "apikey",
        }
    }

    /// Long-running roles log at the configured level; operator tools only warn.
    pub(crate) fn is_role(&self) -> bool {
        matches!(
            self,
            Command::Router | Command::Deliver(_) | Command::Api | Command::Track
        )
    }
}

#[derive(Debug, Args)]
pub(crate) struct DeliverArgs {
    /// The channel this process delivers: email, sms, push, webhook or inapp.
    #[arg(long)]
    pub(crate) channel: herald_contracts::Channel,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApikeyCommand {
    /// Make a key for a tenant and print it on stdout, once: only its hash is stored.
    Create(ApikeyCreateArgs),
    /// List keys (id, tenant, scopes, created, revoked, label); never the keys themselves.
    List(ApikeyListArgs),
    /// Revoke a key by its id; `herald api` refuses it within api.key_cache_ttl.
    Revoke(ApikeyRevokeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ApikeyCreateArgs {
    /// The tenant the key acts in.
    #[arg(long)]
    pub(crate) tenant: String,
    /// What the key may do, comma-separated: send, manage, read.
    #[arg(long)]
    pub(crate) scopes: String,
    /// A note saying whose key this is.
    #[arg(long)]
    pub(crate) label: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ApikeyListArgs {
    /// Only this tenant's keys.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ApikeyRevokeArgs {
    /// The key's id (the 16 hex digits after `hrld_`, as `list` shows).
    pub(crate) key_id: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Load and validate the configuration and print what the process would use; with
    /// --channel, also build that channel's provider from it (reading any key files). Exit
    /// code 2 and the offending key on a mistake.
    Check(ConfigCheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ConfigCheckArgs {
    /// Also check the provider configuration of this delivery channel (and, for email, the
    /// unsubscribe and tracking links it signs).
    #[arg(long)]
    pub(crate) channel: Option<herald_contracts::Channel>,
    /// Also check what `herald api` needs beyond loading: the unsubscribe and tracking
    /// sections whole (base_url with secret) where they are set.
    #[arg(long)]
    pub(crate) api: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Make the cluster match the declared topics: create missing ones, grow partitions, set
    /// configs. Never deletes or shrinks, and refuses to grow notifications.requested or a
    /// dispatch lane without --allow-repartition. A second run changes nothing and says so.
    Apply(TopicsApplyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct TopicsApplyArgs {
    /// Topic declarations; the compiled-in topics/herald.toml by default.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Override every topic's replication factor (and cap min.insync.replicas to it), e.g. 1
    /// for a single-broker development cluster.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub(crate) replication_factor: Option<i32>,
    /// Override every topic's partition count, e.g. 3 on a development cluster. Partitions
    /// are still never shrunk.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub(crate) partitions: Option<i32>,
    /// Also grow the partitions of notifications.requested and the dispatch lanes, which apply
    /// otherwise refuses (exit code 1, nothing changed): growing moves recipients to other
    /// partitions, so their records in flight lose per-recipient order and dedupe. Stop the
    /// producers and let the router and the workers drain those topics first.
    #[arg(long)]
    pub(crate) allow_repartition: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemasCommand {
    /// Register every Herald schema under its subject: the request subject with
    /// FULL_TRANSITIVE compatibility (a producer cannot register a version the router cannot
    /// read), the dispatch and status subjects with BACKWARD. An incompatible change is
    /// refused with the registry's reason (exit code 1).
    Register(SchemasRegisterArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SchemasRegisterArgs {
    /// Read the .avsc files from this directory instead of the compiled-in schemas/.
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Create the keyspace and apply every migration not yet applied, each once.
    Migrate,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Each line is one JSON request (see schemas/notification_requested.avsc; \
priority and channels in lower case, times in RFC 3339, data as a JSON object). A bad line is \
reported on stderr with its number and reason and nothing is produced for it; exit code 3 says \
some line was rejected."
)]
pub(crate) struct ProduceArgs {
    /// JSON-lines file; `-` or nothing reads stdin.
    pub(crate) file: Option<PathBuf>,
    /// Topic to produce to; the configured notifications.requested by default. A Herald
    /// topic's name gets kafka.topic_prefix; any other name is taken as written.
    #[arg(long)]
    pub(crate) topic: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// A Herald topic's name, e.g. notifications.status (kafka.topic_prefix is prepended), or
    /// any full topic name, taken as written.
    pub(crate) topic: String,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long, short)]
    pub(crate) follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub(crate) limit: Option<u64>,
    /// Give up reaching the end after this long (without --follow).
    #[arg(long, default_value = "30s", value_parser = humantime_duration)]
    pub(crate) timeout: std::time::Duration,
}

fn humantime_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    /// The seed file (JSON); see dev/demo/seed.json.
    pub(crate) file: PathBuf,
}

const REPLAY_HELP: &str = "Examples:
  herald replay --topic notifications.requested --from 2026-12-01T08:00:00Z --to 2026-12-01T10:00:00Z --mode recover
  herald replay --topic notifications.dispatch.email --from 3h --category billing.invoice_ready --mode resend --dry-run
  herald replay --topic notifications.dlq --from earliest --class unknown_template --mode recover
  herald replay --resume 3f2a9c1b

The range is resolved per partition when the replay starts (--to defaults to each partition's \
end then) and kept with the replay's plan in notifications.replays; --resume needs only the id. \
A record at --from is copied, one at --to is not. Copies go back to the topic read (from the \
DLQ: to the topic each record came from) unless --into says otherwise. Exit codes: 0 done; \
1 failed or interrupted (resume it); 2 bad arguments, nothing written.";

/// How a replay treats ids.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ReplayMode {
    /// Keep event and dispatch ids: the dedupe and send ledgers let through only what was lost
    /// or never finished. After an outage.
    Recover,
    /// Give each copy a derived id (`<event_id>:replay:<replay_id>`) so it is processed again,
    /// once. After a template or preference fix. Asks for confirmation (or --yes).
    Resend,
}

#[derive(Debug, Args)]
#[command(after_help = REPLAY_HELP)]
pub(crate) struct ReplayArgs {
    /// The topic to copy from: a Herald topic's name (kafka.topic_prefix is prepended) or any
    /// full topic name.
    #[arg(long, required_unless_present = "resume")]
    pub(crate) topic: Option<String>,
    /// Start of the range, included: an RFC 3339 time, a time ago (`2h`, `90m`),
    /// PARTITION:OFFSET[,...] (only the partitions named are replayed) or `earliest`.
    #[arg(long, required_unless_present = "resume")]
    pub(crate) from: Option<String>,
    /// End of the range, excluded, in the same forms; each partition's end when the replay
    /// starts by default.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// recover (keep ids) or resend (derive new ids).
    #[arg(long, value_enum, required_unless_present = "resume")]
    pub(crate) mode: Option<ReplayMode>,
    /// Copy into this topic instead of back into the one read.
    #[arg(long)]
    pub(crate) into: Option<String>,
    /// Only records of this tenant (repeatable: any of them).
    #[arg(long = "tenant")]
    pub(crate) tenants: Vec<String>,
    /// Only records of this user id.
    #[arg(long = "user")]
    pub(crate) users: Vec<String>,
    /// Only records of this category.
    #[arg(long = "category")]
    pub(crate) categories: Vec<String>,
    /// Only records for this channel (a dispatch's channel; a request's channel override).
    #[arg(long = "channel")]
    pub(crate) channels: Vec<herald_contracts::Channel>,
    /// Only this event id.
    #[arg(long = "event-id")]
    pub(crate) event_ids: Vec<String>,
    /// Only the event ids in this file, one a line.
    #[arg(long)]
    pub(crate) event_ids_file: Option<PathBuf>,
    /// DLQ only: records dead-lettered by this stage (decode, validate, render, deliver, ...).
    #[arg(long = "stage")]
    pub(crate) stages: Vec<String>,
    /// DLQ only: records dead-lettered with this error class.
    #[arg(long = "class")]
    pub(crate) classes: Vec<String>,
    /// Read and filter, write nothing; print the counts and the first matching records.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Copy at most this many records per second.
    #[arg(long)]
    pub(crate) rate: Option<std::num::NonZeroU32>,
    /// Do not ask before a resend.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Name the replay (lower-case letters, digits, `-`); a new 8-digit id by default.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// Continue the replay with this id after a crash or Ctrl-C, from its saved plan.
    #[arg(long, conflicts_with_all = ["topic", "from", "to", "mode", "into", "tenants", "users",
        "categories", "channels", "event_ids", "event_ids_file", "stages", "classes", "id"])]
    pub(crate) resume: Option<String>,
    /// Print the final report as one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// DLQ records grouped by stage, error class and original topic: count, first and last
    /// time, one example each.
    List(DlqListArgs),
    /// One DLQ record (PARTITION:OFFSET) with its headers and, when it decodes, its value.
    Show(DlqShowArgs),
    /// Send matching DLQ records back to the topic each came from (its error headers), once:
    /// a transaction per batch, resumable with `herald replay --resume <id>`. Event and
    /// dispatch ids are kept (the dedupe and send ledgers stop what already got through). A
    /// record that fails again returns to the DLQ with its redrive count; past
    /// --max-redrives it stays there and is reported.
    Redrive(DlqRedriveArgs),
}

/// Which DLQ records: a time or offset range and filters.
#[derive(Debug, Args)]
pub(crate) struct DlqSelection {
    /// Start (included): an RFC 3339 time, a time ago (`2h`), PARTITION:OFFSET[,...] or
    /// `earliest`.
    #[arg(long, default_value = "earliest")]
    pub(crate) from: String,
    /// End (excluded); the end of each partition by default.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Only records of this tenant (repeatable).
    #[arg(long = "tenant")]
    pub(crate) tenants: Vec<String>,
    /// Only records dead-lettered by this stage (decode, validate, render, deliver).
    #[arg(long = "stage")]
    pub(crate) stages: Vec<String>,
    /// Only records with this error class.
    #[arg(long = "class")]
    pub(crate) classes: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DlqListArgs {
    #[command(flatten)]
    pub(crate) selection: DlqSelection,
}

#[derive(Debug, Args)]
pub(crate) struct DlqShowArgs {
    /// The record's position, PARTITION:OFFSET (as `list` and `tail` print them).
    pub(crate) position: String,
}

#[derive(Debug, Args)]
pub(crate) struct DlqRedriveArgs {
    #[command(flatten)]
    pub(crate) selection: DlqSelection,
    /// Leave a record in the DLQ (and report it) once it has been redriven this many times.
    #[arg(long, default_value_t = 3)]
    pub(crate) max_redrives: u32,
    /// Read and filter, write nothing; print what would be redriven.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Redrive at most this many records per second.
    #[arg(long)]
    pub(crate) rate: Option<std::num::NonZeroU32>,
    /// Name the redrive (it is a replay: `herald replay --resume <id>` continues it).
    #[arg(long)]
    pub(crate) id: Option<String>,
}
