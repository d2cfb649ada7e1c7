//! Configured strings with per-dispatch placeholders (List-Unsubscribe, Twilio status
//! callback). Checked when the adapter is built, so a typo fails at start, not per send.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use herald_contracts::Dispatch;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 5] = ["tenant", "user_id", "category", "event_id", "dispatch_id"];

/// Everything but RFC 3986 unreserved characters is encoded, so a value cannot break out of
/// its URL component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(usize),
}

/// A parsed template: literal text and `{placeholder}`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; an unknown or unclosed placeholder is an error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
            let name = &after[..close];
            let index = PLACEHOLDERS
                .iter()
                .position(|p| *p == name)
                .ok_or_else(|| {
                    format!(
                        "unknown placeholder `{{{name}}}` (known: {})",
                        PLACEHOLDERS.join(", ")
                    )
                })?;
            pieces.push(Piece::Field(index));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { pieces })
    }

    /// The template with the dispatch's values, percent-encoded.
    pub fn render(&self, dispatch: &Dispatch) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(index) => {
                    let value = match index {
                        0 => &dispatch.tenant,
                        1 => &dispatch.user_id,
                        2 => &dispatch.category,
                        3 => &dispatch.event_id,
                        _ => &dispatch.dispatch_id,
                    };
                    out.extend(utf8_percent_encode(value, COMPONENT));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_contracts::{Channel, Dispatch};
    use herald_test_support::dispatch::sample_dispatch;

    fn dispatch(id: &str) -> Dispatch {
        let mut d = sample_dispatch(Channel::Email, "a@b.example");
        d.dispatch_id = id.into();
        d
    }

    #[test]
    fn fills_placeholders_percent_encoded() {
        let mut d = dispatch("e 1:email");
        d.user_id = "ana&bo".into();
        let t = Template::parse("<https://x.example/u?d={dispatch_id}&u={user_id}&c={category}>")
            .unwrap();
        assert_eq!(
            t.render(&d),
            "<https://x.example/u?d=e%201%3Aemail&u=ana%26bo&c=billing.invoice_ready>"
        );
    }

    #[test]
    fn refuses_unknown_and_unclosed_placeholders() {
        assert!(Template::parse("x{user}").unwrap_err().contains("{user}"));
        assert!(
            Template::parse("x{user_id")
                .unwrap_err()
                .contains("unclosed")
        );
        assert_eq!(
            Template::parse("plain").unwrap().render(&dispatch("d")),
            "plain"
        );
    }
}
