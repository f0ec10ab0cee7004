//! Classification of AWS errors into the kinds the connector acts on.
//!
//! The SDK exposes most S3 and KMS failures as `Unhandled` with an error code (and HEAD
//! failures with no body at all), so classification works on the code, the message and the
//! HTTP status, following the error catalogue in the project reference.

use std::fmt;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What went wrong, in the connector's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwsErrorKind {
    /// 403 AccessDenied (or an empty-bodied 403).
    AccessDenied,
    /// 403 AccessDenied whose message names kms:Decrypt / a KMS action.
    KmsAccessDenied,
    /// The object (or key) does not exist (NoSuchKey, 404).
    NotFound,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The KMS key is disabled.
    KmsKeyDisabled,
    /// The KMS key is pending deletion.
    KmsKeyPendingDeletion,
    /// The KMS key is in another unusable state.
    KmsKeyInvalidState,
    /// The KMS key does not exist.
    KmsKeyNotFound,
    /// An SSE-C object was requested without its key.
    SseCKeyRequired,
    /// An SSE-C object was requested with the wrong key.
    SseCKeyMismatch,
    /// The requested range is not satisfiable (416).
    InvalidRange,
    /// Throttled after the retries.
    Throttled,
    /// No usable credentials, or credentials rejected (InvalidAccessKeyId, SignatureDoesNotMatch, ExpiredToken).
    Credentials,
    /// The request never got an answer (connection refused, timeout, DNS).
    Network,
    /// A client-side encrypted object could not be decrypted ([`crate::cse`]).
    ClientSide(crate::cse::CseFailure),
    /// Anything else.
    Other,
}

/// A failed AWS request, with the context needed to explain it.
#[derive(Debug, Clone, thiserror::Error)]
pub struct AwsError {
    /// The operation, e.g. `s3:GetObject`.
    pub operation: &'static str,
    /// The bucket, when the request concerned one.
    pub bucket: Option<String>,
    /// The object key or KMS key id, when the request concerned one.
    pub resource: Option<String>,
    /// Classified kind.
    pub kind: AwsErrorKind,
    /// AWS error code, when the response carried one.
    pub code: Option<String>,
    /// AWS error message, when the response carried one.
    pub message: Option<String>,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        match (&self.bucket, &self.resource) {
            (Some(b), Some(r)) => write!(f, " on s3://{b}/{r}")?,
            (Some(b), None) => write!(f, " on s3://{b}")?,
            (None, Some(r)) => write!(f, " on {r}")?,
            (None, None) => {}
        }
        match (&self.code, self.status) {
            (Some(code), Some(status)) => write!(f, ": {code} (HTTP {status})")?,
            (Some(code), None) => write!(f, ": {code}")?,
            (None, Some(status)) => write!(f, ": HTTP {status}")?,
            (None, None) => {}
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl AwsError {
    /// Classifies an SDK error.
    pub fn from_sdk<E, R>(
        operation: &'static str,
        bucket: Option<&str>,
        resource: Option<&str>,
        err: &SdkError<E, R>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: HasStatus + std::fmt::Debug,
    {
        let (code, message, status) = match err {
            SdkError::ServiceError(service) => (
                service.err().code().map(str::to_string),
                service.err().message().map(str::to_string),
                Some(service.raw().status_u16()),
            ),
            SdkError::ResponseError(response) => (None, None, Some(response.raw().status_u16())),
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => (None, Some(error_chain(err)), None),
            _ => (None, Some(error_chain(err)), None),
        };
        // Credential loading happens while dispatching: its failures arrive as dispatch or
        // construction failures, and must not read as "endpoint unreachable".
        let credentials_failed = || error_chain(err).to_ascii_lowercase().contains("credential");
        let kind = match err {
            SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) if credentials_failed() => {
                AwsErrorKind::Credentials
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AwsErrorKind::Network,
            SdkError::ConstructionFailure(_) => AwsErrorKind::Other,
            _ => classify(code.as_deref(), message.as_deref(), status),
        };
        AwsError {
            operation,
            bucket: bucket.map(str::to_string),
            resource: resource.map(str::to_string),
            kind,
            code,
            message,
            status,
        }
    }

    /// The KMS key ARN named in the error message, if any (`... on resource: arn:aws:kms:...`,
    /// `arn:aws:kms:... is disabled.`).
    pub fn kms_key_arn_in_message(&self) -> Option<String> {
        let message = self.message.as_deref()?;
        // The message may name the principal's ARN first: take the first KMS ARN.
        message
            .match_indices("arn:")
            .map(|(start, _)| {
                message[start..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\'' && *c != '"')
                    .collect::<String>()
                    .trim_end_matches(['.', ',', ';'])
                    .to_string()
            })
            .find(|candidate| candidate.split(':').nth(2) == Some("kms"))
    }

    /// The principal named in an AccessDenied message (`User: <arn> is not authorized ...`).
    pub fn principal_in_message(&self) -> Option<String> {
        let message = self.message.as_deref()?;
        let rest = message.split_once("User: ")?.1;
        let principal = rest.split_whitespace().next()?;
        principal.starts_with("arn:").then(|| principal.to_string())
    }
}

/// Maps an error code, message and status to a kind.
pub fn classify(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> AwsErrorKind {
    let message_lower = message.unwrap_or_default().to_ascii_lowercase();
    match code {
        Some("KMS.DisabledException" | "DisabledException") => AwsErrorKind::KmsKeyDisabled,
        Some("KMS.KMSInvalidStateException" | "KMSInvalidStateException") => {
            if message_lower.contains("pending deletion") {
                AwsErrorKind::KmsKeyPendingDeletion
            } else {
                AwsErrorKind::KmsKeyInvalidState
            }
        }
        Some("KMS.NotFoundException" | "NotFoundException") => AwsErrorKind::KmsKeyNotFound,
        Some("KMS.AccessDeniedException" | "AccessDeniedException") => AwsErrorKind::KmsAccessDenied,
        Some("AccessDenied") => {
            if message_lower.contains("kms:") {
                AwsErrorKind::KmsAccessDenied
            } else if message_lower.contains("customer provided keys") {
                AwsErrorKind::SseCKeyMismatch
            } else {
                AwsErrorKind::AccessDenied
            }
        }
        Some("NoSuchKey" | "NotFound") => AwsErrorKind::NotFound,
        Some("NoSuchBucket") => AwsErrorKind::NoSuchBucket,
        Some("InvalidRange") => AwsErrorKind::InvalidRange,
        Some("InvalidRequest") if message_lower.contains("server side encryption") => {
            AwsErrorKind::SseCKeyRequired
        }
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequestsException"
            | "KMS.ThrottlingException",
        ) => AwsErrorKind::Throttled,
        Some(
            "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "UnrecognizedClientException",
        ) => AwsErrorKind::Credentials,
        Some(_) => AwsErrorKind::Other,
        // HEAD responses have no body: only the status is left.
        None => match status {
            Some(403) => AwsErrorKind::AccessDenied,
            Some(404) => AwsErrorKind::NotFound,
            Some(416) => AwsErrorKind::InvalidRange,
            Some(429 | 503) => AwsErrorKind::Throttled,
            _ => AwsErrorKind::Other,
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Access to the HTTP status of a raw response, whatever its type.
pub trait HasStatus {
    /// The HTTP status code.
    fn status_u16(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_codes_classify() {
        let cases: &[(Option<&str>, &str, Option<u16>, AwsErrorKind)] = &[
            (
                Some("KMS.DisabledException"),
                "arn:aws:kms:us-east-1:1:key/k is disabled.",
                Some(400),
                AwsErrorKind::KmsKeyDisabled,
            ),
            (
                Some("KMS.KMSInvalidStateException"),
                "arn:aws:kms:us-east-1:1:key/k is pending deletion.",
                Some(400),
                AwsErrorKind::KmsKeyPendingDeletion,
            ),
            (Some("KMS.NotFoundException"), "Invalid keyId 'x'", Some(400), AwsErrorKind::KmsKeyNotFound),
            (
                Some("AccessDenied"),
                "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:1:key/k because no identity-based policy allows the kms:Decrypt action",
                Some(403),
                AwsErrorKind::KmsAccessDenied,
            ),
            (Some("AccessDenied"), "Access Denied", Some(403), AwsErrorKind::AccessDenied),
            (
                Some("AccessDenied"),
                "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key.",
                Some(403),
                AwsErrorKind::SseCKeyMismatch,
            ),
            (
                Some("InvalidRequest"),
                "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
                Some(400),
                AwsErrorKind::SseCKeyRequired,
            ),
            (Some("NoSuchKey"), "The specified key does not exist.", Some(404), AwsErrorKind::NotFound),
            (
                Some("NoSuchBucket"),
                "The specified bucket does not exist",
                Some(404),
                AwsErrorKind::NoSuchBucket,
            ),
            (Some("SlowDown"), "Please reduce your request rate.", Some(503), AwsErrorKind::Throttled),
            (Some("InvalidAccessKeyId"), "", Some(403), AwsErrorKind::Credentials),
            (None, "", Some(403), AwsErrorKind::AccessDenied),
            (None, "", Some(404), AwsErrorKind::NotFound),
            (None, "", Some(400), AwsErrorKind::Other),
        ];
        for (code, message, status, want) in cases {
            assert_eq!(classify(*code, Some(message), *status), *want, "{code:?} {message}");
        }
    }

    #[test]
    fn key_and_principal_are_read_from_the_message() {
        let err = AwsError {
            operation: "s3:GetObject",
            bucket: Some("b".into()),
            resource: Some("k".into()),
            kind: AwsErrorKind::KmsAccessDenied,
            code: Some("AccessDenied".into()),
            message: Some("User: arn:aws:sts::111122223333:assumed-role/reader/s is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd because no identity-based policy allows the kms:Decrypt action".into()),
            status: Some(403),
        };
        assert_eq!(
            err.kms_key_arn_in_message().as_deref(),
            Some("arn:aws:kms:us-east-1:111122223333:key/1234abcd")
        );
        assert_eq!(
            err.principal_in_message().as_deref(),
            Some("arn:aws:sts::111122223333:assumed-role/reader/s")
        );
        let disabled = AwsError { message: Some("arn:aws:kms:us-east-1:1:key/k is disabled.".into()), ..err };
        assert_eq!(disabled.kms_key_arn_in_message().as_deref(), Some("arn:aws:kms:us-east-1:1:key/k"));
        assert_eq!(disabled.principal_in_message(), None);
    }
}
