//! Email: SMTP through lettre, or an HTTP API in the SendGrid v3 `mail/send` shape. The
//! dispatch's address is the recipient; its content's subject, text and HTML are the message.

pub mod sendgrid;
pub mod smtp;
pub mod tracked;

use herald_contracts::Dispatch;
use herald_contracts::tracking::TrackingLinks;
use herald_contracts::unsubscribe::UnsubscribeLinks;

use crate::BuildError;
use crate::template::Template;

pub const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe-Post";
/// RFC 8058 one-click unsubscription.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// The signed links served by `herald api` that an email worker puts into messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmailLinks<'a> {
    /// `[unsubscribe]`: `List-Unsubscribe` points at signed one-click links.
    pub unsubscribe: Option<&'a UnsubscribeLinks>,
    /// `[tracking]`: the HTML of a category that opted in gets an open pixel and redirect
    /// links (SMTP only: an email API provider tracks with its own links).
    pub tracking: Option<&'a TrackingLinks>,
}

/// Where a message's `List-Unsubscribe` header points.
#[derive(Debug, Clone)]
pub enum ListUnsubscribe {
    /// A configured URL template (`<provider>.list_unsubscribe`), one-click when
    /// `<provider>.list_unsubscribe_post` is set.
    Template { template: Template, one_click: bool },
    /// A signed, expiring link served by `herald api` (`[unsubscribe]`), always one-click.
    Signed(Box<UnsubscribeLinks>),
}

impl ListUnsubscribe {
    /// The provider's own template, or the signed links of `[unsubscribe]`; both is a
    /// configuration error naming `key` (`smtp.list_unsubscribe`).
    pub fn configure(
        key: &'static str,
        template: Option<&str>,
        one_click: bool,
        links: Option<&UnsubscribeLinks>,
    ) -> Result<Option<Self>, BuildError> {
        match (template, links) {
            (Some(_), Some(_)) => Err(BuildError::config(
                key,
                "is set and so is [unsubscribe]; keep one of them",
            )),
            (None, Some(links)) => Ok(Some(Self::Signed(Box::new(links.clone())))),
            (Some(text), None) => {
                let template = Template::parse(text).map_err(|m| BuildError::config(key, m))?;
                Ok(Some(Self::Template {
                    template,
                    one_click,
                }))
            }
            (None, None) => Ok(None),
        }
    }

    /// The `List-Unsubscribe` value for `dispatch`, and whether `List-Unsubscribe-Post`
    /// goes with it. A signed link expires `unsubscribe.ttl` after the dispatch was routed,
    /// so every retry of one dispatch carries the same link.
    pub fn header(&self, dispatch: &Dispatch) -> (String, bool) {
        match self {
            Self::Template {
                template,
                one_click,
            } => (template.render(dispatch), *one_click),
            Self::Signed(links) => {
                let url = links.url(
                    &dispatch.tenant,
                    &dispatch.user_id,
                    &dispatch.category,
                    dispatch.routed_at,
                );
                (format!("<{url}>"), true)
            }
        }
    }
}

/// The Message-ID for a dispatch: `<{dispatch id}@{domain}>`, the same on every retry so a
/// receiving system can recognise a duplicate. Characters a msg-id cannot hold (RFC 5322
/// `atext`), and `=` and `.` (whose placement dot-atom-text restricts), are written `=XX`, so
/// distinct ids stay distinct.
pub fn message_id(dispatch: &Dispatch, domain: &str) -> String {
    let mut left = String::with_capacity(dispatch.dispatch_id.len() + 8);
    for byte in dispatch.dispatch_id.bytes() {
        let atext = byte.is_ascii_alphanumeric() || b"!#$%&'*+-/?^_`{|}~".contains(&byte);
        if atext {
            left.push(char::from(byte));
        } else {
            left.push_str(&format!("={byte:02X}"));
        }
    }
    format!("<{left}@{domain}>")
}

/// The domain of an address (`a@b.example` → `b.example`), for the default Message-ID domain.
pub(crate) fn domain_of(address: &str) -> Option<&str> {
    let address = address.trim().trim_end_matches('>');
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_contracts::Channel;
    use herald_test_support::dispatch::sample_dispatch;

    #[test]
    fn message_ids_follow_the_dispatch_id() {
        let mut d = sample_dispatch(Channel::Email, "a@b.example");
        d.dispatch_id = "evt_1:email".into();
        assert_eq!(
            message_id(&d, "mail.acme.example"),
            "<evt_1=3Aemail@mail.acme.example>"
        );
        d.dispatch_id = "a=3A".into();
        assert_eq!(message_id(&d, "x"), "<a=3D3A@x>");
        d.dispatch_id = "a b.\u{e9}".into();
        assert_eq!(message_id(&d, "x"), "<a=20b=2E=C3=A9@x>");
    }

    #[test]
    fn a_signed_link_is_one_click_and_excludes_a_template() {
        use herald_contracts::secret::Secret;
        use herald_contracts::unsubscribe::UnsubscribeConfig;
        let links = UnsubscribeConfig {
            base_url: Some("https://n.example".into()),
            secret: Some(Secret::new("s".repeat(32))),
            ..UnsubscribeConfig::default()
        }
        .links()
        .unwrap()
        .unwrap();
        let error =
            ListUnsubscribe::configure("smtp.list_unsubscribe", Some("<x>"), false, Some(&links))
                .unwrap_err();
        assert!(
            error.to_string().contains("smtp.list_unsubscribe"),
            "{error}"
        );
        let signed = ListUnsubscribe::configure("smtp.list_unsubscribe", None, false, Some(&links))
            .unwrap()
            .unwrap();
        let d = sample_dispatch(Channel::Email, "a@b.example");
        let (url, one_click) = signed.header(&d);
        assert!(one_click);
        let token = url
            .strip_prefix("<https://n.example/v1/unsubscribe/")
            .and_then(|rest| rest.strip_suffix('>'))
            .unwrap();
        let asked = links.verify(token, d.routed_at).unwrap();
        assert_eq!((asked.user_id, asked.category), (d.user_id, d.category));
    }

    #[test]
    fn domains_come_from_addresses_or_mailboxes() {
        assert_eq!(
            domain_of("Acme <no-reply@acme.example>"),
            Some("acme.example")
        );
        assert_eq!(domain_of("a@b"), Some("b"));
        assert_eq!(domain_of("nobody"), None);
    }
}
