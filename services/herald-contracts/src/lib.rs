//! Herald's wire contracts: the Avro schemas in `schemas/`, the event types they carry, how
//! requests are validated, how records are framed (Confluent wire format through a schema
//! registry), and every topic and header name. Nothing here talks to Kafka or ScyllaDB.

pub mod avro;
pub mod avro_binary;
pub mod channel;
pub mod codec;
pub mod direct_codec;
pub mod dispatch;
pub mod headers;
pub mod inbox;
pub mod metric_names;
pub mod provider;
pub mod registry;
pub mod request;
pub mod schemas;
pub mod secret;
pub mod signed;
pub mod status;
pub mod time;
pub mod topics;
pub mod tracking;
pub mod unsubscribe;

pub use channel::{Channel, Priority};
pub use codec::{Codec, CodecError, Decoded};
pub use dispatch::{Dispatch, RenderedContent, SmsEncoding};
pub use inbox::{InboxChange, InboxEvent};
pub use request::{NotificationRequest, Recipient, RequestError, RequestIdentity, TemplateRef};
pub use status::{Status, StatusEvent};
pub use topics::{Lane, TopicNames};
