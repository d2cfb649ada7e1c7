//! Which channels a notification goes out on, and to which address (DESIGN.md §4): an explicit
//! override intersected with what the user allows, else the user's channels for the category,
//! else the category defaults; opt-outs respected unless the category is mandatory; a fallback
//! chain attached. Pure: everything it needs is passed in.

use herald_contracts::status::reason;
use herald_contracts::{Channel, NotificationRequest};
use herald_store::directory::{CategoryDefaults, CategoryPreference, Profile};

/// One dispatch to make: a channel and an address (and for a webhook, which of the user's
/// endpoints; each endpoint gets a dispatch of its own, retried and dead-lettered on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub channel: Channel,
    pub address: String,
    pub endpoint: Option<String>,
}

impl Target {
    fn to(channel: Channel, address: String) -> Self {
        Self {
            channel,
            address,
            endpoint: None,
        }
    }

    /// The dispatch's id: `<event>:<channel>`, or `<event>:webhook:<endpoint id>`.
    pub fn dispatch_id(&self, event_id: &str) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{event_id}:{}:{endpoint}", self.channel),
            None => format!("{event_id}:{}", self.channel),
        }
    }
}

/// What happens to a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is sent; one status for the event.
    Suppressed { reason: &'static str },
    /// Dispatch on `targets`; `skipped` channels get a suppressed status each.
    Route {
        targets: Vec<Target>,
        skipped: Vec<(Channel, &'static str)>,
        fallback: Vec<Channel>,
    },
}

/// The address for `channel`: the user's own first, then the request's direct one.
pub fn address(
    channel: Channel,
    request: &NotificationRequest,
    profile: &Profile,
) -> Option<String> {
    let direct = &request.recipient;
    match channel {
        Channel::Email => profile.email.clone().or_else(|| direct.email.clone()),
        Channel::Sms => profile.phone.clone().or_else(|| direct.phone.clone()),
        Channel::Push => {
            let tokens = if profile.push_tokens.is_empty() {
                &direct.push_tokens
            } else {
                &profile.push_tokens
            };
            (!tokens.is_empty()).then(|| tokens.join(","))
        }
        Channel::Webhook => profile
            .webhooks
            .first()
            .map(|endpoint| endpoint.url.clone())
            .or_else(|| direct.webhook_url.clone()),
        // The inbox belongs to a user Herald knows.
        Channel::Inapp => profile.known.then(|| direct.user_id.clone()),
    }
}

pub fn decide(
    request: &NotificationRequest,
    profile: &Profile,
    defaults: Option<&CategoryDefaults>,
) -> Decision {
    let has_direct = {
        let r = &request.recipient;
        r.email.is_some()
            || r.phone.is_some()
            || !r.push_tokens.is_empty()
            || r.webhook_url.is_some()
    };
    if !profile.known && !has_direct {
        return Decision::Suppressed {
            reason: reason::UNKNOWN_RECIPIENT,
        };
    }
    let mandatory = defaults.is_some_and(|d| d.mandatory);
    let no_preference = CategoryPreference::default();
    let preference = profile
        .preferences
        .get(&request.category)
        .unwrap_or(&no_preference);
    if !mandatory && (profile.global_opt_out || preference.opted_out) {
        return Decision::Suppressed {
            reason: reason::OPTED_OUT,
        };
    }
    // The user's channels for the category, else the category's defaults: what is sent when
    // the request does not say.
    let chosen: Option<&[Channel]> = preference
        .channels
        .as_deref()
        .or(defaults.map(|d| d.channels.as_slice()));
    let mut skipped = Vec::new();
    let candidates: Vec<Channel> = match (&request.channels, chosen) {
        // An override narrows what the user allows and never widens it (the schema's
        // contract), except for a mandatory category. The category's fallback channels count
        // as allowed: Herald itself sends a fallback request for one of them.
        (Some(requested), Some(chosen)) if !mandatory => {
            let fallback = defaults.map(|d| d.fallback.as_slice()).unwrap_or_default();
            let (allowed, refused): (Vec<Channel>, Vec<Channel>) = requested
                .iter()
                .partition(|c| chosen.contains(c) || fallback.contains(c));
            skipped.extend(refused.into_iter().map(|c| (c, reason::NOT_ALLOWED)));
            allowed
        }
        // Nothing configured for the category: nothing to narrow to.
        (Some(requested), _) => requested.clone(),
        (None, Some(chosen)) => chosen.to_vec(),
        (None, None) => Vec::new(),
    };
    if candidates.is_empty() && skipped.is_empty() {
        return Decision::Suppressed {
            reason: reason::NO_CHANNEL,
        };
    }
    let allowed = |c: &Channel| mandatory || !preference.opted_out_channels.contains(c);

    let mut targets = Vec::new();
    for channel in candidates {
        if !allowed(&channel) {
            skipped.push((channel, reason::OPTED_OUT));
        } else if channel == Channel::Webhook && !profile.webhooks.is_empty() {
            targets.extend(profile.webhooks.iter().map(|endpoint| Target {
                channel,
                address: endpoint.url.clone(),
                endpoint: Some(endpoint.id.clone()),
            }));
        } else if let Some(address) = address(channel, request, profile) {
            targets.push(Target::to(channel, address));
        } else {
            skipped.push((channel, reason::NO_ADDRESS));
        }
    }
    let fallback = defaults
        .map(|d| d.fallback.as_slice())
        .unwrap_or_default()
        .iter()
        .copied()
        .filter(|c| {
            allowed(c)
                && !targets.iter().any(|t| t.channel == *c)
                && address(*c, request, profile).is_some()
        })
        .collect();
    Decision::Route {
        targets,
        skipped,
        fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_contracts::{Recipient, TemplateRef};

    fn request(channels: Option<Vec<Channel>>) -> NotificationRequest {
        NotificationRequest {
            event_id: "e".into(),
            tenant: "acme".into(),
            category: "billing".into(),
            template: TemplateRef {
                id: "t".into(),
                version: None,
            },
            recipient: Recipient {
                user_id: "ada".into(),
                ..Recipient::default()
            },
            data: serde_json::json!({}),
            priority: Default::default(),
            channels,
            locale: None,
            send_at: None,
            expires_at: None,
            created_at: None,
        }
    }

    fn ada() -> Profile {
        Profile {
            known: true,
            email: Some("ada@example.com".into()),
            phone: Some("+14155550100".into()),
            ..Profile::default()
        }
    }

    fn defaults(
        channels: Vec<Channel>,
        fallback: Vec<Channel>,
        mandatory: bool,
    ) -> CategoryDefaults {
        CategoryDefaults {
            channels,
            fallback,
            mandatory,
            ..CategoryDefaults::default()
        }
    }

    fn channels_of(decision: &Decision) -> Vec<Channel> {
        match decision {
            Decision::Route { targets, .. } => targets.iter().map(|t| t.channel).collect(),
            Decision::Suppressed { .. } => Vec::new(),
        }
    }

    #[test]
    fn category_defaults_apply_when_the_user_said_nothing() {
        let d = defaults(vec![Channel::Email], vec![Channel::Sms], false);
        let decision = decide(&request(None), &ada(), Some(&d));
        assert_eq!(channels_of(&decision), vec![Channel::Email]);
        let Decision::Route { fallback, .. } = decision else {
            panic!()
        };
        assert_eq!(fallback, vec![Channel::Sms]);
    }

    #[test]
    fn user_choice_beats_defaults_and_override_beats_both() {
        let mut profile = ada();
        profile.preferences.insert(
            "billing".into(),
            CategoryPreference {
                channels: Some(vec![Channel::Sms]),
                ..CategoryPreference::default()
            },
        );
        let d = defaults(vec![Channel::Email], vec![], false);
        assert_eq!(
            channels_of(&decide(&request(None), &profile, Some(&d))),
            vec![Channel::Sms]
        );
        // The override narrows to what the user chose: email is not among their channels.
        let overridden = request(Some(vec![Channel::Email, Channel::Sms]));
        let decision = decide(&overridden, &profile, Some(&d));
        assert_eq!(channels_of(&decision), vec![Channel::Sms]);
        let Decision::Route { skipped, .. } = decision else {
            panic!()
        };
        assert_eq!(skipped, vec![(Channel::Email, reason::NOT_ALLOWED)]);
    }

    #[test]
    fn an_override_narrows_the_users_channels_and_never_widens_them() {
        let mut profile = ada();
        profile.push_tokens = vec!["token".into()];
        profile.preferences.insert(
            "billing".into(),
            CategoryPreference {
                channels: Some(vec![Channel::Email, Channel::Push]),
                ..CategoryPreference::default()
            },
        );
        let d = defaults(vec![Channel::Email], vec![Channel::Sms], false);
        // Narrowing to one of the user's channels.
        let push_only = request(Some(vec![Channel::Push]));
        assert_eq!(
            channels_of(&decide(&push_only, &profile, Some(&d))),
            vec![Channel::Push]
        );
        // The category's fallback channel is allowed (a fallback request asks for it); a
        // channel neither chose nor falls back to is not.
        let widened = request(Some(vec![Channel::Sms, Channel::Inapp]));
        let decision = decide(&widened, &profile, Some(&d));
        assert_eq!(channels_of(&decision), vec![Channel::Sms]);
        let Decision::Route { skipped, .. } = decision else {
            panic!()
        };
        assert_eq!(skipped, vec![(Channel::Inapp, reason::NOT_ALLOWED)]);
        // Nothing left: every requested channel gets its reason, nothing is sent.
        let refused = request(Some(vec![Channel::Webhook]));
        let Decision::Route {
            targets, skipped, ..
        } = decide(&refused, &profile, Some(&d))
        else {
            panic!()
        };
        assert!(targets.is_empty());
        assert_eq!(skipped, vec![(Channel::Webhook, reason::NOT_ALLOWED)]);
        // Without preferences the category's defaults are what the user allows.
        assert_eq!(
            channels_of(&decide(&widened, &ada(), Some(&d))),
            vec![Channel::Sms]
        );
        // A mandatory category's override is taken as it is.
        let mandatory = defaults(vec![Channel::Email], vec![], true);
        let both = request(Some(vec![Channel::Sms, Channel::Email]));
        assert_eq!(
            channels_of(&decide(&both, &ada(), Some(&mandatory))),
            vec![Channel::Sms, Channel::Email]
        );
    }

    #[test]
    fn opt_outs_suppress_unless_mandatory() {
        let mut profile = ada();
        profile.preferences.insert(
            "billing".into(),
            CategoryPreference {
                opted_out: true,
                ..CategoryPreference::default()
            },
        );
        let optional = defaults(vec![Channel::Email], vec![], false);
        assert_eq!(
            decide(&request(None), &profile, Some(&optional)),
            Decision::Suppressed {
                reason: reason::OPTED_OUT
            }
        );
        let mandatory = defaults(vec![Channel::Email], vec![], true);
        assert_eq!(
            channels_of(&decide(&request(None), &profile, Some(&mandatory))),
            vec![Channel::Email]
        );

        let mut global = ada();
        global.global_opt_out = true;
        assert_eq!(
            decide(&request(None), &global, Some(&optional)),
            Decision::Suppressed {
                reason: reason::OPTED_OUT
            }
        );
    }

    #[test]
    fn an_opted_out_channel_in_the_override_is_skipped_with_a_reason() {
        let mut profile = ada();
        profile.preferences.insert(
            "billing".into(),
            CategoryPreference {
                opted_out_channels: vec![Channel::Sms],
                ..CategoryPreference::default()
            },
        );
        let decision = decide(
            &request(Some(vec![Channel::Sms, Channel::Email])),
            &profile,
            None,
        );
        let Decision::Route {
            targets, skipped, ..
        } = decision
        else {
            panic!()
        };
        assert_eq!(targets.len(), 1);
        assert_eq!(skipped, vec![(Channel::Sms, reason::OPTED_OUT)]);
    }

    #[test]
    fn a_channel_without_an_address_is_skipped_and_left_out_of_the_fallback() {
        let d = defaults(
            vec![Channel::Email, Channel::Push],
            vec![Channel::Webhook, Channel::Sms],
            false,
        );
        let decision = decide(&request(None), &ada(), Some(&d));
        let Decision::Route {
            targets,
            skipped,
            fallback,
        } = decision
        else {
            panic!()
        };
        assert_eq!(
            targets,
            vec![Target::to(Channel::Email, "ada@example.com".into())]
        );
        assert_eq!(skipped, vec![(Channel::Push, reason::NO_ADDRESS)]);
        assert_eq!(fallback, vec![Channel::Sms]);
    }

    #[test]
    fn unknown_users_need_direct_addresses() {
        let stranger = Profile::default();
        assert_eq!(
            decide(&request(Some(vec![Channel::Email])), &stranger, None),
            Decision::Suppressed {
                reason: reason::UNKNOWN_RECIPIENT
            }
        );
        let mut direct = request(Some(vec![Channel::Email, Channel::Inapp]));
        direct.recipient.email = Some("guest@example.com".into());
        let Decision::Route {
            targets, skipped, ..
        } = decide(&direct, &stranger, None)
        else {
            panic!()
        };
        assert_eq!(
            targets,
            vec![Target::to(Channel::Email, "guest@example.com".into())]
        );
        assert_eq!(skipped, vec![(Channel::Inapp, reason::NO_ADDRESS)]);
    }

    #[test]
    fn every_enabled_webhook_endpoint_gets_a_dispatch_of_its_own() {
        use herald_store::directory::WebhookEndpoint;
        let mut profile = ada();
        profile.webhooks = vec![
            WebhookEndpoint {
                id: "orders".into(),
                url: "https://a.example.com/hook".into(),
            },
            WebhookEndpoint {
                id: "audit".into(),
                url: "https://b.example.com/hook".into(),
            },
        ];
        let d = defaults(vec![Channel::Webhook, Channel::Email], vec![], false);
        let Decision::Route { targets, .. } = decide(&request(None), &profile, Some(&d)) else {
            panic!()
        };
        let ids: Vec<(String, String)> = targets
            .iter()
            .map(|t| (t.dispatch_id("e"), t.address.clone()))
            .collect();
        assert_eq!(
            ids,
            [
                (
                    "e:webhook:orders".into(),
                    "https://a.example.com/hook".into()
                ),
                (
                    "e:webhook:audit".into(),
                    "https://b.example.com/hook".into()
                ),
                ("e:email".into(), "ada@example.com".into()),
            ]
        );
        // A direct URL (no registered endpoint) keeps the plain dispatch id.
        let mut direct = request(Some(vec![Channel::Webhook]));
        direct.recipient.webhook_url = Some("https://c.example.com/hook".into());
        let Decision::Route { targets, .. } = decide(&direct, &ada(), None) else {
            panic!()
        };
        assert_eq!(targets[0].dispatch_id("e"), "e:webhook");
    }

    #[test]
    fn no_channel_anywhere_is_a_reason() {
        assert_eq!(
            decide(&request(None), &ada(), None),
            Decision::Suppressed {
                reason: reason::NO_CHANNEL
            }
        );
    }
}
