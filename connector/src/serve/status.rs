//! Errors of the gRPC service and the one table that maps them to gRPC status codes.
//!
//! Every status carries a `google.rpc.ErrorInfo` (reason = stable code, domain
//! `s3-connector`, metadata `field` / `resource` / `kms_key_arn` when known); invalid arguments
//! also carry a `google.rpc.BadRequest` naming the field.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::aws::ConfigError;
use crate::extract::ExtractError;

/// ErrorInfo domain of every status.
pub const ERROR_DOMAIN: &str = "s3-connector";

/// Why a call failed (problems met during a stream are records, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request field is missing or malformed.
    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument {
        /// Field path in the request, e.g. `connection.role_arn`, `scope.targets[1]`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The request names an endpoint the server does not allow.
    #[error("endpoint '{endpoint}' is not allowed by this server (connection.allowed_endpoints)")]
    EndpointNotAllowed {
        /// The endpoint.
        endpoint: String,
    },
    /// Too many extractions at once.
    #[error("{running} extractions are running, the configured maximum; retry later")]
    Busy {
        /// The limit.
        running: u32,
    },
    /// Too many samples at once.
    #[error("{running} samples are running, the configured maximum (sampling.max_concurrent); retry later")]
    TooManySamples {
        /// The limit.
        running: u32,
    },
    /// A sample did not finish within the server's time budget; its S3 work was stopped.
    #[error(
        "the sample did not finish within the sampling time budget of {budget_ms} ms (sampling.time_budget_ms); its reads were stopped"
    )]
    SampleTimeBudget {
        /// The budget.
        budget_ms: u64,
    },
    /// The server has no usable AWS credentials (its identity, or the role it must assume).
    #[error("{0}")]
    NoCredentials(String),
    /// AWS (or the configured endpoint) cannot be reached.
    #[error("{0}")]
    AwsUnreachable(String),
    /// The client went away.
    #[error("the client cancelled the call")]
    Cancelled,
    /// The client's deadline passed.
    #[error("the deadline passed before the extraction finished")]
    DeadlineExceeded,
    /// The server is shutting down.
    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,
    /// An incremental run stopped (bad report, unreadable file, older report, state): `code`
    /// is the engine's stable code (`docs/problems.md`).
    #[error("{message}")]
    Incremental {
        /// Stable code, e.g. `MANIFEST_CHECKSUM_MISMATCH`, `STATE_OLDER_REPORT`.
        code: &'static str,
        /// What happened, naming the report, file or state.
        message: String,
    },
    /// The RPC is defined in the contract but its engine is not in this build.
    #[error("{rpc} is not implemented by this server version")]
    Unimplemented {
        /// RPC name.
        rpc: &'static str,
    },
    /// The sample could not be read (a denial, a key state, an unreadable file): the problem
    /// code says which; the gRPC code follows [`sample_grpc_code`].
    #[error("{message}")]
    Sample {
        /// Problem code (docs/problems.md), e.g. KMS_ACCESS_DENIED.
        code: &'static str,
        /// Explanation (never sample data).
        message: String,
        /// The object or prefix.
        resource: String,
        /// The KMS key concerned, when known.
        kms_key_arn: Option<String>,
        /// The user principal the read ran as, when known.
        principal: Option<String>,
    },
    /// The user identity of a sample cannot be used (role not assumable, token rejected).
    #[error("{message}")]
    UserIdentity {
        /// Stable code of the STS failure, e.g. ROLE_NOT_TRUSTED.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// gRPC code of a sample failure, by problem code: denials are PERMISSION_DENIED, unusable keys
/// and encryption the caller cannot undo are FAILED_PRECONDITION, missing things NOT_FOUND.
pub fn sample_grpc_code(problem_code: &str) -> Code {
    match problem_code {
        "KMS_ACCESS_DENIED" | "ACCESS_DENIED" | "BUCKET_ACCESS_DENIED" | "CSE_KMS_DECRYPT_DENIED" => {
            Code::PermissionDenied
        }
        "CSE_INSTRUCTION_FILE_MISSING" => Code::NotFound,
        "CSE_KEY_COMMITMENT_MISMATCH" | "CSE_AUTHENTICATION_FAILED" | "CSE_KMS_INVALID_CIPHERTEXT" => {
            Code::DataLoss
        }
        "OBJECT_NOT_FOUND" | "BUCKET_NOT_FOUND" | "NO_DATA_FILES" | "KMS_KEY_NOT_FOUND" => Code::NotFound,
        "THROTTLED" | "S3_ERROR" | "NETWORK_ERROR" => Code::Unavailable,
        "SAMPLE_UNKNOWN_COLUMN" => Code::InvalidArgument,
        "INTERNAL_ERROR" => Code::Internal,
        // KMS_KEY_DISABLED, KMS_KEY_PENDING_DELETION, SSE_C_KEY_REQUIRED, CLIENT_SIDE_ENCRYPTED,
        // CSE_NO_KEY, CSE_LEGACY_V1_DISABLED, CSE_UNWRAP_FAILED, CSE_INVALID_ENVELOPE,
        // CSE_UNSUPPORTED, and files that cannot be read as their format.
        _ => Code::FailedPrecondition,
    }
}

impl ServiceError {
    /// An invalid-argument error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    /// The table: gRPC code and stable reason of every error.
    pub fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            ServiceError::InvalidArgument { .. } => (Code::InvalidArgument, "INVALID_ARGUMENT"),
            ServiceError::EndpointNotAllowed { .. } => (Code::PermissionDenied, "ENDPOINT_NOT_ALLOWED"),
            ServiceError::Busy { .. } => (Code::ResourceExhausted, "TOO_MANY_EXTRACTIONS"),
            ServiceError::TooManySamples { .. } => (Code::ResourceExhausted, "TOO_MANY_SAMPLES"),
            ServiceError::SampleTimeBudget { .. } => (Code::DeadlineExceeded, "SAMPLE_TIME_BUDGET_EXCEEDED"),
            ServiceError::NoCredentials(_) => (Code::FailedPrecondition, "NO_CREDENTIALS"),
            ServiceError::AwsUnreachable(_) => (Code::Unavailable, "AWS_UNREACHABLE"),
            ServiceError::Cancelled => (Code::Cancelled, "CANCELLED"),
            ServiceError::DeadlineExceeded => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
            ServiceError::ShuttingDown => (Code::Unavailable, "SHUTTING_DOWN"),
            ServiceError::Unimplemented { .. } => (Code::Unimplemented, "UNIMPLEMENTED"),
            ServiceError::Sample { code, .. } => (sample_grpc_code(code), code),
            ServiceError::Incremental { code, .. } => (incremental_grpc_code(code), code),
            ServiceError::UserIdentity { code, .. } => (Code::PermissionDenied, code),
            ServiceError::Internal(_) => (Code::Internal, "INTERNAL"),
        }
    }

    /// The status with its details.
    pub fn into_status(self) -> Status {
        let (code, reason) = self.code_and_reason();
        let mut metadata = HashMap::new();
        let mut details = ErrorDetails::new();
        match &self {
            ServiceError::InvalidArgument { field, reason } => {
                metadata.insert("field".to_string(), field.clone());
                details.add_bad_request_violation(field.clone(), reason.clone());
            }
            ServiceError::EndpointNotAllowed { .. } => {
                metadata.insert("field".to_string(), "connection.endpoint_url".to_string());
            }
            ServiceError::Sample { resource, kms_key_arn, principal, .. } => {
                metadata.insert("resource".to_string(), resource.clone());
                if let Some(arn) = kms_key_arn {
                    metadata.insert("kms_key_arn".to_string(), arn.clone());
                }
                if let Some(p) = principal {
                    metadata.insert("principal".to_string(), p.clone());
                }
            }
            _ => {}
        }
        details.set_error_info(reason, ERROR_DOMAIN, metadata);
        Status::with_error_details(code, self.to_string(), details)
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        e.into_status()
    }
}

/// Connection settings errors name the request field at fault.
pub fn from_config_error(e: ConfigError) -> ServiceError {
    let field = match &e {
        ConfigError::SessionDuration { .. } => "connection.session_duration_seconds",
        ConfigError::RoleArn { .. } => "connection.role_arn",
        ConfigError::ExternalId => "connection.external_id",
        ConfigError::SessionName { .. } => "connection.session_name",
        ConfigError::EndpointUrl { .. } => "connection.endpoint_url",
    };
    ServiceError::invalid(field, e.to_string())
}

/// The gRPC code of an incremental run's error code.
pub fn incremental_grpc_code(code: &str) -> Code {
    match code {
        "ACCESS_DENIED" | "KMS_ACCESS_DENIED" | "BUCKET_ACCESS_DENIED" => Code::PermissionDenied,
        "INVENTORY_NOT_CONFIGURED"
        | "INVENTORY_NO_REPORT"
        | "INVENTORY_FILE_MISSING"
        | "BUCKET_NOT_FOUND"
        | "OBJECT_NOT_FOUND"
        | "KMS_KEY_NOT_FOUND" => Code::NotFound,
        "INVENTORY_CONFIGURATION_AMBIGUOUS" | "INVENTORY_BAD_REPORT_TIMESTAMP" | "STATE_LOCATION_INVALID" => {
            Code::InvalidArgument
        }
        "THROTTLED" | "NETWORK_ERROR" | "S3_ERROR" => Code::Unavailable,
        "OUTPUT_CLOSED" => Code::Cancelled,
        "INTERNAL" => Code::Internal,
        // Report content that fails its checksum or cannot be decoded.
        c if c.ends_with("CHECKSUM_MISMATCH")
            || c.starts_with("MANIFEST_")
            || c.starts_with("SNAPSHOT_")
            || matches!(
                c,
                "INVENTORY_DECOMPRESSION_FAILED"
                    | "INVENTORY_MALFORMED_ROW"
                    | "INVENTORY_INVALID_VALUE"
                    | "INVENTORY_UNREADABLE_FILE"
                    | "INVENTORY_MISSING_COLUMN"
            ) =>
        {
            Code::DataLoss
        }
        // Older report, report still in delivery, key states, size limits, state problems.
        _ => Code::FailedPrecondition,
    }
}

/// Errors that stop an incremental run.
pub fn from_incremental_error(e: crate::incremental::IncrementalError) -> ServiceError {
    use crate::incremental::IncrementalError;
    match e {
        IncrementalError::Aws(aws) if aws.kind == crate::aws::AwsErrorKind::Credentials => {
            ServiceError::NoCredentials(aws.to_string())
        }
        IncrementalError::OutputClosed => ServiceError::Cancelled,
        IncrementalError::Internal(reason) => ServiceError::Internal(reason),
        e => ServiceError::Incremental { code: e.code(), message: e.to_string() },
    }
}

/// Errors that stop an extraction.
pub fn from_extract_error(e: ExtractError) -> ServiceError {
    match e {
        ExtractError::Glob { glob, reason } => {
            ServiceError::invalid("scope.include/scope.exclude", format!("invalid glob '{glob}': {reason}"))
        }
        ExtractError::Template(reason) => ServiceError::invalid("scope.templates", reason),
        ExtractError::NoBuckets => ServiceError::invalid("scope.targets", "at least one bucket is required"),
        e @ ExtractError::Credentials(_) => ServiceError::NoCredentials(e.to_string()),
        e @ ExtractError::Network(_) => ServiceError::AwsUnreachable(e.to_string()),
        ExtractError::OutputClosed => ServiceError::Cancelled,
        ExtractError::Internal(reason) => ServiceError::Internal(reason),
        // The inventory report's errors are those of ExtractIncremental.
        ExtractError::Inventory(e) => from_incremental_error(*e),
        ExtractError::InventoryScope(reason) => ServiceError::invalid("scope.targets", reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_arguments_name_the_field_in_message_and_details() {
        let status = ServiceError::invalid("connection.role_arn", "not a role ARN").into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("connection.role_arn"));
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "INVALID_ARGUMENT");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata.get("field").map(String::as_str), Some("connection.role_arn"));
        let bad = details.bad_request().expect("bad request");
        assert_eq!(bad.field_violations[0].field, "connection.role_arn");
    }

    #[test]
    fn every_error_has_a_distinct_reason() {
        let all = [
            ServiceError::invalid("f", "r"),
            ServiceError::EndpointNotAllowed { endpoint: "http://x".into() },
            ServiceError::Busy { running: 1 },
            ServiceError::TooManySamples { running: 1 },
            ServiceError::SampleTimeBudget { budget_ms: 1 },
            ServiceError::NoCredentials("x".into()),
            ServiceError::AwsUnreachable("x".into()),
            ServiceError::Cancelled,
            ServiceError::DeadlineExceeded,
            ServiceError::ShuttingDown,
            ServiceError::Unimplemented { rpc: "X" },
            ServiceError::Internal("x".into()),
            ServiceError::Incremental { code: "STATE_OLDER_REPORT", message: "x".into() },
        ];
        assert_eq!(incremental_grpc_code("STATE_OLDER_REPORT"), Code::FailedPrecondition);
        assert_eq!(incremental_grpc_code("INVENTORY_CHECKSUM_MISMATCH"), Code::DataLoss);
        assert_eq!(incremental_grpc_code("MANIFEST_CHECKSUM_MISMATCH"), Code::DataLoss);
        assert_eq!(incremental_grpc_code("KMS_ACCESS_DENIED"), Code::PermissionDenied);
        assert_eq!(incremental_grpc_code("INVENTORY_FILE_MISSING"), Code::NotFound);
        assert_eq!(sample_grpc_code("KMS_ACCESS_DENIED"), Code::PermissionDenied);
        assert_eq!(sample_grpc_code("KMS_KEY_DISABLED"), Code::FailedPrecondition);
        assert_eq!(sample_grpc_code("OBJECT_NOT_FOUND"), Code::NotFound);
        let mut reasons: Vec<&str> = all.iter().map(|e| e.code_and_reason().1).collect();
        reasons.sort();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(ServiceError::Busy { running: 1 }.into_status().code(), Code::ResourceExhausted);
        assert_eq!(ServiceError::TooManySamples { running: 1 }.into_status().code(), Code::ResourceExhausted);
        let status = ServiceError::SampleTimeBudget { budget_ms: 250 }.into_status();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("250 ms"), "{}", status.message());
    }

    #[test]
    fn config_errors_map_to_request_fields() {
        let e = from_config_error(ConfigError::ExternalId);
        assert!(
            matches!(e, ServiceError::InvalidArgument { ref field, .. } if field == "connection.external_id")
        );
    }
}
