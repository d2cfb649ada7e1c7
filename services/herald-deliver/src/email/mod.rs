//! Email: SMTP through lettre, or an HTTP API in the SendGrid v3 `mail/send` shape. The
//! dispatch's address is the recipient; its content's subject, text and HTML are the message.

pub mod sendgrid;
pub mod smtp;

use herald_contracts::Dispatch;

pub const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe-Post";
/// RFC 8058 one-click unsubscription.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

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
    fn domains_come_from_addresses_or_mailboxes() {
        assert_eq!(
            domain_of("Acme <no-reply@acme.example>"),
            Some("acme.example")
        );
        assert_eq!(domain_of("a@b"), Some("b"));
        assert_eq!(domain_of("nobody"), None);
    }
}
