//! What an invocation carries: S3 notifications, directly or inside SNS / SQS envelopes.
//!
//! Shapes accepted (reference §2):
//! - an S3 event (`Records[].eventSource = "aws:s3"`), sent by S3 to the function directly;
//! - an SNS event (`Records[].EventSource = "aws:sns"`) whose `Sns.Message` is an S3 event;
//! - an SQS batch (`Records[].eventSource = "aws:sqs"`) whose bodies are S3 events, or SNS
//!   notifications (`{"Type":"Notification","Message":…}`) wrapping S3 events when the
//!   subscription does not use raw message delivery;
//! - `s3:TestEvent` (no `Records`) at any of those levels, which is acknowledged.
//!
//! Object keys arrive form-URL-encoded (`+` is a space, `%2B` a plus) and are decoded here, so
//! nothing downstream ever sees an encoded key.

use std::borrow::Cow;

use aws_lambda_events::s3::{S3Event, S3EventRecord};
use aws_lambda_events::sns::SnsEvent;
use aws_lambda_events::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

/// Major S3 event version this code understands (2.1, 2.2 and 2.3 share the record shape).
const SUPPORTED_EVENT_MAJOR: &str = "2";

/// Why (part of) a payload cannot be read. Never retryable: the same bytes fail again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The payload is none of the accepted shapes.
    #[error("unrecognised payload: {detail}")]
    Unrecognised {
        /// What was found.
        detail: String,
    },
    /// A JSON document of the expected kind that does not deserialize.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// `S3 event`, `SQS event`, `SNS event`, `SQS message body`…
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// A record of an S3 event lacks a field the function needs.
    #[error("S3 event record {index}: missing {field}")]
    MissingField {
        /// Position in `Records`.
        index: usize,
        /// The JSON path.
        field: &'static str,
    },
    /// `eventVersion` other than 2.x.
    #[error("S3 event record {index}: unsupported eventVersion {version:?} (expected 2.x)")]
    UnsupportedVersion {
        /// Position in `Records`.
        index: usize,
        /// The version as sent.
        version: String,
    },
    /// The key does not percent-decode to UTF-8.
    #[error("S3 event record {index}: key {raw:?} does not decode to UTF-8")]
    UndecodableKey {
        /// Position in `Records`.
        index: usize,
        /// The key as sent.
        raw: String,
    },
}

impl EventError {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::Unrecognised { .. } => "EVENT_UNRECOGNISED",
            EventError::Malformed { .. } => "EVENT_MALFORMED",
            EventError::MissingField { .. } => "EVENT_MISSING_FIELD",
            EventError::UnsupportedVersion { .. } => "EVENT_UNSUPPORTED_VERSION",
            EventError::UndecodableKey { .. } => "EVENT_UNDECODABLE_KEY",
        }
    }
}

/// One object named by an S3 notification, key decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`… (S3 omits the `s3:` prefix).
    pub event_name: String,
    /// The bucket the object is in.
    pub bucket: String,
    /// The decoded key.
    pub key: String,
    /// The object's sequencer, when sent (for logs).
    pub sequencer: Option<String>,
}

impl ObjectEvent {
    /// True for `ObjectCreated:*`.
    pub fn is_object_created(&self) -> bool {
        let name = self.event_name.strip_prefix("s3:").unwrap_or(&self.event_name);
        name.starts_with("ObjectCreated:")
    }
}

/// What one S3 notification holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Object records (possibly none).
    Objects(Vec<ObjectEvent>),
    /// `s3:TestEvent`, sent when a notification configuration is saved.
    Test,
}

/// Where an invocation came from, which decides how failures are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// S3 invoked the function (asynchronous invocation).
    S3,
    /// SNS invoked the function (asynchronous invocation).
    Sns,
    /// An SQS event source mapping (synchronous; partial batch failures apply).
    Sqs,
    /// A bare `s3:TestEvent`.
    Test,
}

/// One unit that succeeds or fails as a whole: an SQS message, an SNS record, or the S3 event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The SQS message id (the `itemIdentifier` of a batch item failure); `None` otherwise.
    pub message_id: Option<String>,
    /// Its notification, or why it could not be read.
    pub content: Result<Notification, EventError>,
}

/// A parsed invocation payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The envelope kind.
    pub source: Source,
    /// Its messages, in order.
    pub messages: Vec<Message>,
}

/// Parses an invocation payload.
///
/// An error means the whole payload is unreadable; a readable envelope with an unreadable
/// message yields that message's `content` error instead, so the other messages still run.
pub fn parse_invocation(payload: &Value) -> Result<Invocation, EventError> {
    let Some(records) = payload.get("Records") else {
        return match parse_notification_value(payload, "payload") {
            Ok(Notification::Test) => {
                Ok(Invocation { source: Source::Test, messages: vec![message(None, Ok(Notification::Test))] })
            }
            Ok(Notification::Objects(_)) | Err(_) => {
                Err(EventError::Unrecognised { detail: "no Records and not an s3:TestEvent".to_string() })
            }
        };
    };
    let Some(first) = records.as_array().and_then(|r| r.first()) else {
        // An empty batch: nothing to do, nothing to fail.
        return Ok(Invocation { source: Source::S3, messages: Vec::new() });
    };
    let source_of = |field: &str| first.get(field).and_then(Value::as_str);
    match (source_of("eventSource"), source_of("EventSource")) {
        (Some("aws:s3"), _) => {
            let event: S3Event = from_value(payload, "S3 event")?;
            Ok(Invocation { source: Source::S3, messages: vec![message(None, s3_records(event.records))] })
        }
        (Some("aws:sqs"), _) => {
            let event: SqsEvent = from_value(payload, "SQS event")?;
            let messages = event
                .records
                .into_iter()
                .map(|record| {
                    let content = match record.body.as_deref() {
                        Some(body) => parse_sqs_body(body),
                        None => Err(EventError::Malformed { what: "SQS message", detail: "no body".into() }),
                    };
                    message(record.message_id, content)
                })
                .collect();
            Ok(Invocation { source: Source::Sqs, messages })
        }
        (_, Some("aws:sns")) => {
            let event: SnsEvent = from_value(payload, "SNS event")?;
            let messages = event
                .records
                .into_iter()
                .map(|record| message(None, parse_notification_text(&record.sns.message, "SNS message")))
                .collect();
            Ok(Invocation { source: Source::Sns, messages })
        }
        (other, other_sns) => Err(EventError::Unrecognised {
            detail: format!("event source {:?}", other.or(other_sns).unwrap_or("(none)")),
        }),
    }
}

fn message(message_id: Option<String>, content: Result<Notification, EventError>) -> Message {
    Message { message_id, content }
}

fn from_value<T: for<'de> Deserialize<'de>>(value: &Value, what: &'static str) -> Result<T, EventError> {
    T::deserialize(value).map_err(|e| EventError::Malformed { what, detail: e.to_string() })
}

/// An SNS notification as SQS receives it (non-raw delivery). Only what is needed: the
/// signature fields differ in case from the Lambda SNS record and are not checked here.
#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

/// An SQS body: an S3 notification, or one wrapped in an SNS envelope.
fn parse_sqs_body(body: &str) -> Result<Notification, EventError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| EventError::Malformed { what: "SQS message body", detail: e.to_string() })?;
    if value.get("TopicArn").is_some() && value.get("Message").is_some() {
        let envelope: SnsEnvelope = from_value(&value, "SNS notification in SQS body")?;
        if envelope.kind != "Notification" {
            return Err(EventError::Unrecognised {
                detail: format!("SNS message of type {:?}", envelope.kind),
            });
        }
        return parse_notification_text(&envelope.message, "SNS message in SQS body");
    }
    parse_notification_value(&value, "SQS message body")
}

fn parse_notification_text(text: &str, what: &'static str) -> Result<Notification, EventError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| EventError::Malformed { what, detail: e.to_string() })?;
    parse_notification_value(&value, what)
}

/// An S3 notification document: `{"Records":[…]}` or an `s3:TestEvent`.
fn parse_notification_value(value: &Value, what: &'static str) -> Result<Notification, EventError> {
    if value.get("Records").is_none() {
        if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            return Ok(Notification::Test);
        }
        return Err(EventError::Unrecognised {
            detail: format!("{what}: no Records and not an s3:TestEvent"),
        });
    }
    let event: S3Event = from_value(value, "S3 event")?;
    s3_records(event.records)
}

fn s3_records(records: Vec<S3EventRecord>) -> Result<Notification, EventError> {
    records
        .into_iter()
        .enumerate()
        .map(|(index, record)| object_event(index, record))
        .collect::<Result<_, _>>()
        .map(Notification::Objects)
}

fn object_event(index: usize, record: S3EventRecord) -> Result<ObjectEvent, EventError> {
    if let Some(version) = record.event_version.as_deref()
        && version.split('.').next() != Some(SUPPORTED_EVENT_MAJOR)
    {
        return Err(EventError::UnsupportedVersion { index, version: version.to_string() });
    }
    let missing = |field| EventError::MissingField { index, field };
    let event_name = record.event_name.ok_or_else(|| missing("eventName"))?;
    let bucket = record.s3.bucket.name.filter(|b| !b.is_empty()).ok_or_else(|| missing("s3.bucket.name"))?;
    let raw = record.s3.object.key.filter(|k| !k.is_empty()).ok_or_else(|| missing("s3.object.key"))?;
    let key = decode_key(&raw).ok_or(EventError::UndecodableKey { index, raw })?;
    Ok(ObjectEvent { event_name, bucket, key, sequencer: record.s3.object.sequencer })
}

/// Form-URL decoding of an event key: `+` is a space, then `%XX` bytes, then UTF-8.
///
/// `None` when the bytes are not UTF-8. A stray `%` not followed by two hex digits is kept
/// literally, as S3 never produces one.
pub fn decode_key(raw: &str) -> Option<String> {
    let spaced: Cow<'_, str> =
        if raw.contains('+') { Cow::Owned(raw.replace('+', " ")) } else { Cow::Borrowed(raw) };
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn objects(message: &Message) -> Vec<(String, String, String)> {
        match &message.content {
            Ok(Notification::Objects(objects)) => {
                objects.iter().map(|o| (o.event_name.clone(), o.bucket.clone(), o.key.clone())).collect()
            }
            other => panic!("expected objects, got {other:?}"),
        }
    }

    #[test]
    fn key_decoding() {
        let cases: &[(&str, Option<&str>)] = &[
            ("plain/key", Some("plain/key")),
            ("red+flower.jpg", Some("red flower.jpg")),
            ("a%2Bb", Some("a+b")),
            (
                "inv+reports/src%2Bbucket/cfg/2024-01-01T00-00Z/manifest.checksum",
                Some("inv reports/src+bucket/cfg/2024-01-01T00-00Z/manifest.checksum"),
            ),
            ("%C3%A9t%C3%A9", Some("\u{e9}t\u{e9}")),
            ("100%25", Some("100%")),
            ("%20lead", Some(" lead")),
            ("bad%zz", Some("bad%zz")),
            ("%FF%FE", None),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_key(raw).as_deref(), *want, "{raw}");
        }
    }

    #[test]
    fn direct_s3_event_with_encoded_keys() {
        let invocation = parse_invocation(&fixture("s3-event-encoded-keys.json")).unwrap();
        assert_eq!(invocation.source, Source::S3);
        assert_eq!(invocation.messages.len(), 1);
        assert_eq!(invocation.messages[0].message_id, None);
        let got = objects(&invocation.messages[0]);
        assert_eq!(
            got,
            vec![
                (
                    "ObjectCreated:Put".to_string(),
                    "{{INVENTORY_BUCKET}}".to_string(),
                    "inv reports/{{SOURCE_BUCKET}}/daily+full/{{TIMESTAMP}}/manifest.checksum".to_string()
                ),
                (
                    "ObjectCreated:CompleteMultipartUpload".to_string(),
                    "{{INVENTORY_BUCKET}}".to_string(),
                    "inv reports/{{SOURCE_BUCKET}}/daily+full/{{TIMESTAMP}}/manifest.json".to_string()
                ),
            ]
        );
    }

    #[test]
    fn test_events_at_every_level() {
        let bare = parse_invocation(&fixture("s3-test-event.json")).unwrap();
        assert_eq!(bare.source, Source::Test);
        assert_eq!(bare.messages[0].content, Ok(Notification::Test));

        let sqs = parse_invocation(&fixture("sqs-batch.json")).unwrap();
        assert_eq!(sqs.source, Source::Sqs);
        let ids: Vec<Option<&str>> = sqs.messages.iter().map(|m| m.message_id.as_deref()).collect();
        assert_eq!(
            ids,
            vec![Some("msg-checksum"), Some("msg-test"), Some("msg-sns-wrapped"), Some("msg-garbage")]
        );
        assert_eq!(objects(&sqs.messages[0]).len(), 1);
        assert_eq!(sqs.messages[1].content, Ok(Notification::Test));
        let wrapped = objects(&sqs.messages[2]);
        assert_eq!(wrapped[0].2, "inv reports/{{SOURCE_BUCKET}}/daily+full/{{TIMESTAMP}}/manifest.json");
        assert_eq!(sqs.messages[3].content.as_ref().unwrap_err().code(), "EVENT_MALFORMED");
    }

    #[test]
    fn sns_event() {
        let invocation = parse_invocation(&fixture("sns-event.json")).unwrap();
        assert_eq!(invocation.source, Source::Sns);
        let got = objects(&invocation.messages[0]);
        assert_eq!(got[0].2, "inv reports/{{SOURCE_BUCKET}}/daily+full/{{TIMESTAMP}}/manifest.checksum");
    }

    #[test]
    fn the_fixtures_round_trip_through_the_event_types() {
        // Like the lambda-events crate's own fixture tests: parse, serialize, reparse.
        let s3: S3Event = serde_json::from_value(fixture("s3-event-encoded-keys.json")).unwrap();
        let again: S3Event = serde_json::from_str(&serde_json::to_string(&s3).unwrap()).unwrap();
        assert_eq!(s3, again);
        let sqs: SqsEvent = serde_json::from_value(fixture("sqs-batch.json")).unwrap();
        let again: SqsEvent = serde_json::from_str(&serde_json::to_string(&sqs).unwrap()).unwrap();
        assert_eq!(sqs, again);
        let sns: SnsEvent = serde_json::from_value(fixture("sns-event.json")).unwrap();
        let again: SnsEvent = serde_json::from_str(&serde_json::to_string(&sns).unwrap()).unwrap();
        assert_eq!(sns, again);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        let cases: Vec<(Value, &str)> = vec![
            (serde_json::json!({"hello": "world"}), "EVENT_UNRECOGNISED"),
            (serde_json::json!({"Records": [{"eventSource": "aws:kinesis"}]}), "EVENT_UNRECOGNISED"),
            (serde_json::json!({"Records": [{"eventSource": "aws:s3"}]}), "EVENT_MALFORMED"),
        ];
        for (payload, code) in cases {
            assert_eq!(parse_invocation(&payload).unwrap_err().code(), code, "{payload}");
        }
        let mut event = fixture("s3-event-encoded-keys.json");
        event["Records"][0]["eventVersion"] = "3.0".into();
        let invocation = parse_invocation(&event).unwrap();
        assert_eq!(invocation.messages[0].content.as_ref().unwrap_err().code(), "EVENT_UNSUPPORTED_VERSION");

        let mut event = fixture("s3-event-encoded-keys.json");
        event["Records"][1]["s3"]["object"]["key"] = "%FF".into();
        let err = parse_invocation(&event).unwrap().messages[0].content.clone().unwrap_err();
        assert_eq!(err, EventError::UndecodableKey { index: 1, raw: "%FF".into() });

        let mut event = fixture("s3-event-encoded-keys.json");
        event["Records"][0]["s3"]["bucket"]["name"] = "".into();
        let err = parse_invocation(&event).unwrap().messages[0].content.clone().unwrap_err();
        assert_eq!(err.to_string(), "S3 event record 0: missing s3.bucket.name");

        let empty = parse_invocation(&serde_json::json!({"Records": []})).unwrap();
        assert!(empty.messages.is_empty());
    }

    #[test]
    fn event_names() {
        let object = |name: &str| ObjectEvent {
            event_name: name.into(),
            bucket: "b".into(),
            key: "k".into(),
            sequencer: None,
        };
        assert!(object("ObjectCreated:Put").is_object_created());
        assert!(object("s3:ObjectCreated:Copy").is_object_created());
        assert!(!object("ObjectRemoved:Delete").is_object_created());
        assert!(!object("ObjectCreatedFoo").is_object_created());
    }
}
