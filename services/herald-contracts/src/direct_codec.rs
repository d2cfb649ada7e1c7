//! Herald's own four record types written and read as Avro binary straight from and into their
//! structs, without apache_avro's `Value` tree, schema resolution or name maps (a quarter of
//! the router's allocations went there).
//!
//! Writing is always direct: Herald writes with its compiled-in schemas. Reading is direct only
//! for bytes whose writer schema is exactly a compiled-in one (the codec checks the registry's
//! schema for the id once); every other writer version goes through the generic path, which
//! resolves it. The tests check both paths give the same bytes and the same records.
//!
//! Field order below is the schemas' field order in `schemas/`; the byte-equality tests fail
//! if the two drift apart.

use chrono::{DateTime, Utc};

use crate::avro::{FieldError, field_error};
use crate::avro_binary::{BinaryError, Reader, Writer};
use crate::inbox::{InboxChange, InboxContent};
use crate::request::parse_data;
use crate::time::{from_millis, to_millis};
use crate::{
    Channel, Dispatch, InboxEvent, NotificationRequest, Priority, Recipient, RenderedContent,
    RequestError, SmsEncoding, Status, StatusEvent, TemplateRef,
};

/// Why a record of one of Herald's schemas could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a record of the schema.
    #[error(transparent)]
    Binary(#[from] BinaryError),
    /// Well-formed, but a field holds a value Herald cannot represent.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// A well-formed request Herald refuses.
    #[error(transparent)]
    Request(#[from] RequestError),
}

fn timestamp(w: &mut Writer<'_>, at: DateTime<Utc>) {
    w.long(to_millis(at));
}

fn read_timestamp(r: &mut Reader<'_>, field: &str) -> Result<DateTime<Utc>, ReadError> {
    let millis = r.long()?;
    from_millis(millis).ok_or_else(|| field_error(field, "a representable timestamp").into())
}

fn read_optional_timestamp(
    r: &mut Reader<'_>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, ReadError> {
    match r.optional(Reader::long)? {
        None => Ok(None),
        Some(millis) => from_millis(millis)
            .map(Some)
            .ok_or_else(|| field_error(field, "a representable timestamp").into()),
    }
}

/// An enum value as its index among the schema's symbols (`all` is in schema order; the
/// symbol-order tests beside each enum check that).
fn symbol<T: PartialEq>(w: &mut Writer<'_>, all: &[T], value: &T) {
    w.index(all.iter().position(|v| v == value).unwrap_or(0));
}

fn channel(w: &mut Writer<'_>, channel: &Channel) {
    symbol(w, &Channel::ALL, channel);
}

fn template(w: &mut Writer<'_>, template: &TemplateRef) {
    w.string(&template.id);
    w.optional(template.version, Writer::int);
}

fn read_template(r: &mut Reader<'_>) -> Result<TemplateRef, BinaryError> {
    Ok(TemplateRef {
        id: r.string()?,
        version: r.optional(Reader::int)?,
    })
}

pub(crate) fn write_request(request: &NotificationRequest, out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    w.string(&request.event_id);
    w.string(&request.tenant);
    w.string(&request.category);
    template(&mut w, &request.template);
    let recipient = &request.recipient;
    w.string(&recipient.user_id);
    w.optional_string(recipient.email.as_deref());
    w.optional_string(recipient.phone.as_deref());
    w.array(&recipient.push_tokens, |w, token| w.string(token));
    w.optional_string(recipient.webhook_url.as_deref());
    w.string(&request.data.to_string());
    symbol(&mut w, &Priority::ALL, &request.priority);
    w.optional(request.channels.as_deref(), |w, channels| {
        w.array(channels, channel)
    });
    w.optional_string(request.locale.as_deref());
    w.optional(request.send_at, timestamp);
    w.optional(request.expires_at, timestamp);
    timestamp(&mut w, request.created_at());
}

/// Reads a request and validates it as [`NotificationRequest::from_avro`] does.
pub(crate) fn read_request(bytes: &[u8]) -> Result<NotificationRequest, ReadError> {
    let r = &mut Reader::new(bytes);
    let event_id = r.string()?;
    let tenant = r.string()?;
    let category = r.string()?;
    let template = read_template(r)?;
    let recipient = Recipient {
        user_id: r.string()?,
        email: r.optional_string()?,
        phone: r.optional_string()?,
        push_tokens: r.array(Reader::string)?,
        webhook_url: r.optional_string()?,
    };
    let data_text = r.string()?;
    let priority = r.symbol(&Priority::ALL)?;
    let channels = r.optional(|r| r.array(|r| r.symbol(&Channel::ALL)))?;
    let locale = r.optional_string()?;
    let send_at = read_optional_timestamp(r, "send_at")?;
    let expires_at = read_optional_timestamp(r, "expires_at")?;
    let created_at = Some(read_timestamp(r, "created_at")?);
    let request = NotificationRequest {
        event_id,
        tenant,
        category,
        template,
        recipient,
        data: parse_data(&data_text)?,
        priority,
        channels,
        locale,
        send_at,
        expires_at,
        created_at,
    };
    Ok(request.validated_record()?)
}

pub(crate) fn write_dispatch(dispatch: &Dispatch, out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    w.string(&dispatch.dispatch_id);
    w.string(&dispatch.event_id);
    w.string(&dispatch.tenant);
    w.string(&dispatch.user_id);
    w.string(&dispatch.category);
    channel(&mut w, &dispatch.channel);
    symbol(&mut w, &Priority::ALL, &dispatch.priority);
    w.string(&dispatch.address);
    let c = &dispatch.content;
    w.optional_string(c.subject.as_deref());
    w.optional_string(c.text.as_deref());
    w.optional_string(c.html.as_deref());
    w.optional_string(c.json.as_deref());
    w.optional(c.sms_encoding.as_ref(), |w, e| {
        symbol(w, &SmsEncoding::ALL, e)
    });
    w.optional(c.sms_segments, Writer::int);
    template(&mut w, &dispatch.template);
    w.string(&dispatch.locale);
    w.int(dispatch.attempt);
    w.optional(dispatch.deadline, timestamp);
    w.array(&dispatch.fallback, channel);
    w.optional(dispatch.fallback_request.as_deref(), Writer::bytes);
    timestamp(&mut w, dispatch.created_at);
    timestamp(&mut w, dispatch.routed_at);
    w.boolean(dispatch.track_engagement);
}

pub(crate) fn read_dispatch(bytes: &[u8]) -> Result<Dispatch, ReadError> {
    let r = &mut Reader::new(bytes);
    Ok(Dispatch {
        dispatch_id: r.string()?,
        event_id: r.string()?,
        tenant: r.string()?,
        user_id: r.string()?,
        category: r.string()?,
        channel: r.symbol(&Channel::ALL)?,
        priority: r.symbol(&Priority::ALL)?,
        address: r.string()?,
        content: RenderedContent {
            subject: r.optional_string()?,
            text: r.optional_string()?,
            html: r.optional_string()?,
            json: r.optional_string()?,
            sms_encoding: r.optional(|r| r.symbol(&SmsEncoding::ALL))?,
            sms_segments: r.optional(Reader::int)?,
        },
        template: read_template(r)?,
        locale: r.string()?,
        attempt: r.int()?,
        deadline: read_optional_timestamp(r, "deadline")?,
        fallback: r.array(|r| r.symbol(&Channel::ALL))?,
        fallback_request: r.optional(Reader::bytes)?,
        created_at: read_timestamp(r, "created_at")?,
        routed_at: read_timestamp(r, "routed_at")?,
        track_engagement: r.boolean()?,
    })
}

pub(crate) fn write_status(status: &StatusEvent, out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    w.string(&status.event_id);
    w.optional_string(status.dispatch_id.as_deref());
    w.string(&status.tenant);
    w.string(&status.user_id);
    w.optional(status.channel.as_ref(), channel);
    symbol(&mut w, &Status::ALL, &status.status);
    w.optional_string(status.reason.as_deref());
    w.optional_string(status.provider.as_deref());
    w.optional_string(status.provider_message_id.as_deref());
    w.int(status.attempt);
    timestamp(&mut w, status.at);
    w.optional(status.scheduled_for, timestamp);
    w.optional_string(status.category.as_deref());
    w.optional(status.created_at, timestamp);
}

pub(crate) fn read_status(bytes: &[u8]) -> Result<StatusEvent, ReadError> {
    let r = &mut Reader::new(bytes);
    Ok(StatusEvent {
        event_id: r.string()?,
        dispatch_id: r.optional_string()?,
        tenant: r.string()?,
        user_id: r.string()?,
        channel: r.optional(|r| r.symbol(&Channel::ALL))?,
        status: r.symbol(&Status::ALL)?,
        reason: r.optional_string()?,
        provider: r.optional_string()?,
        provider_message_id: r.optional_string()?,
        attempt: r.int()?,
        at: read_timestamp(r, "at")?,
        scheduled_for: read_optional_timestamp(r, "scheduled_for")?,
        category: r.optional_string()?,
        created_at: read_optional_timestamp(r, "created_at")?,
    })
}

pub(crate) fn write_inbox(event: &InboxEvent, out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    w.string(&event.tenant);
    w.string(&event.user_id);
    symbol(&mut w, &InboxChange::ALL, &event.change);
    w.string(&event.dispatch_id);
    timestamp(&mut w, event.created_at);
    timestamp(&mut w, event.at);
    let c = &event.content;
    for text in [
        &c.event_id,
        &c.category,
        &c.priority,
        &c.title,
        &c.body,
        &c.data_json,
        &c.action_url,
    ] {
        w.optional_string(text.as_deref());
    }
}

pub(crate) fn read_inbox(bytes: &[u8]) -> Result<InboxEvent, ReadError> {
    let r = &mut Reader::new(bytes);
    Ok(InboxEvent {
        tenant: r.string()?,
        user_id: r.string()?,
        change: r.symbol(&InboxChange::ALL)?,
        dispatch_id: r.string()?,
        created_at: read_timestamp(r, "created_at")?,
        at: read_timestamp(r, "at")?,
        content: InboxContent {
            event_id: r.optional_string()?,
            category: r.optional_string()?,
            priority: r.optional_string()?,
            title: r.optional_string()?,
            body: r.optional_string()?,
            data_json: r.optional_string()?,
            action_url: r.optional_string()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Decoded;
    use crate::schemas::SchemaKind;
    use crate::time::now_millis;
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::types::Value;
    use apache_avro::writer::datum::GenericDatumWriter;

    fn requests() -> Vec<NotificationRequest> {
        let full = NotificationRequest {
            event_id: "e-1".into(),
            tenant: "acme".into(),
            category: "billing.invoice_ready".into(),
            template: TemplateRef {
                id: "invoice_ready".into(),
                version: Some(7),
            },
            recipient: Recipient {
                user_id: "ünïcode user ✓".into(),
                email: Some("ada@example.com".into()),
                phone: Some("+14155550100".into()),
                push_tokens: vec!["tok-1".into(), "tok-2".into()],
                webhook_url: Some("https://hooks.example/x".into()),
            },
            data: serde_json::json!({"amount": 12.5, "items": [1, 2], "name": "Ada"}),
            priority: Priority::Critical,
            channels: Some(vec![Channel::Sms, Channel::Email, Channel::Inapp]),
            locale: Some("fr-CA".into()),
            send_at: Some(now_millis()),
            expires_at: Some(now_millis() + chrono::Duration::hours(1)),
            created_at: Some(now_millis() - chrono::Duration::days(20_000)),
        };
        let bare = NotificationRequest {
            event_id: "e-2".into(),
            tenant: "t".into(),
            category: "c".into(),
            template: TemplateRef {
                id: "t".into(),
                version: None,
            },
            recipient: Recipient {
                user_id: "u".into(),
                ..Recipient::default()
            },
            data: serde_json::json!({}),
            priority: Priority::Low,
            channels: None,
            locale: None,
            send_at: None,
            expires_at: None,
            created_at: Some(now_millis()),
        };
        vec![full, bare]
    }

    fn dispatches() -> Vec<Dispatch> {
        let full = crate::dispatch::tests::sample();
        let mut other = full.clone();
        other.channel = Channel::Webhook;
        other.priority = Priority::Normal;
        other.content = RenderedContent {
            subject: Some("Subject ✓".into()),
            text: Some("text".into()),
            html: Some("<p>".repeat(100)),
            json: Some("{\"a\":1}".into()),
            sms_encoding: Some(SmsEncoding::Ucs2),
            sms_segments: Some(-3),
        };
        other.template.version = None;
        other.attempt = i32::MAX;
        other.deadline = Some(now_millis());
        other.fallback = vec![];
        other.fallback_request = None;
        other.track_engagement = false;
        vec![full, other]
    }

    fn statuses() -> Vec<StatusEvent> {
        let full = StatusEvent {
            event_id: "e-1".into(),
            dispatch_id: Some("e-1:email".into()),
            tenant: "acme".into(),
            user_id: "u-1".into(),
            channel: Some(Channel::Push),
            status: Status::Archived,
            reason: Some("http 400".into()),
            provider: Some("sendgrid".into()),
            provider_message_id: Some("m-1".into()),
            attempt: 3,
            at: now_millis(),
            scheduled_for: Some(now_millis()),
            category: Some("billing.invoice_ready".into()),
            created_at: Some(now_millis()),
        };
        let bare = StatusEvent {
            event_id: "e-2".into(),
            tenant: "acme".into(),
            user_id: "u-1".into(),
            status: Status::Unknown,
            at: now_millis(),
            ..StatusEvent::default()
        };
        vec![full, bare]
    }

    fn inbox_events() -> Vec<InboxEvent> {
        let dispatch = crate::dispatch::tests::sample();
        let message = InboxEvent::message(&dispatch, now_millis());
        let mark = InboxEvent {
            change: InboxChange::Archived,
            content: InboxContent::default(),
            ..message.clone()
        };
        vec![message, mark]
    }

    /// Every sample as (kind, what apache_avro writes from its `Value`, what the direct writer
    /// writes, the record).
    fn samples() -> Vec<(SchemaKind, Vec<u8>, Vec<u8>, Decoded)> {
        fn generic(kind: SchemaKind, value: Value) -> Vec<u8> {
            let mut out = Vec::new();
            GenericDatumWriter::builder(kind.schema())
                .build()
                .unwrap()
                .write_value_ref(&mut out, &value)
                .unwrap();
            out
        }
        fn direct(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
            let mut out = Vec::new();
            write(&mut out);
            out
        }
        let mut all = Vec::new();
        for r in requests() {
            let kind = SchemaKind::Requested;
            let bytes = direct(|out| write_request(&r, out));
            all.push((kind, generic(kind, r.to_avro()), bytes, Decoded::Request(r)));
        }
        for d in dispatches() {
            let kind = SchemaKind::Dispatch;
            let bytes = direct(|out| write_dispatch(&d, out));
            all.push((
                kind,
                generic(kind, d.to_avro()),
                bytes,
                Decoded::Dispatch(d),
            ));
        }
        for s in statuses() {
            let kind = SchemaKind::Status;
            let bytes = direct(|out| write_status(&s, out));
            all.push((kind, generic(kind, s.to_avro()), bytes, Decoded::Status(s)));
        }
        for i in inbox_events() {
            let kind = SchemaKind::Inbox;
            let bytes = direct(|out| write_inbox(&i, out));
            all.push((kind, generic(kind, i.to_avro()), bytes, Decoded::Inbox(i)));
        }
        all
    }

    fn read_direct(kind: SchemaKind, bytes: &[u8]) -> Result<Decoded, ReadError> {
        match kind {
            SchemaKind::Requested => read_request(bytes).map(Decoded::Request),
            SchemaKind::Dispatch => read_dispatch(bytes).map(Decoded::Dispatch),
            SchemaKind::Status => read_status(bytes).map(Decoded::Status),
            SchemaKind::Inbox => read_inbox(bytes).map(Decoded::Inbox),
        }
    }

    /// What the codec's generic path makes of the bytes: read with the writer schema, resolve
    /// into the reader schema, take the fields out.
    fn read_generic(kind: SchemaKind, bytes: &[u8]) -> Option<Decoded> {
        let schema = kind.schema();
        let value = GenericDatumReader::builder(schema)
            .build()
            .ok()?
            .read_value(&mut &bytes[..])
            .ok()?
            .resolve(schema)
            .ok()?;
        match kind {
            SchemaKind::Requested => NotificationRequest::from_avro(value)
                .ok()
                .map(Decoded::Request),
            SchemaKind::Dispatch => Dispatch::from_avro(value).ok().map(Decoded::Dispatch),
            SchemaKind::Status => StatusEvent::from_avro(value).ok().map(Decoded::Status),
            SchemaKind::Inbox => InboxEvent::from_avro(value).ok().map(Decoded::Inbox),
        }
    }

    #[test]
    fn writes_the_same_bytes_as_apache_avro() {
        for (kind, generic, direct, record) in samples() {
            assert_eq!(direct, generic, "{kind:?}: {record:?}");
        }
    }

    #[test]
    fn reads_back_what_either_writer_wrote() {
        for (kind, generic, _, record) in samples() {
            assert_eq!(read_direct(kind, &generic).unwrap(), record, "{kind:?}");
            assert_eq!(read_generic(kind, &generic), Some(record));
        }
    }

    /// Truncated and corrupted records: whatever the direct reader accepts, the generic path
    /// reads the same; whatever the generic path refuses, the direct reader refuses; and it
    /// never panics. The one difference is deliberate: a record that ends early.
    #[test]
    fn agrees_with_the_generic_path_on_damaged_bytes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        let mut refused = 0;
        for (kind, bytes, _, _) in samples() {
            let mut damaged: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for _ in 0..1500 {
                let mut copy = bytes.clone();
                for _ in 0..=(next() % 3) {
                    let at = (next() % copy.len() as u64) as usize;
                    match next() % 4 {
                        0 => copy[at] = next() as u8,
                        1 => copy[at] ^= 1 << (next() % 8),
                        2 => {
                            copy.remove(at);
                        }
                        _ => copy.insert(at, next() as u8),
                    }
                    if copy.is_empty() {
                        break;
                    }
                }
                damaged.push(copy);
            }
            for bytes in damaged {
                let generic = read_generic(kind, &bytes);
                match read_direct(kind, &bytes) {
                    Ok(direct) => {
                        assert_eq!(Some(direct), generic, "{kind:?} {bytes:?}");
                        accepted += 1;
                    }
                    // apache_avro reads a record that ends where a union, boolean or string
                    // should be as if it held null there; a record cut short is refused here.
                    Err(ReadError::Binary(BinaryError::Truncated)) => refused += 1,
                    Err(e) => {
                        assert_eq!(generic, None, "{kind:?} {bytes:?}: {e}");
                        refused += 1;
                    }
                }
            }
        }
        // Both outcomes were exercised.
        assert!(accepted > 100 && refused > 100, "{accepted} / {refused}");
    }

    #[test]
    fn an_unrepresentable_timestamp_names_its_field() {
        let mut status = statuses().remove(1);
        status.at = now_millis();
        let mut bytes = Vec::new();
        write_status(&status, &mut bytes);
        // Rewrite `at` (the record's last fields are at, scheduled_for, category, created_at:
        // three nulls after it) with a millisecond count chrono cannot represent.
        let varint = |value: i64| {
            let mut out = Vec::new();
            Writer::new(&mut out).long(value);
            out
        };
        let tail = bytes.len() - 3;
        let start = tail - varint(to_millis(status.at)).len();
        bytes.splice(start..tail, varint(i64::MAX));
        match read_status(&bytes) {
            Err(ReadError::Field(e)) => assert_eq!(e.field, "at"),
            other => panic!("{other:?}"),
        }
    }
}
