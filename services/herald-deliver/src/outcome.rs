//! What a provider call ended as, and the trait every adapter implements.

use futures::future::BoxFuture;
use std::time::Duration;

use herald_contracts::Dispatch;

/// The class of a provider's answer. Retries, breakers and the ledger act on this; nothing
/// about them lives in an adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the message. `delivered` is true when its answer already says the
    /// recipient has it (the inbox write), not merely that it was queued.
    Sent {
        provider_message_id: String,
        delivered: bool,
    },
    /// Trying again later can succeed (rate limit, provider fault, timeout, network error).
    /// `retry_after` is the provider's own hint, when it gave one.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Trying again cannot succeed (rejected address, invalid request, refused target).
    Permanent { reason: String },
}

impl Outcome {
    pub fn sent(provider_message_id: impl Into<String>) -> Self {
        Outcome::Sent {
            provider_message_id: provider_message_id.into(),
            delivered: false,
        }
    }

    pub fn transient(reason: impl Into<String>) -> Self {
        Outcome::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Outcome::Permanent {
            reason: reason.into(),
        }
    }

    /// `sent`, `transient` or `permanent`: the label for metrics and logs.
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Transient { .. } => "transient",
            Outcome::Permanent { .. } => "permanent",
        }
    }

    pub fn is_sent(&self) -> bool {
        matches!(self, Outcome::Sent { .. })
    }
}

/// An adapter's full answer for one dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    pub outcome: Outcome,
    /// Addresses the provider said are gone for good (push tokens answered `UNREGISTERED`,
    /// `BadDeviceToken`, ...), exactly as they appeared in `dispatch.address`, for the worker
    /// to remove from the user. May be non-empty whatever the outcome.
    pub stale_addresses: Vec<String>,
}

impl SendReport {
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            stale_addresses: Vec::new(),
        }
    }
}

/// Logs a finished send at debug level: provider, ids and class, never the reason (provider
/// text can quote the address).
pub(crate) fn logged(
    provider: &'static str,
    dispatch: &Dispatch,
    report: SendReport,
) -> SendReport {
    tracing::debug!(
        provider,
        dispatch_id = %dispatch.dispatch_id,
        event_id = %dispatch.event_id,
        outcome = report.outcome.class(),
        stale = report.stale_addresses.len(),
        "provider call finished"
    );
    report
}

impl From<Outcome> for SendReport {
    fn from(outcome: Outcome) -> Self {
        SendReport::new(outcome)
    }
}

/// A provider adapter: turns one dispatch into one provider call and classifies the answer.
///
/// `send` never fails: every error is folded into an [`Outcome`]. An adapter is cheap to share
/// (`Arc<dyn Provider>`) and safe to call concurrently; it keeps its HTTP connection pool,
/// SMTP pool and cached credentials inside.
///
/// The dispatch id is the idempotency key wherever the provider has one (HTTP email API,
/// webhooks) and makes the inbox write land on one row.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// A stable name for metrics and the circuit breaker (`smtp`, `sendgrid`, `twilio`, `push`,
    /// `webhook`, `inbox`).
    fn name(&self) -> &'static str;

    /// Whether the provider's status callbacks name only its own message id (Twilio's
    /// `MessageSid`), so that the worker must record which dispatch each id belongs to.
    fn callbacks_by_message_id(&self) -> bool {
        false
    }

    /// Sends `dispatch` once.
    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport>;
}
