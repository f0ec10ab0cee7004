//! Inventory-report forwarding Lambda.
//!
//! When S3 Inventory finishes a report (its `manifest.checksum` lands), this function verifies
//! `manifest.json` against the checksum, validates it with the domain crate's manifest parser,
//! copies both files server-side into the connector's destination bucket under SSE-KMS, and
//! advances a per-(source bucket, configuration) `latest` pointer with a conditional write.
//!
//! The handler lives here ([`handle`]); `main.rs` only builds the S3 client and configuration
//! once at cold start. See `lambda/README.md` for deployment, IAM and failure semantics.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod error;
pub mod event;
pub mod forward;

use futures::StreamExt;
use lambda_runtime::Diagnostic;
use serde_json::{Value, json};

pub use config::{Config, ConfigError};
pub use error::{AwsErrorKind, AwsFailure, ForwardError};
pub use event::{Invocation, Notification, ObjectEvent, Source};
pub use forward::{Forwarder, LatestPointer, Outcome, PointerUpdate};

/// The result of one object record.
#[derive(Debug)]
pub struct RecordReport {
    /// The bucket of the record (`None` when the message itself was unreadable).
    pub bucket: Option<String>,
    /// The decoded key of the record.
    pub key: Option<String>,
    /// What happened.
    pub result: Result<Outcome, ForwardError>,
}

/// The results of one message (SQS message, SNS record, or the direct S3 event).
#[derive(Debug)]
pub struct MessageReport {
    /// SQS message id.
    pub message_id: Option<String>,
    /// One entry per object record, or one error entry for an unreadable message.
    pub records: Vec<RecordReport>,
}

impl MessageReport {
    /// True when some record failed in a way a retry may fix.
    pub fn has_retryable_failure(&self) -> bool {
        self.records.iter().any(|r| r.result.as_ref().is_err_and(ForwardError::is_retryable))
    }
}

/// Everything an invocation did.
#[derive(Debug)]
pub struct InvocationReport {
    /// The envelope kind (`None` when the payload was unreadable).
    pub source: Option<Source>,
    /// Per-message results.
    pub messages: Vec<MessageReport>,
}

impl InvocationReport {
    /// Every record result, in order.
    pub fn records(&self) -> impl Iterator<Item = &RecordReport> {
        self.messages.iter().flat_map(|m| m.records.iter())
    }
}

/// Returned to the runtime when a direct (S3 or SNS) invocation should be retried by Lambda.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failed} record(s) failed with retryable errors: {first}")]
pub struct RetryableFailure {
    /// How many records failed retryably.
    pub failed: usize,
    /// The first such error, for the invocation's error message.
    pub first: String,
}

impl From<RetryableFailure> for Diagnostic {
    fn from(value: RetryableFailure) -> Diagnostic {
        Diagnostic { error_type: "Retryable".to_string(), error_message: value.to_string() }
    }
}

/// The Lambda handler: runs the invocation and turns its report into the function's response.
///
/// - SQS batches always succeed as an invocation and list the messages with retryable failures
///   in `batchItemFailures` (the event source mapping needs `ReportBatchItemFailures`).
/// - Direct S3 and SNS invocations return `Err` when any record failed retryably, so Lambda's
///   asynchronous retries run again; the other records are idempotent on the second run.
/// - Non-retryable failures are logged at error level and acknowledged in both cases: a retry
///   would fail identically.
pub async fn handle(forwarder: &Forwarder, payload: Value) -> Result<Value, RetryableFailure> {
    let report = run_invocation(forwarder, &payload).await;
    response(&report)
}

/// Parses and processes a payload, logging every record's result.
pub async fn run_invocation(forwarder: &Forwarder, payload: &Value) -> InvocationReport {
    let invocation = match event::parse_invocation(payload) {
        Ok(invocation) => invocation,
        Err(err) => {
            let error = ForwardError::Event(err);
            log_result(None, None, None, &Err(&error));
            return InvocationReport {
                source: None,
                messages: vec![MessageReport {
                    message_id: None,
                    records: vec![RecordReport { bucket: None, key: None, result: Err(error) }],
                }],
            };
        }
    };

    // Flatten to (message, object) pairs so records of different messages share the bound.
    let mut work = Vec::new();
    let mut messages: Vec<MessageReport> = Vec::with_capacity(invocation.messages.len());
    for (index, message) in invocation.messages.into_iter().enumerate() {
        let mut records = Vec::new();
        match message.content {
            Ok(Notification::Test) => {
                tracing::info!(message_id = message.message_id, "s3:TestEvent acknowledged")
            }
            Ok(Notification::Objects(objects)) => work.extend(objects.into_iter().map(|o| (index, o))),
            Err(err) => {
                records.push(RecordReport { bucket: None, key: None, result: Err(ForwardError::Event(err)) })
            }
        }
        messages.push(MessageReport { message_id: message.message_id, records });
    }
    let results: Vec<(usize, ObjectEvent, Result<Outcome, ForwardError>)> = futures::stream::iter(work)
        .map(|(index, object)| async move {
            let result = forwarder.forward(&object).await;
            (index, object, result)
        })
        .buffered(forwarder.config().max_concurrency.get())
        .collect()
        .await;
    for (index, object, result) in results {
        if let Some(message) = messages.get_mut(index) {
            message.records.push(RecordReport { bucket: Some(object.bucket), key: Some(object.key), result });
        }
    }
    for message in &messages {
        for record in &message.records {
            log_result(
                message.message_id.as_deref(),
                record.bucket.as_deref(),
                record.key.as_deref(),
                &record.result.as_ref(),
            );
        }
    }
    InvocationReport { source: Some(invocation.source), messages }
}

/// The function's response for a report (see [`handle`]).
pub fn response(report: &InvocationReport) -> Result<Value, RetryableFailure> {
    if report.source == Some(Source::Sqs) {
        let failures: Vec<Value> = report
            .messages
            .iter()
            .filter(|m| m.has_retryable_failure())
            .filter_map(|m| m.message_id.as_ref())
            .map(|id| json!({ "itemIdentifier": id }))
            .collect();
        return Ok(json!({ "batchItemFailures": failures }));
    }
    let retryable: Vec<&ForwardError> =
        report.records().filter_map(|r| r.result.as_ref().err()).filter(|e| e.is_retryable()).collect();
    if let Some(first) = retryable.first() {
        return Err(RetryableFailure { failed: retryable.len(), first: first.to_string() });
    }
    let records: Vec<Value> = report.records().map(record_json).collect();
    Ok(json!({ "records": records }))
}

fn record_json(record: &RecordReport) -> Value {
    let mut value = json!({ "bucket": record.bucket, "key": record.key });
    match &record.result {
        Ok(outcome) => {
            value["outcome"] = json!(outcome.name());
            if let Some(latest) = outcome.latest() {
                value["latest"] = json!(latest.name());
            }
        }
        Err(error) => {
            value["error"] = json!(error.code());
            value["retryable"] = json!(error.is_retryable());
            value["message"] = json!(error.to_string());
        }
    }
    value
}

fn log_result(
    message_id: Option<&str>,
    bucket: Option<&str>,
    key: Option<&str>,
    result: &Result<&Outcome, &ForwardError>,
) {
    match result {
        Ok(outcome) => tracing::info!(
            message_id,
            bucket,
            key,
            outcome = outcome.name(),
            latest = outcome.latest().map(PointerUpdate::name),
            "record handled"
        ),
        Err(error) => {
            let aws = error.aws();
            let permission = aws
                .filter(|a| matches!(a.kind, AwsErrorKind::AccessDenied | AwsErrorKind::KmsAccessDenied))
                .map(|a| a.operation.required_permission(a.kind));
            let retryable = error.is_retryable();
            let fields =
                (aws.and_then(|a| a.principal.as_deref()), aws.and_then(|a| a.kms_key_arn.as_deref()));
            if retryable {
                tracing::warn!(
                    message_id, bucket, key, code = error.code(), retryable,
                    principal = fields.0, kms_key_arn = fields.1, error = %error,
                    "record failed, will be retried"
                );
            } else {
                tracing::error!(
                    message_id, bucket, key, code = error.code(), retryable,
                    principal = fields.0, kms_key_arn = fields.1, missing_permission = permission, error = %error,
                    "record failed, not retryable: acknowledged"
                );
            }
        }
    }
}
