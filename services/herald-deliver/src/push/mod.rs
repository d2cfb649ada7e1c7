//! Mobile push: FCM HTTP v1 and APNs behind one provider.
//!
//! A push dispatch's address is the user's device tokens joined with commas. The prefix of a
//! token says where it goes:
//!
//! - `apns:<hex>` → APNs (the hex device token an iOS app registers);
//! - `fcm:<token>`, or a token without a prefix → FCM (Android, web and iOS through Firebase).
//!
//! Each token is sent on its own, concurrently. The dispatch is sent when any token was
//! accepted; transient when none was and any failure is transient (the longest
//! `Retry-After` hint wins); permanent otherwise. Tokens the service says are invalid are
//! reported in [`SendReport::stale_addresses`] exactly as written in the address, prefix
//! included, whatever the outcome.

pub mod apns;
pub mod fcm;

use futures::future::{BoxFuture, join_all};

use herald_contracts::Dispatch;

use crate::config::providers::{ApnsConfig, FcmConfig};
use crate::outcome::logged;
use crate::{BuildError, Outcome, Provider, SendReport};
use apns::Apns;
use fcm::Fcm;

pub const APNS_PREFIX: &str = "apns:";
pub const FCM_PREFIX: &str = "fcm:";

/// Which push service a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushService {
    Fcm,
    Apns,
}

/// The service of a token and the token without its prefix.
pub fn route(token: &str) -> (PushService, &str) {
    if let Some(rest) = token.strip_prefix(APNS_PREFIX) {
        (PushService::Apns, rest)
    } else if let Some(rest) = token.strip_prefix(FCM_PREFIX) {
        (PushService::Fcm, rest)
    } else {
        (PushService::Fcm, token)
    }
}

/// The tokens in a push address (comma-separated; blanks skipped).
pub fn tokens(address: &str) -> Vec<&str> {
    address
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// What happened to one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOutcome {
    /// The token as written in the address.
    pub token: String,
    pub outcome: Outcome,
    /// The service said the token will never work again.
    pub stale: bool,
}

/// One report from the tokens' outcomes (see the module documentation).
pub fn combine(results: Vec<TokenOutcome>) -> SendReport {
    let stale_addresses = results
        .iter()
        .filter(|r| r.stale)
        .map(|r| r.token.clone())
        .collect();
    let accepted: Vec<&str> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Sent {
                provider_message_id,
                ..
            } => Some(provider_message_id.as_str()),
            _ => None,
        })
        .collect();
    let reasons = |transient_only: bool| {
        results
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Transient { reason, .. } => Some(reason.as_str()),
                Outcome::Permanent { reason } if !transient_only => Some(reason.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let outcome = if !accepted.is_empty() {
        Outcome::sent(accepted.join(","))
    } else if results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Transient { .. }))
    {
        let retry_after = results
            .iter()
            .filter_map(|r| match r.outcome {
                Outcome::Transient { retry_after, .. } => retry_after,
                _ => None,
            })
            .max();
        Outcome::Transient {
            reason: reasons(true),
            retry_after,
        }
    } else if results.is_empty() {
        Outcome::permanent("the dispatch has no device tokens")
    } else {
        Outcome::permanent(reasons(false))
    };
    SendReport {
        outcome,
        stale_addresses,
    }
}

/// `outcome` with its reason prefixed by the service name.
pub(crate) fn prefixed(prefix: &str, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Transient {
            reason,
            retry_after,
        } => Outcome::Transient {
            reason: format!("{prefix}: {reason}"),
            retry_after,
        },
        Outcome::Permanent { reason } => Outcome::Permanent {
            reason: format!("{prefix}: {reason}"),
        },
        sent => sent,
    }
}

#[derive(Debug)]
pub struct PushProvider {
    fcm: Option<Fcm>,
    apns: Option<Apns>,
}

impl PushProvider {
    /// At least one of the two services must be configured.
    pub fn new(fcm: Option<&FcmConfig>, apns: Option<&ApnsConfig>) -> Result<Self, BuildError> {
        if fcm.is_none() && apns.is_none() {
            return Err(BuildError::NotConfigured {
                channel: herald_contracts::Channel::Push,
                keys: "fcm and/or apns",
            });
        }
        Ok(Self {
            fcm: fcm.map(Fcm::new).transpose()?,
            apns: apns.map(Apns::new).transpose()?,
        })
    }

    async fn send_token(&self, token: &str, dispatch: &Dispatch) -> TokenOutcome {
        let (service, bare) = route(token);
        let (outcome, stale) = match service {
            PushService::Fcm => match &self.fcm {
                Some(fcm) => fcm.send(bare, dispatch).await,
                None => (Outcome::permanent("fcm: not configured"), false),
            },
            PushService::Apns => match &self.apns {
                Some(apns) => apns.send(bare, dispatch).await,
                None => (Outcome::permanent("apns: not configured"), false),
            },
        };
        TokenOutcome {
            token: token.to_owned(),
            outcome,
            stale,
        }
    }
}

impl Provider for PushProvider {
    fn name(&self) -> &'static str {
        herald_contracts::provider::PUSH
    }

    fn send<'a>(&'a self, dispatch: &'a Dispatch) -> BoxFuture<'a, SendReport> {
        Box::pin(async move {
            let sends = tokens(&dispatch.address)
                .into_iter()
                .map(|token| self.send_token(token, dispatch));
            logged(self.name(), dispatch, combine(join_all(sends).await))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens_route_by_prefix() {
        assert_eq!(route("apns:ab12"), (PushService::Apns, "ab12"));
        assert_eq!(route("fcm:xyz:1"), (PushService::Fcm, "xyz:1"));
        assert_eq!(
            route("dGhpcyBpcw:APA91b"),
            (PushService::Fcm, "dGhpcyBpcw:APA91b")
        );
        assert_eq!(tokens(" a, ,apns:b ,"), vec!["a", "apns:b"]);
        assert!(tokens("").is_empty());
    }

    fn token(token: &str, outcome: Outcome, stale: bool) -> TokenOutcome {
        TokenOutcome {
            token: token.into(),
            outcome,
            stale,
        }
    }

    #[test]
    fn any_accepted_token_makes_the_dispatch_sent() {
        let report = combine(vec![
            token("a", Outcome::sent("m1"), false),
            token("apns:b", Outcome::permanent("gone"), true),
            token("c", Outcome::transient("busy"), false),
            token("d", Outcome::sent("m2"), false),
        ]);
        assert_eq!(report.outcome, Outcome::sent("m1,m2"));
        assert_eq!(report.stale_addresses, vec!["apns:b"]);
    }

    #[test]
    fn none_accepted_is_transient_if_any_failure_is() {
        let report = combine(vec![
            token("a", Outcome::permanent("bad"), true),
            token(
                "b",
                Outcome::Transient {
                    reason: "slow".into(),
                    retry_after: Some(Duration::from_secs(5)),
                },
                false,
            ),
            token(
                "c",
                Outcome::Transient {
                    reason: "down".into(),
                    retry_after: Some(Duration::from_secs(30)),
                },
                false,
            ),
        ]);
        assert_eq!(
            report.outcome,
            Outcome::Transient {
                reason: "slow; down".into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        );
        assert_eq!(report.stale_addresses, vec!["a"]);
    }

    #[test]
    fn all_permanent_or_no_tokens_is_permanent() {
        let report = combine(vec![
            token("a", Outcome::permanent("x"), true),
            token("b", Outcome::permanent("y"), false),
        ]);
        assert_eq!(report.outcome, Outcome::permanent("x; y"));
        assert_eq!(
            combine(Vec::new()).outcome,
            Outcome::permanent("the dispatch has no device tokens")
        );
    }
}
