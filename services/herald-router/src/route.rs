//! Routing one requested event: decode → deduplicate → expire → enrich → decide → render →
//! the records to emit (dispatches, statuses, or a DLQ record). Kafka transactions are the
//! processor's business; this module only says what to write, or that a transient fault means
//! the batch must be retried.

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

use herald_contracts::status::reason;
use herald_contracts::{
    Codec, CodecError, Dispatch, Lane, NotificationRequest, RequestIdentity, Status, StatusEvent,
    TopicNames, headers,
};
use herald_runtime::metric_names::{
    ROUTER_CACHE_LOOKUPS, ROUTER_DISPATCHES, ROUTER_EVENTS, ROUTER_UNIDENTIFIED_DEAD_LETTERS,
};
use herald_store::StoreError;
use herald_store::dedupe::{DedupeLedger, Seen};
use herald_store::directory::{CategoryDefaults, Directory, Profile, TemplateRow};
use herald_store::frequency_cap::{Cap, FrequencyCap, Subject};
use herald_store::schedule::{Deferred, Schedule};
use herald_store::suppressions::{Suppressions, normalize};

pub use herald_kafka::engine::Input;
use herald_kafka::headers::{PairsReader, PairsWriter};
pub use herald_kafka::transaction::OutRecord;
use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::RouterConfig;
use crate::decide::{Decision, Target, decide};
use crate::quiet_hours::{QuietHours, quiet_until};
use crate::render::{Renderer, TemplateKey, TemplateSource, locale_chain, template_for};
use herald_runtime::cache::TtlCache;

/// What the router reads from a consumed record beyond its bytes.
trait EventRecord {
    /// When this record was due, if the scheduler released it.
    fn scheduled_for(&self) -> Option<DateTime<Utc>>;
    /// Identifies this record for the dedupe ledger.
    fn source(&self) -> String;
}

impl EventRecord for Input {
    fn scheduled_for(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.header_number(headers::SCHEDULED_FOR)?)
    }

    fn source(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// The stages of routing one event, as timed in the stage-latency histogram.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Decode,
    Dedupe,
    Enrich,
    Policy,
    Render,
    Emit,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Decode,
        Stage::Dedupe,
        Stage::Enrich,
        Stage::Policy,
        Stage::Render,
        Stage::Emit,
    ];

    /// The value of the histogram's `stage` label.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Dedupe => "dedupe",
            Stage::Enrich => "enrich",
            Stage::Policy => "policy",
            Stage::Render => "render",
            Stage::Emit => "emit",
        }
    }
}

/// One histogram handle per stage, looked up once: `histogram!` with a label builds and hashes
/// the key on every call.
struct StageHistograms([metrics::Histogram; 6]);

impl StageHistograms {
    fn register() -> Self {
        Self(Stage::ALL.map(|stage| {
            metrics::histogram!(herald_runtime::metric_names::ROUTER_STAGE_SECONDS, "stage" => stage.label())
        }))
    }
}

/// Times the stages of one event, each from the end of the previous one.
struct Stages<'a> {
    histograms: &'a StageHistograms,
    lap_started: std::time::Instant,
}

impl<'a> Stages<'a> {
    fn start(histograms: &'a StageHistograms) -> Self {
        Self {
            histograms,
            lap_started: std::time::Instant::now(),
        }
    }

    fn lap(&mut self, stage: Stage) {
        let now = std::time::Instant::now();
        self.histograms.0[stage as usize].record((now - self.lap_started).as_secs_f64());
        self.lap_started = now;
    }
}

/// A fault that waiting can cure: the batch is aborted and retried, nothing is dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum Transient {
    #[error("database: {0}")]
    Store(StoreError),
    #[error("schema registry: {0}")]
    Registry(CodecError),
}

impl Transient {
    pub fn stage(&self) -> &'static str {
        match self {
            Transient::Store(_) => "database",
            Transient::Registry(_) => "registry",
        }
    }
}

/// Why an event goes to the DLQ.
struct Poison {
    stage: &'static str,
    class: &'static str,
    message: String,
    /// Whom the event is about, once it decoded far enough to say: its `dead_lettered` status
    /// goes to them. Left `None` by the decode stage, which looks it up from the raw record.
    identity: Option<RequestIdentity>,
}

impl Poison {
    fn new(stage: &'static str, class: &'static str, message: impl Into<String>) -> Self {
        Self {
            stage,
            class,
            message: message.into(),
            identity: None,
        }
    }

    fn about(mut self, request: &NotificationRequest) -> Self {
        self.identity = Some(request.identity());
        self
    }

    /// Whether the event was recorded in the dedupe ledger before it failed: only rendering
    /// fails after deduplication.
    fn after_dedupe(&self) -> bool {
        self.stage == RENDER_STAGE
    }
}

/// The DLQ stage of a template that is missing or does not render.
const RENDER_STAGE: &str = "render";

/// The dedupe ledger's key of an event: its id, or for a release from the schedule the id and
/// the time it was due (a release is the same event a second time, on purpose).
fn dedupe_key(event_id: &str, released: Option<DateTime<Utc>>) -> String {
    match released {
        Some(due) => format!("{event_id}#scheduled@{}", due.timestamp_millis()),
        None => event_id.to_owned(),
    }
}

/// Cached by (tenant, key): profiles by user id, defaults by category, templates by id.
type Cache<V> = Mutex<TtlCache<(String, String), V>>;

/// Rendered content for one target, with the template version and locale that rendered it.
struct Rendered {
    content: herald_contracts::RenderedContent,
    template: herald_contracts::TemplateRef,
    /// The template's locale (`fr` for a `fr-CA` recipient without a `fr-CA` template).
    locale: String,
}

pub struct Router {
    codec: Codec,
    topics: TopicNames,
    directory: Directory,
    dedupe: DedupeLedger,
    frequency_cap: FrequencyCap,
    schedule: Schedule,
    suppressions: Suppressions,
    profiles: Cache<Arc<Profile>>,
    /// Whether an email address is suppressed, by (tenant, normalized address).
    suppressed: Cache<bool>,
    categories: Cache<Option<Arc<CategoryDefaults>>>,
    templates: Cache<Arc<Vec<TemplateRow>>>,
    renderer: Mutex<Renderer>,
    default_locale: String,
    max_data_bytes: usize,
    stage_histograms: StageHistograms,
    event_histogram: metrics::Histogram,
    counters: EventCounters,
}

/// The per-event counters, registered once (`counter!` with labels builds and hashes its key
/// on every call); the rarer outcomes are counted through the macros.
struct EventCounters {
    /// Events that ended routed, and that ended with every channel suppressed.
    routed: metrics::Counter,
    suppressed: metrics::Counter,
    /// Dispatches, by channel in the order of `Channel::ALL`.
    dispatches: [metrics::Counter; herald_contracts::Channel::ALL.len()],
    end_to_end: metrics::Histogram,
}

impl EventCounters {
    fn register() -> Self {
        Self {
            routed: metrics::counter!(ROUTER_EVENTS, "outcome" => "routed", "reason" => ""),
            suppressed: metrics::counter!(ROUTER_EVENTS, "outcome" => "suppressed", "reason" => ""),
            dispatches: herald_contracts::Channel::ALL
                .map(|channel| metrics::counter!(ROUTER_DISPATCHES, "channel" => channel.as_str())),
            end_to_end: metrics::histogram!(
                herald_runtime::metric_names::ROUTER_END_TO_END_SECONDS
            ),
        }
    }

    fn dispatched(&self, channel: herald_contracts::Channel) {
        if let Some(i) = herald_contracts::Channel::ALL
            .iter()
            .position(|c| *c == channel)
        {
            self.dispatches[i].increment(1);
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Locks a cache; a poisoned lock only means another task panicked mid-insert, and a cache
/// entry is safe to read or overwrite regardless.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Router {
    pub fn new(
        codec: Codec,
        directory: Directory,
        dedupe: DedupeLedger,
        frequency_cap: FrequencyCap,
        schedule: Schedule,
        suppressions: Suppressions,
        config: &RouterConfig,
    ) -> Self {
        Self {
            topics: codec.topics().clone(),
            codec,
            directory,
            dedupe,
            frequency_cap,
            schedule,
            suppressions,
            profiles: Mutex::new(TtlCache::new(
                ROUTER_CACHE_LOOKUPS,
                "profile",
                config.cache_capacity,
                config.cache_ttl,
            )),
            suppressed: Mutex::new(TtlCache::new(
                ROUTER_CACHE_LOOKUPS,
                "suppression",
                config.cache_capacity,
                config.cache_ttl,
            )),
            categories: Mutex::new(TtlCache::new(
                ROUTER_CACHE_LOOKUPS,
                "category",
                config.cache_capacity,
                config.cache_ttl,
            )),
            templates: Mutex::new(TtlCache::new(
                ROUTER_CACHE_LOOKUPS,
                "template",
                config.template_cache_capacity,
                config.cache_ttl,
            )),
            renderer: Mutex::new(Renderer::new(config.template_cache_capacity)),
            default_locale: config.default_locale.clone(),
            max_data_bytes: config.max_data_bytes,
            stage_histograms: StageHistograms::register(),
            event_histogram: metrics::histogram!(
                herald_runtime::metric_names::ROUTER_EVENT_SECONDS
            ),
            counters: EventCounters::register(),
        }
    }

    /// The records that routing `input` produces.
    pub async fn route(&self, input: &Input) -> Result<Vec<OutRecord>, Transient> {
        let started = std::time::Instant::now();
        let result = self.route_inner(input).instrument(event_span(input)).await;
        self.event_histogram.record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(records)) => Ok(records),
            Ok(Err(poison)) => {
                metrics::counter!(ROUTER_EVENTS, "outcome" => "dead_lettered", "reason" => poison.class)
                    .increment(1);
                tracing::warn!(
                    stage = poison.stage,
                    class = poison.class,
                    error = %poison.message,
                    partition = input.partition,
                    offset = input.offset,
                    event_id = poison.identity.as_ref().map(|i| i.event_id.as_str()),
                    "event dead-lettered"
                );
                // An event dead-lettered after it was recorded did not finish: forgotten, a
                // redrive of it from the DLQ is routed. (Should this batch abort, its retry
                // records the event again from the same record.)
                if poison.after_dedupe()
                    && let Some(identity) = &poison.identity
                {
                    let key = dedupe_key(&identity.event_id, input.scheduled_for());
                    self.dedupe
                        .forget(&identity.tenant, &key)
                        .await
                        .map_err(Transient::Store)?;
                }
                self.dead_letter_with_status(input, poison).await
            }
            Err(transient) => Err(transient),
        }
    }

    async fn route_inner(
        &self,
        input: &Input,
    ) -> Result<Result<Vec<OutRecord>, Poison>, Transient> {
        let Some(payload) = input.payload.as_deref() else {
            return Ok(Err(Poison::new(
                "decode",
                "empty",
                "the record has no value",
            )));
        };
        let mut stages = Stages::start(&self.stage_histograms);
        let mut request = match self.codec.decode_request(payload).await {
            Ok(request) => request,
            Err(e) if e.is_transient() => return Err(Transient::Registry(e)),
            Err(e) => return Ok(Err(Poison::new("decode", e.class(), e.to_string()))),
        };

        stages.lap(Stage::Decode);
        tracing::Span::current().record("event_id", request.event_id.as_str());
        if let Some(poison) = self.check(input, &request) {
            return Ok(Err(poison.about(&request)));
        }
        // A release from the schedule is the same event a second time, on purpose: it is
        // deduplicated under its own key, so a release published twice routes once.
        let released = input.scheduled_for();
        // A replayed event is deduplicated like any other: a `recover` replay keeps the id
        // (only what never got through goes through), a `resend` replay derives a new one
        // (guarantee 7).
        let dedupe_id = dedupe_key(&request.event_id, released);
        let seen = self
            .dedupe
            .check_and_record(&request.tenant, &dedupe_id, &input.source())
            .await;
        match seen {
            Ok(Seen::Duplicate) if released.is_some() => {
                metrics::counter!(ROUTER_EVENTS, "outcome" => "dropped", "reason" => "duplicate_release")
                    .increment(1);
                return Ok(Ok(Vec::new()));
            }
            Ok(Seen::Duplicate) => {
                return self
                    .suppressed(input, &request, reason::DUPLICATE)
                    .await
                    .map(Ok);
            }
            Ok(Seen::First | Seen::SameRecord) => {}
            // Every storage fault is retried: dead-lettering events because the database
            // misbehaves would turn an outage into lost notifications.
            Err(e) => return Err(Transient::Store(e)),
        }

        stages.lap(Stage::Dedupe);
        let now = Utc::now();
        if request.expires_at.is_some_and(|at| at <= now) {
            return self
                .suppressed(input, &request, reason::EXPIRED)
                .await
                .map(Ok);
        }

        // Deferral decisions are taken at the event's own time (its creation, or the time a
        // release was due), not the clock: a batch retried after an abort must decide the same
        // way, because the schedule row it wrote survives the abort.
        let policy_time = released.unwrap_or_else(|| request.created_at());
        if let Some(send_at) = request.send_at.filter(|at| *at > policy_time) {
            return self
                .defer(input, &request, send_at, reason::SEND_AT)
                .await
                .map(Ok);
        }

        let profile = self.profile(&request).await?;
        let defaults = self.category(&request).await?;
        stages.lap(Stage::Enrich);
        let (targets, mut skipped, fallback) = match decide(&request, &profile, defaults.as_deref())
        {
            Decision::Suppressed { reason } => {
                return self.suppressed(input, &request, reason).await.map(Ok);
            }
            Decision::Route {
                targets,
                skipped,
                fallback,
            } => (targets, skipped, fallback),
        };
        // A fallback request walks the rest of its chain, not the category's from the start;
        // one whose chain was lost ends with this channel rather than rebuild a chain that
        // could try again a channel that already failed.
        let tried = fallback_channels_tried(&request.event_id);
        let fallback: Vec<herald_contracts::Channel> = match input.header(headers::FALLBACK_CHAIN) {
            Some(chain) => String::from_utf8_lossy(chain)
                .split(',')
                .filter_map(|c| c.trim().parse().ok())
                .collect(),
            None if !tried.is_empty() => Vec::new(),
            None => fallback,
        };
        let fallback: Vec<herald_contracts::Channel> = fallback
            .into_iter()
            .filter(|c| !tried.contains(c))
            .collect();
        if request.priority != herald_contracts::Priority::Critical
            && let Some(until) = quiet_hours_end(&profile, policy_time)
        {
            return self
                .defer(input, &request, until, reason::QUIET_HOURS)
                .await
                .map(Ok);
        }

        let targets = self
            .drop_suppressed(&request, targets, &mut skipped)
            .await?;
        let targets = self
            .rate_limit(
                input,
                &request,
                policy_time,
                defaults.as_deref(),
                targets,
                &mut skipped,
            )
            .await?;

        stages.lap(Stage::Policy);
        let locale = request
            .locale
            .clone()
            .or_else(|| profile.locale.clone())
            .unwrap_or_else(|| self.default_locale.clone());
        // The data moves into the template context for the render and back after it (a
        // fallback request carries it): copying it was the largest cost of a render.
        let mut context = handlebars::Context::from(std::mem::take(&mut request.data));
        let rendered = self.render(&request, &context, &locale, &targets).await;
        request.data = std::mem::take(context.data_mut());
        let rendered = match rendered? {
            Ok(rendered) => rendered,
            Err(poison) => return Ok(Err(poison.about(&request))),
        };

        stages.lap(Stage::Render);
        let fallback_request = match fallback.first() {
            Some(next) => Some(
                self.codec
                    .encode_request(&fallback_request(&request, *next))
                    .await
                    .map_err(Transient::Registry)?,
            ),
            None => None,
        };
        let mut out = Vec::with_capacity(targets.len() * 2 + skipped.len());
        let routed_at = herald_contracts::time::now_millis();
        for (target, rendered) in targets.iter().zip(rendered) {
            let dispatch = Dispatch {
                dispatch_id: target.dispatch_id(&request.event_id),
                event_id: request.event_id.clone(),
                tenant: request.tenant.clone(),
                user_id: request.recipient.user_id.clone(),
                category: request.category.clone(),
                channel: target.channel,
                priority: request.priority,
                address: target.address.clone(),
                content: rendered.content,
                template: rendered.template,
                locale: rendered.locale,
                attempt: 0,
                deadline: request.expires_at,
                fallback: fallback.clone(),
                fallback_request: fallback_request.clone(),
                created_at: request.created_at(),
                routed_at,
                // Only email has a pixel and links to rewrite.
                track_engagement: target.channel == herald_contracts::Channel::Email
                    && defaults.as_ref().is_some_and(|d| d.track_engagement),
            };
            let lane = if request.priority.uses_priority_lane() {
                Lane::Priority
            } else {
                Lane::Bulk
            };
            let payload = self
                .codec
                .encode_dispatch(&dispatch)
                .await
                .map_err(Transient::Registry)?;
            out.push(OutRecord {
                topic: self.topics.dispatch(target.channel, lane),
                key: Some(dispatch.key().into_bytes()),
                payload,
                headers: carried_headers(input),
            });
            self.counters.dispatched(target.channel);
            out.push(
                self.status(
                    input,
                    &request,
                    Status::Routed,
                    None,
                    Some(target.channel),
                    Some(&dispatch.dispatch_id),
                )
                .await?,
            );
        }
        for (channel, why) in skipped {
            let dispatch_id = format!("{}:{channel}", request.event_id);
            out.push(
                self.status(
                    input,
                    &request,
                    Status::Suppressed,
                    Some(why),
                    Some(channel),
                    Some(&dispatch_id),
                )
                .await?,
            );
        }
        stages.lap(Stage::Emit);
        if targets.is_empty() {
            self.counters.suppressed.increment(1);
        } else {
            self.counters.routed.increment(1);
        }
        self.counters.end_to_end.record(
            (Utc::now() - request.created_at())
                .as_seconds_f64()
                .max(0.0),
        );
        Ok(Ok(out))
    }

    /// Drops the targets over the category's frequency cap (critical priority is exempt),
    /// adding them to `skipped`. `at` is when the event is routed: its creation, or for a
    /// release from the schedule the time it was due, so that events deferred through quiet
    /// hours count in the window they are delivered in, not the one they were created in.
    async fn rate_limit(
        &self,
        input: &Input,
        request: &NotificationRequest,
        at: DateTime<Utc>,
        defaults: Option<&CategoryDefaults>,
        targets: Vec<Target>,
        skipped: &mut Vec<(herald_contracts::Channel, &'static str)>,
    ) -> Result<Vec<Target>, Transient> {
        let Some((count, window_seconds)) = defaults.and_then(|d| d.rate_limit) else {
            return Ok(targets);
        };
        if request.priority == herald_contracts::Priority::Critical {
            return Ok(targets);
        }
        let cap = Cap {
            count,
            window_seconds,
        };
        // The event's own time, not the clock: a retried batch must land in the same window.
        let at = at.timestamp();
        let mut allowed = Vec::with_capacity(targets.len());
        // One count per channel and event, however many endpoints the channel has.
        let mut decided: Vec<(herald_contracts::Channel, bool)> = Vec::new();
        for target in targets {
            let ok = match decided.iter().find(|(c, _)| *c == target.channel) {
                Some((_, ok)) => *ok,
                None => {
                    let subject = Subject {
                        tenant: &request.tenant,
                        user_id: &request.recipient.user_id,
                        category: &request.category,
                        channel: target.channel.as_str(),
                    };
                    let ok = self
                        .frequency_cap
                        .allow(subject, cap, at, input.offset, &request.event_id)
                        .await
                        .map_err(Transient::Store)?;
                    decided.push((target.channel, ok));
                    if !ok {
                        skipped.push((target.channel, reason::RATE_LIMITED));
                    }
                    ok
                }
            };
            if ok {
                allowed.push(target);
            }
        }
        Ok(allowed)
    }

    /// Drops email targets whose address is on the tenant's suppression list (it hard-bounced
    /// or its owner complained), adding them to `skipped` as `bounced_address`. Whatever the
    /// category or priority: mail to such an address only hurts the sender's reputation. One
    /// cached read per address: a deletion through the API takes effect within the cache TTL.
    async fn drop_suppressed(
        &self,
        request: &NotificationRequest,
        targets: Vec<Target>,
        skipped: &mut Vec<(herald_contracts::Channel, &'static str)>,
    ) -> Result<Vec<Target>, Transient> {
        let mut kept = Vec::with_capacity(targets.len());
        for target in targets {
            if target.channel == herald_contracts::Channel::Email {
                let address = normalize(&target.address);
                let suppressed = cached(&self.suppressed, (&request.tenant, &address), || {
                    self.suppressions.is_suppressed(&request.tenant, &address)
                })
                .await?;
                if suppressed {
                    skipped.push((target.channel, reason::BOUNCED_ADDRESS));
                    continue;
                }
            }
            kept.push(target);
        }
        Ok(kept)
    }

    async fn profile(&self, request: &NotificationRequest) -> Result<Arc<Profile>, Transient> {
        let (tenant, user) = (&request.tenant, &request.recipient.user_id);
        cached(&self.profiles, (tenant, user), || async {
            self.directory.profile(tenant, user).await.map(Arc::new)
        })
        .await
    }

    async fn category(
        &self,
        request: &NotificationRequest,
    ) -> Result<Option<Arc<CategoryDefaults>>, Transient> {
        let (tenant, category) = (&request.tenant, &request.category);
        cached(&self.categories, (tenant, category), || async {
            Ok(self
                .directory
                .category(tenant, category)
                .await?
                .map(Arc::new))
        })
        .await
    }

    async fn template_rows(
        &self,
        request: &NotificationRequest,
    ) -> Result<Arc<Vec<TemplateRow>>, Transient> {
        let (tenant, id) = (&request.tenant, &request.template.id);
        // Only published versions are ever routed, also when pinned: a pinned draft is an
        // unknown version (dead-lettered `unknown_template`) until it is published.
        cached(&self.templates, (tenant, id), || async {
            let mut rows = self.directory.templates(tenant, id).await?;
            rows.retain(|row| row.published);
            Ok::<_, herald_store::StoreError>(Arc::new(rows))
        })
        .await
    }

    /// Renders every target or none: a partly rendered event would dispatch some channels and
    /// dead-letter the rest, and a replay after the fix would then repeat the first ones.
    async fn render(
        &self,
        request: &NotificationRequest,
        context: &handlebars::Context,
        locale: &str,
        targets: &[Target],
    ) -> Result<Result<Vec<Rendered>, Poison>, Transient> {
        let rows = self.template_rows(request).await?;
        let unknown = |what: String| Poison::new(RENDER_STAGE, "unknown_template", what);
        if rows.is_empty() {
            return Ok(Err(unknown(format!(
                "template {}/{} does not exist or has no published version",
                request.tenant, request.template.id
            ))));
        }
        let chain = locale_chain(locale);
        let mut rendered = Vec::with_capacity(targets.len());
        let mut renderer = lock(&self.renderer);
        for target in targets {
            let Some(row) = template_for(&rows, request.template.version, target.channel, &chain)
            else {
                let version = match request.template.version {
                    Some(v) => format!("version {v}"),
                    None => "any version".to_owned(),
                };
                return Ok(Err(unknown(format!(
                    "template {}/{} has no {} part in {version} for locale {locale} or its fallbacks",
                    request.tenant, request.template.id, target.channel
                ))));
            };
            let key = TemplateKey {
                tenant: request.tenant.clone(),
                template_id: request.template.id.clone(),
                version: row.version,
                channel: target.channel,
                locale: row.locale.clone(),
            };
            let source = TemplateSource::from(row);
            match renderer.render_context(&key, &source, context) {
                Ok(content) => rendered.push(Rendered {
                    content,
                    template: herald_contracts::TemplateRef {
                        id: request.template.id.clone(),
                        version: Some(row.version),
                    },
                    locale: key.locale,
                }),
                Err(e) => {
                    return Ok(Err(Poison::new(
                        RENDER_STAGE,
                        "render_error",
                        e.to_string(),
                    )));
                }
            }
        }
        Ok(Ok(rendered))
    }

    /// Writes the event to the schedule, due at `until`, and says so with a `scheduled`
    /// status. The scheduler publishes it again when it is due.
    async fn defer(
        &self,
        input: &Input,
        request: &NotificationRequest,
        until: DateTime<Utc>,
        why: &'static str,
    ) -> Result<Vec<OutRecord>, Transient> {
        let deferred = Deferred {
            due_at: until,
            event_id: request.event_id.clone(),
            tenant: request.tenant.clone(),
            user_id: request.recipient.user_id.clone(),
            payload: input.payload.clone().unwrap_or_default(),
            // Herald's own headers travel with the event (a fallback request's chain, a
            // replay's marker); the release sets a new due time of its own.
            headers: trace_headers(input)
                .into_iter()
                .chain(
                    input
                        .headers
                        .iter()
                        .filter(|(k, _)| {
                            k.starts_with(headers::HERALD_PREFIX) && k != headers::SCHEDULED_FOR
                        })
                        .cloned(),
                )
                .filter_map(|(k, v)| String::from_utf8(v).ok().map(|v| (k, v)))
                .collect(),
        };
        self.schedule
            .defer(&deferred, Utc::now())
            .await
            .map_err(Transient::Store)?;
        metrics::counter!(ROUTER_EVENTS, "outcome" => "scheduled", "reason" => why).increment(1);
        let mut status = self.status_event(request, Status::Scheduled, Some(why), None, None);
        status.scheduled_for = Some(until);
        Ok(vec![self.status_record(input, &status).await?])
    }

    async fn suppressed(
        &self,
        input: &Input,
        request: &NotificationRequest,
        why: &'static str,
    ) -> Result<Vec<OutRecord>, Transient> {
        metrics::counter!(ROUTER_EVENTS, "outcome" => "suppressed", "reason" => why).increment(1);
        Ok(vec![
            self.status(input, request, Status::Suppressed, Some(why), None, None)
                .await?,
        ])
    }

    async fn status(
        &self,
        input: &Input,
        request: &NotificationRequest,
        status: Status,
        why: Option<&str>,
        channel: Option<herald_contracts::Channel>,
        dispatch_id: Option<&str>,
    ) -> Result<OutRecord, Transient> {
        let event = self.status_event(request, status, why, channel, dispatch_id);
        self.status_record(input, &event).await
    }

    fn status_event(
        &self,
        request: &NotificationRequest,
        status: Status,
        why: Option<&str>,
        channel: Option<herald_contracts::Channel>,
        dispatch_id: Option<&str>,
    ) -> StatusEvent {
        StatusEvent {
            event_id: request.event_id.clone(),
            dispatch_id: dispatch_id.map(str::to_owned),
            tenant: request.tenant.clone(),
            user_id: request.recipient.user_id.clone(),
            channel,
            status,
            reason: why.map(str::to_owned),
            provider: None,
            provider_message_id: None,
            attempt: 0,
            at: herald_contracts::time::now_millis(),
            scheduled_for: None,
            category: Some(request.category.clone()),
            created_at: request.created_at,
        }
    }

    async fn status_record(
        &self,
        input: &Input,
        event: &StatusEvent,
    ) -> Result<OutRecord, Transient> {
        let payload = self
            .codec
            .encode_status(event)
            .await
            .map_err(Transient::Registry)?;
        Ok(OutRecord {
            topic: self.topics.status(),
            key: Some(event.key().into_bytes()),
            payload,
            headers: carried_headers(input),
        })
    }

    /// What a request must be beyond its shape, checked before anything is done with it: the
    /// problem, if there is one.
    fn check(&self, input: &Input, request: &NotificationRequest) -> Option<Poison> {
        // Dedupe, per-recipient order and frequency caps rely on one recipient's events all
        // being in one partition, which only the key `tenant:user_id` ensures.
        let expected = request.key();
        if input.key.as_deref() != Some(expected.as_bytes()) {
            let found = match input.key.as_deref() {
                Some(key) => format!("`{}`", String::from_utf8_lossy(key)),
                None => "no key".to_owned(),
            };
            return Some(Poison::new(
                "validate",
                "key_mismatch",
                format!(
                    "the record has {found}; a request must be keyed `{expected}` (tenant:user_id)"
                ),
            ));
        }
        request
            .check_data_size(self.max_data_bytes)
            .err()
            .map(|e| Poison::new("validate", "data_too_large", e.to_string()))
    }

    /// The DLQ record for `poison` and, when the event can be named, its `dead_lettered`
    /// status in the same transaction (guarantee 1: every event ends in a recorded state).
    async fn dead_letter_with_status(
        &self,
        input: &Input,
        mut poison: Poison,
    ) -> Result<Vec<OutRecord>, Transient> {
        let identity = match poison.identity.take() {
            Some(identity) => Some(identity),
            None => match input.payload.as_deref() {
                Some(payload) => self
                    .codec
                    .request_identity(payload)
                    .await
                    .map_err(Transient::Registry)?,
                None => None,
            },
        };
        let status = identity.map(|identity| StatusEvent {
            event_id: identity.event_id,
            dispatch_id: None,
            tenant: identity.tenant,
            user_id: identity.user_id,
            channel: None,
            status: Status::DeadLettered,
            reason: Some(poison.class.to_owned()),
            provider: None,
            provider_message_id: None,
            attempt: 0,
            at: herald_contracts::time::now_millis(),
            scheduled_for: None,
            // The record could not be read as a request: its category is unknown, and a
            // category taken from bytes that failed validation would be an unbounded label.
            category: None,
            created_at: None,
        });
        let mut out = Vec::with_capacity(2);
        match status {
            Some(status) => out.push(self.status_record(input, &status).await?),
            None => {
                metrics::counter!(ROUTER_UNIDENTIFIED_DEAD_LETTERS, "class" => poison.class)
                    .increment(1);
            }
        }
        out.insert(0, self.dead_letter(input, poison));
        Ok(out)
    }

    /// The original record, unchanged, with error headers added (guarantee 5).
    fn dead_letter(&self, input: &Input, poison: Poison) -> OutRecord {
        let mut record_headers = input.headers.clone();
        for (name, value) in [
            (headers::ERROR_STAGE, poison.stage.to_owned()),
            (headers::ERROR_CLASS, poison.class.to_owned()),
            (headers::ERROR_MESSAGE, poison.message),
            (headers::ORIGINAL_TOPIC, input.topic.clone()),
            (headers::ORIGINAL_PARTITION, input.partition.to_string()),
            (headers::ORIGINAL_OFFSET, input.offset.to_string()),
            (headers::ATTEMPT, "1".to_owned()),
        ] {
            record_headers.push((name.to_owned(), value.into_bytes()));
        }
        OutRecord {
            topic: self.topics.dlq(),
            key: input.key.clone(),
            payload: input.payload.clone().unwrap_or_default(),
            headers: record_headers,
        }
    }
}

/// The cached value for `key`, loading and caching it on a miss. The lock is not held while
/// loading; two concurrent misses both load, and the later insert wins, which is harmless.
async fn cached<V, F>(
    cache: &Cache<V>,
    (tenant, key): (&String, &String),
    load: impl FnOnce() -> F,
) -> Result<V, Transient>
where
    V: Clone,
    F: std::future::Future<Output = Result<V, StoreError>>,
{
    let key = (tenant.clone(), key.clone());
    if let Some(value) = lock(cache).get(&key) {
        return Ok(value);
    }
    let value = load().await.map_err(Transient::Store)?;
    lock(cache).insert(key, value.clone());
    Ok(value)
}

/// Marks a fallback request's event id: `<event>:fallback:<channel>`, nested once per step.
const FALLBACK_ID_MARK: &str = ":fallback:";

/// The request that routes `request` to its fallback channel `next`: the same notification
/// under a derived event id (deduplicated like any other), for that channel only.
fn fallback_request(
    request: &NotificationRequest,
    next: herald_contracts::Channel,
) -> NotificationRequest {
    NotificationRequest {
        event_id: format!("{}{FALLBACK_ID_MARK}{next}", request.event_id),
        channels: Some(vec![next]),
        send_at: None,
        ..request.clone()
    }
}

/// The fallback channels an event id says were already taken (`e:fallback:sms:fallback:push`
/// → sms, push); empty for an event that is not a fallback request.
fn fallback_channels_tried(event_id: &str) -> Vec<herald_contracts::Channel> {
    event_id
        .split(FALLBACK_ID_MARK)
        .skip(1)
        .filter_map(|step| step.split(':').next()?.parse().ok())
        .collect()
}

/// If the recipient's quiet hours hold at `at`, when they end. Quiet hours are kept in the
/// user's time zone; a user without a (valid) zone keeps them in UTC.
fn quiet_hours_end(profile: &Profile, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (start, end) = profile.quiet_hours?;
    let window = QuietHours::new(u16::try_from(start).ok()?, u16::try_from(end).ok()?).ok()?;
    let zone = match profile
        .time_zone
        .as_deref()
        .map(str::parse::<chrono_tz::Tz>)
    {
        Some(Ok(zone)) => zone,
        Some(Err(_)) | None => chrono_tz::UTC,
    };
    quiet_until(window, zone, at)
}

/// One span per event, a child of the trace the upstream producer started (messaging
/// semantic conventions).
fn event_span(input: &Input) -> tracing::Span {
    let span = tracing::info_span!(
        "route",
        otel.name = %format_args!("process {}", input.topic),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = %input.topic,
        messaging.destination.partition.id = %input.partition,
        messaging.kafka.offset = input.offset,
        event_id = tracing::field::Empty,
    );
    let upstream = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&PairsReader(&input.headers))
    });
    // Fails only when no OpenTelemetry layer is installed, and then there is nothing to link.
    let _ = span.set_parent(upstream);
    span
}

/// The headers of every record the event produces: its replay headers, if it was replayed
/// (so its status trail says so), and trace context.
fn carried_headers(input: &Input) -> Vec<(String, Vec<u8>)> {
    let mut carried = trace_headers(input);
    carried.extend(
        input
            .headers
            .iter()
            .filter(|(k, _)| headers::REPLAY_HEADERS.contains(&k.as_str()))
            .cloned(),
    );
    carried
}

/// Trace context for every record the event produces: this event's span when traces are
/// exported, so the next hop is its child; otherwise the upstream context, passed on as is.
fn trace_headers(input: &Input) -> Vec<(String, Vec<u8>)> {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        let mut writer = PairsWriter::default();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut writer);
        });
        return writer.0;
    }
    [headers::TRACEPARENT, headers::TRACESTATE]
        .into_iter()
        .filter_map(|name| input.header(name).map(|v| (name.to_owned(), v.to_vec())))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use herald_contracts::Channel;

    fn row(version: i32, channel: Channel, locale: &str) -> TemplateRow {
        TemplateRow {
            version,
            channel: Some(channel),
            locale: locale.into(),
            subject: None,
            text: Some(format!("v{version} {locale}")),
            html: None,
            json: None,
            published: true,
        }
    }

    fn pick(
        rows: &[TemplateRow],
        pinned: Option<i32>,
        channel: Channel,
        locale: &str,
    ) -> Option<(i32, String)> {
        let chain = locale_chain(locale);
        template_for(rows, pinned, channel, &chain).map(|r| (r.version, r.locale.clone()))
    }

    #[test]
    fn the_fallback_steps_an_event_id_names() {
        assert_eq!(fallback_channels_tried("e-1"), vec![]);
        assert_eq!(
            fallback_channels_tried("e-1:fallback:sms"),
            vec![Channel::Sms]
        );
        assert_eq!(
            fallback_channels_tried("e-1:fallback:email:fallback:push"),
            vec![Channel::Email, Channel::Push]
        );
    }

    #[test]
    fn a_new_version_for_one_channel_leaves_the_others_on_theirs() {
        let rows = [
            row(1, Channel::Email, "default"),
            row(1, Channel::Sms, "default"),
            row(2, Channel::Email, "default"),
        ];
        assert_eq!(
            pick(&rows, None, Channel::Email, "en"),
            Some((2, "default".into()))
        );
        assert_eq!(
            pick(&rows, None, Channel::Sms, "en"),
            Some((1, "default".into()))
        );
        assert_eq!(pick(&rows, None, Channel::Push, "en"), None);
    }

    #[test]
    fn a_pinned_version_is_used_for_every_channel() {
        let rows = [
            row(1, Channel::Email, "default"),
            row(1, Channel::Sms, "default"),
            row(2, Channel::Email, "default"),
        ];
        assert_eq!(
            pick(&rows, Some(1), Channel::Email, "en"),
            Some((1, "default".into()))
        );
        assert_eq!(pick(&rows, Some(2), Channel::Sms, "en"), None);
    }

    #[test]
    fn the_newest_version_with_a_locale_in_the_chain_wins_then_the_most_specific_locale() {
        let rows = [
            row(1, Channel::Email, "default"),
            row(1, Channel::Email, "fr"),
            row(2, Channel::Email, "de"),
            row(3, Channel::Email, "fr-CA"),
            row(3, Channel::Email, "default"),
        ];
        // v2 has only German: a French reader stays on v3, in fr-CA, and an English one too,
        // on v3's default.
        assert_eq!(
            pick(&rows, None, Channel::Email, "fr-CA"),
            Some((3, "fr-CA".into()))
        );
        assert_eq!(
            pick(&rows, None, Channel::Email, "fr-FR"),
            Some((3, "default".into()))
        );
        assert_eq!(
            pick(&rows, Some(1), Channel::Email, "fr-FR"),
            Some((1, "fr".into()))
        );
        // Locales match case-insensitively; the template's own spelling is reported.
        assert_eq!(
            pick(&rows, None, Channel::Email, "FR-ca"),
            Some((3, "fr-CA".into()))
        );
    }
}
