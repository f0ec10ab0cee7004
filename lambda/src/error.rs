//! Typed failures of the forwarder, each retryable or not.
//!
//! Retryable: throttling (S3 `SlowDown`, `KMS.ThrottlingException`), 5xx, network failures and
//! a report rewritten while it was being copied. Everything else (checksum mismatch, malformed
//! manifest, access denied, unusable KMS key) fails the same way on every retry and is logged
//! with what an operator needs to fix it: the principal when AWS names it, the key ARN, and
//! the permission that is missing.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use s3_connector_domain::inventory::{LocationError, ManifestError};

use crate::event::EventError;

/// Why a report could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The payload (or one message of it) could not be read.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A `manifest.json`/`manifest.checksum` key outside the inventory layout.
    #[error("s3://{bucket}/{key}: {source}")]
    ReportKey {
        /// The bucket of the event.
        bucket: String,
        /// The decoded key.
        key: String,
        /// What is wrong with it.
        source: LocationError,
    },
    /// The checksum does not match, or the manifest is invalid.
    #[error("s3://{bucket}/{key}: {source}")]
    Manifest {
        /// The inventory bucket.
        bucket: String,
        /// The `manifest.json` key.
        key: String,
        /// The domain's verdict.
        source: ManifestError,
    },
    /// The manifest describes another bucket than its folder says.
    #[error(
        "s3://{bucket}/{key}: manifest sourceBucket {in_manifest:?} differs from the folder's {in_key:?}"
    )]
    SourceBucketMismatch {
        /// The inventory bucket.
        bucket: String,
        /// The `manifest.json` key.
        key: String,
        /// `sourceBucket` in the manifest.
        in_manifest: String,
        /// The source-bucket segment of the key.
        in_key: String,
    },
    /// `manifest.json` is larger than the function reads into memory.
    #[error("s3://{bucket}/{key}: {size} bytes exceeds the {limit}-byte limit for a manifest")]
    ManifestTooLarge {
        /// The inventory bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An S3 request failed.
    #[error(transparent)]
    Aws(#[from] Box<AwsFailure>),
    /// The `latest` pointer kept changing under the conditional write.
    #[error("s3://{bucket}/{key}: latest pointer still contended after {attempts} conditional writes")]
    PointerContention {
        /// Destination bucket.
        bucket: String,
        /// Pointer key.
        key: String,
        /// Attempts made.
        attempts: u32,
    },
}

impl ForwardError {
    /// True when a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ForwardError::Aws(failure) => failure.kind.is_retryable(),
            ForwardError::PointerContention { .. } => true,
            ForwardError::Event(_)
            | ForwardError::ReportKey { .. }
            | ForwardError::Manifest { .. }
            | ForwardError::SourceBucketMismatch { .. }
            | ForwardError::ManifestTooLarge { .. } => false,
        }
    }

    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ForwardError::Event(e) => e.code(),
            ForwardError::ReportKey { source, .. } => source.code(),
            ForwardError::Manifest { source, .. } => source.code(),
            ForwardError::SourceBucketMismatch { .. } => "MANIFEST_SOURCE_BUCKET_MISMATCH",
            ForwardError::ManifestTooLarge { .. } => "MANIFEST_TOO_LARGE",
            ForwardError::Aws(failure) => failure.kind.code(),
            ForwardError::PointerContention { .. } => "LATEST_POINTER_CONTENTION",
        }
    }

    /// The AWS failure, when this is one.
    pub fn aws(&self) -> Option<&AwsFailure> {
        match self {
            ForwardError::Aws(failure) => Some(failure),
            _ => None,
        }
    }
}

/// What kind of AWS failure, in the terms the forwarder acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwsErrorKind {
    /// 403 AccessDenied on the S3 side.
    AccessDenied,
    /// AccessDenied naming a KMS action (kms:Decrypt, kms:GenerateDataKey).
    KmsAccessDenied,
    /// The KMS key is disabled.
    KmsKeyDisabled,
    /// The KMS key is pending deletion or otherwise unusable.
    KmsKeyInvalidState,
    /// The KMS key does not exist.
    KmsKeyNotFound,
    /// The object does not exist.
    NotFound,
    /// The bucket does not exist.
    NoSuchBucket,
    /// A conditional request lost (412 PreconditionFailed, 409 ConditionalRequestConflict).
    PreconditionFailed,
    /// Throttling, S3 or KMS.
    Throttled,
    /// A 5xx answer.
    ServerError,
    /// No answer (connection, timeout, DNS).
    Network,
    /// Credentials missing, expired or rejected.
    Credentials,
    /// Any other 4xx.
    Other,
}

impl AwsErrorKind {
    /// True when the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            AwsErrorKind::Throttled
                | AwsErrorKind::ServerError
                | AwsErrorKind::Network
                | AwsErrorKind::PreconditionFailed
                // Lambda's credentials rotate; an expired token is fixed by the next invocation.
                | AwsErrorKind::Credentials
        )
    }

    /// Stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            AwsErrorKind::AccessDenied => "ACCESS_DENIED",
            AwsErrorKind::KmsAccessDenied => "KMS_ACCESS_DENIED",
            AwsErrorKind::KmsKeyDisabled => "KMS_KEY_DISABLED",
            AwsErrorKind::KmsKeyInvalidState => "KMS_KEY_INVALID_STATE",
            AwsErrorKind::KmsKeyNotFound => "KMS_KEY_NOT_FOUND",
            AwsErrorKind::NotFound => "NOT_FOUND",
            AwsErrorKind::NoSuchBucket => "NO_SUCH_BUCKET",
            AwsErrorKind::PreconditionFailed => "PRECONDITION_FAILED",
            AwsErrorKind::Throttled => "THROTTLED",
            AwsErrorKind::ServerError => "SERVER_ERROR",
            AwsErrorKind::Network => "NETWORK",
            AwsErrorKind::Credentials => "CREDENTIALS",
            AwsErrorKind::Other => "AWS_ERROR",
        }
    }

    fn is_kms(self) -> bool {
        matches!(
            self,
            AwsErrorKind::KmsAccessDenied
                | AwsErrorKind::KmsKeyDisabled
                | AwsErrorKind::KmsKeyInvalidState
                | AwsErrorKind::KmsKeyNotFound
        )
    }
}

/// The S3 operations the forwarder makes, with the permissions each needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Reading a report file from the inventory bucket.
    GetReport,
    /// Reading the `latest` pointer.
    GetPointer,
    /// Checking a forwarded copy.
    HeadCopy,
    /// Copying a report file into the destination.
    CopyReport,
    /// Writing the `latest` pointer.
    PutPointer,
}

impl Operation {
    /// The API call.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetReport | Operation::GetPointer => "s3:GetObject",
            Operation::HeadCopy => "s3:HeadObject",
            Operation::CopyReport => "s3:CopyObject",
            Operation::PutPointer => "s3:PutObject",
        }
    }

    /// The IAM permission(s) whose absence explains an AccessDenied of `kind`.
    pub fn required_permission(self, kind: AwsErrorKind) -> &'static str {
        let kms = kind.is_kms();
        match self {
            Operation::GetReport if kms => "kms:Decrypt on the inventory report key",
            Operation::GetReport => "s3:GetObject on the inventory reports",
            Operation::GetPointer if kms => "kms:Decrypt on the destination key",
            Operation::GetPointer => "s3:GetObject on the destination prefix",
            Operation::HeadCopy => "s3:GetObject on the destination prefix (and s3:ListBucket to see 404s)",
            Operation::CopyReport if kms => {
                "kms:Decrypt on the inventory report key and kms:GenerateDataKey (+ kms:Decrypt) on the destination key"
            }
            Operation::CopyReport => {
                "s3:GetObject on the inventory reports and s3:PutObject on the destination prefix"
            }
            Operation::PutPointer if kms => "kms:GenerateDataKey on the destination key",
            Operation::PutPointer => "s3:PutObject on the destination prefix",
        }
    }
}

/// A failed S3 request, classified, with the context needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFailure {
    /// What was being done.
    pub operation: Operation,
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub key: String,
    /// Classified kind.
    pub kind: AwsErrorKind,
    /// AWS error code, when the response had one.
    pub code: Option<String>,
    /// AWS error message, when the response had one.
    pub message: Option<String>,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The KMS key involved: from the message, else the key the function knows it used.
    pub kms_key_arn: Option<String>,
    /// The principal AWS named in an AccessDenied message.
    pub principal: Option<String>,
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s3://{}/{}: {}", self.operation.name(), self.bucket, self.key, self.kind.code())?;
        match (&self.code, self.status) {
            (Some(code), Some(status)) => write!(f, " ({code}, HTTP {status})")?,
            (Some(code), None) => write!(f, " ({code})")?,
            (None, Some(status)) => write!(f, " (HTTP {status})")?,
            (None, None) => {}
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(key) = &self.kms_key_arn
            && self.kind.is_kms()
        {
            write!(f, " [key {key}]")?;
        }
        if matches!(self.kind, AwsErrorKind::AccessDenied | AwsErrorKind::KmsAccessDenied) {
            write!(f, " [needs {}]", self.operation.required_permission(self.kind))?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsFailure {}

impl AwsFailure {
    /// Classifies an SDK error. `known_key` is the KMS key the request used when the function
    /// knows it (the destination key), reported when the message names none.
    pub fn from_sdk<E>(
        operation: Operation,
        bucket: &str,
        key: &str,
        known_key: Option<&str>,
        err: &SdkError<E, Response>,
    ) -> AwsFailure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (code, message, status, kind) = match err {
            SdkError::ServiceError(service) => {
                let code = service.err().code().map(str::to_string);
                let message = service.err().message().map(str::to_string);
                let status = service.raw().status().as_u16();
                let kind = classify(code.as_deref(), message.as_deref(), Some(status));
                (code, message, Some(status), kind)
            }
            SdkError::ResponseError(response) => {
                let status = response.raw().status().as_u16();
                (None, None, Some(status), classify(None, None, Some(status)))
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                let chain = error_chain(err);
                let kind = if chain.to_ascii_lowercase().contains("credential") {
                    AwsErrorKind::Credentials
                } else {
                    AwsErrorKind::Network
                };
                (None, Some(chain), None, kind)
            }
            _ => {
                let chain = error_chain(err);
                let kind = if chain.to_ascii_lowercase().contains("credential") {
                    AwsErrorKind::Credentials
                } else {
                    AwsErrorKind::Other
                };
                (None, Some(chain), None, kind)
            }
        };
        let kms_key_arn = message.as_deref().and_then(kms_arn_in).or_else(|| known_key.map(str::to_string));
        let principal = message.as_deref().and_then(principal_in);
        AwsFailure {
            operation,
            bucket: bucket.to_string(),
            key: key.to_string(),
            kind,
            code,
            message,
            status,
            kms_key_arn,
            principal,
        }
    }

    /// Boxed into a [`ForwardError`].
    pub fn into_error(self) -> ForwardError {
        ForwardError::Aws(Box::new(self))
    }
}

/// Maps an error code, message and status to a kind (reference §3.6 catalogue).
pub fn classify(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> AwsErrorKind {
    let lower = message.unwrap_or_default().to_ascii_lowercase();
    match code {
        Some("KMS.DisabledException" | "DisabledException") => AwsErrorKind::KmsKeyDisabled,
        Some("KMS.KMSInvalidStateException" | "KMSInvalidStateException") => AwsErrorKind::KmsKeyInvalidState,
        Some("KMS.NotFoundException" | "NotFoundException") => AwsErrorKind::KmsKeyNotFound,
        Some("KMS.AccessDeniedException" | "AccessDeniedException") => AwsErrorKind::KmsAccessDenied,
        Some("AccessDenied") if lower.contains("kms:") => AwsErrorKind::KmsAccessDenied,
        Some("AccessDenied") => AwsErrorKind::AccessDenied,
        Some("NoSuchKey" | "NotFound") => AwsErrorKind::NotFound,
        Some("NoSuchBucket") => AwsErrorKind::NoSuchBucket,
        Some("PreconditionFailed" | "ConditionalRequestConflict") => AwsErrorKind::PreconditionFailed,
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "KMS.ThrottlingException"
            | "KMS.LimitExceededException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException",
        ) => AwsErrorKind::Throttled,
        Some(
            "InternalError"
            | "ServiceUnavailable"
            | "RequestTimeout"
            | "KMS.KMSInternalException"
            | "KMS.DependencyTimeoutException",
        ) => AwsErrorKind::ServerError,
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired",
        ) => AwsErrorKind::Credentials,
        _ => match status {
            Some(403) => AwsErrorKind::AccessDenied,
            Some(404) => AwsErrorKind::NotFound,
            Some(409 | 412) => AwsErrorKind::PreconditionFailed,
            Some(429 | 503) => AwsErrorKind::Throttled,
            Some(s) if s >= 500 => AwsErrorKind::ServerError,
            Some(_) => AwsErrorKind::Other,
            None => AwsErrorKind::Network,
        },
    }
}

/// The first KMS ARN in a message (`… on resource: arn:aws:kms:…`, `arn:aws:kms:… is disabled.`).
fn kms_arn_in(message: &str) -> Option<String> {
    message
        .match_indices("arn:")
        .filter_map(|(start, _)| message.get(start..))
        .map(|rest| {
            rest.chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '\'' | '"' | ')'))
                .collect::<String>()
                .trim_end_matches(['.', ',', ';'])
                .to_string()
        })
        .find(|candidate| candidate.split(':').nth(2) == Some("kms"))
}

/// The principal of `User: <arn> is not authorized to perform: …`.
fn principal_in(message: &str) -> Option<String> {
    let rest = message.split_once("User: ")?.1;
    let principal = rest.split_whitespace().next()?;
    principal.starts_with("arn:").then(|| principal.to_string())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<u16>, AwsErrorKind, bool);
        let cases: &[Case<'_>] = &[
            (
                Some("KMS.DisabledException"),
                Some("arn:aws:kms:us-east-1:000000000000:key/k is disabled."),
                Some(400),
                AwsErrorKind::KmsKeyDisabled,
                false,
            ),
            (
                Some("KMS.KMSInvalidStateException"),
                Some("… is pending deletion."),
                Some(400),
                AwsErrorKind::KmsKeyInvalidState,
                false,
            ),
            (
                Some("KMS.NotFoundException"),
                Some("Invalid keyId 'x'"),
                Some(400),
                AwsErrorKind::KmsKeyNotFound,
                false,
            ),
            (
                Some("AccessDenied"),
                Some(
                    "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:1:key/k because no identity-based policy allows the kms:Decrypt action",
                ),
                Some(403),
                AwsErrorKind::KmsAccessDenied,
                false,
            ),
            (Some("AccessDenied"), Some("Access Denied"), Some(403), AwsErrorKind::AccessDenied, false),
            (None, None, Some(403), AwsErrorKind::AccessDenied, false),
            (Some("NoSuchKey"), None, Some(404), AwsErrorKind::NotFound, false),
            (None, None, Some(404), AwsErrorKind::NotFound, false),
            (Some("NoSuchBucket"), None, Some(404), AwsErrorKind::NoSuchBucket, false),
            (
                Some("SlowDown"),
                Some("Please reduce your request rate."),
                Some(503),
                AwsErrorKind::Throttled,
                true,
            ),
            (
                Some("KMS.ThrottlingException"),
                Some("Rate exceeded"),
                Some(400),
                AwsErrorKind::Throttled,
                true,
            ),
            (Some("InternalError"), None, Some(500), AwsErrorKind::ServerError, true),
            (None, None, Some(502), AwsErrorKind::ServerError, true),
            (None, None, Some(429), AwsErrorKind::Throttled, true),
            (Some("PreconditionFailed"), None, Some(412), AwsErrorKind::PreconditionFailed, true),
            (Some("ConditionalRequestConflict"), None, Some(409), AwsErrorKind::PreconditionFailed, true),
            (Some("ExpiredToken"), None, Some(400), AwsErrorKind::Credentials, true),
            (Some("InvalidArgument"), None, Some(400), AwsErrorKind::Other, false),
            (None, None, None, AwsErrorKind::Network, true),
        ];
        for (code, message, status, kind, retryable) in cases {
            let got = classify(*code, *message, *status);
            assert_eq!(got, *kind, "{code:?} {message:?} {status:?}");
            assert_eq!(got.is_retryable(), *retryable, "{code:?}");
        }
    }

    #[test]
    fn messages_yield_key_and_principal() {
        let msg = "User: arn:aws:sts::111122223333:assumed-role/inventory-forwarder/fn is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:111122223333:key/0987 because no identity-based policy allows the kms:GenerateDataKey action";
        assert_eq!(kms_arn_in(msg).as_deref(), Some("arn:aws:kms:us-east-1:111122223333:key/0987"));
        assert_eq!(
            principal_in(msg).as_deref(),
            Some("arn:aws:sts::111122223333:assumed-role/inventory-forwarder/fn")
        );
        assert_eq!(
            kms_arn_in("arn:aws:kms:us-east-1:000000000000:key/abc is disabled.").as_deref(),
            Some("arn:aws:kms:us-east-1:000000000000:key/abc")
        );
        assert_eq!(kms_arn_in("Access Denied"), None);
        assert_eq!(principal_in("Access Denied"), None);
    }

    #[test]
    fn display_names_the_permission_and_key() {
        let failure = AwsFailure {
            operation: Operation::CopyReport,
            bucket: "drop".into(),
            key: "src/cfg/2024-01-01T00-00Z/manifest.json".into(),
            kind: AwsErrorKind::KmsKeyDisabled,
            code: Some("KMS.DisabledException".into()),
            message: Some("arn:aws:kms:us-east-1:1:key/b is disabled.".into()),
            status: Some(400),
            kms_key_arn: Some("arn:aws:kms:us-east-1:1:key/b".into()),
            principal: None,
        };
        assert_eq!(
            failure.to_string(),
            "s3:CopyObject s3://drop/src/cfg/2024-01-01T00-00Z/manifest.json: KMS_KEY_DISABLED (KMS.DisabledException, HTTP 400): arn:aws:kms:us-east-1:1:key/b is disabled. [key arn:aws:kms:us-east-1:1:key/b]"
        );
        let denied = AwsFailure {
            kind: AwsErrorKind::AccessDenied,
            code: Some("AccessDenied".into()),
            message: None,
            ..failure
        };
        assert!(denied.to_string().ends_with(
            "[needs s3:GetObject on the inventory reports and s3:PutObject on the destination prefix]"
        ));
        let error = denied.into_error();
        assert!(!error.is_retryable());
        assert_eq!(error.code(), "ACCESS_DENIED");
    }
}
