//! What stops an incremental run. Every variant names the report, file or state at fault and
//! has a stable [`IncrementalError::code`]; none of them advances the state.

use s3_connector_domain::inventory::RowError;
use s3_connector_domain::inventory::manifest::ManifestError;
use s3_connector_domain::inventory::snapshot::{BuildError, SnapshotError, StateError};

use crate::aws::{AwsError, AwsErrorKind};

/// Why an incremental run stopped.
#[derive(Debug, thiserror::Error)]
pub enum IncrementalError {
    /// An S3 call failed (permissions, KMS, missing bucket, network). The run stops before the
    /// diff: a file that cannot be read never turns into "removed" objects.
    #[error("{0}")]
    Aws(AwsError),
    /// The source bucket has no inventory configuration to use.
    #[error("s3://{bucket} has no inventory configuration delivering to s3://{destination}")]
    NoConfiguration {
        /// The source bucket.
        bucket: String,
        /// The destination (bucket and prefix).
        destination: String,
    },
    /// Several inventory configurations match: the caller must name one.
    #[error("s3://{bucket} has several inventory configurations for this destination ({ids}); name one")]
    AmbiguousConfiguration {
        /// The source bucket.
        bucket: String,
        /// The matching ids, comma-separated.
        ids: String,
    },
    /// No complete report (manifest.json and manifest.checksum) under the location.
    #[error("no complete inventory report under s3://{bucket}/{folder}")]
    NoReport {
        /// Destination bucket.
        bucket: String,
        /// The configuration's folder.
        folder: String,
    },
    /// The requested report has no manifest.checksum (yet): it is not complete.
    #[error("s3://{bucket}/{key} is missing: the report is not complete (S3 writes the checksum last)")]
    ReportIncomplete {
        /// Destination bucket.
        bucket: String,
        /// The missing key.
        key: String,
    },
    /// A report timestamp that is not `YYYY-MM-DDTHH-MMZ`.
    #[error("report {value:?} is not a YYYY-MM-DDTHH-MMZ folder name")]
    InvalidReportTimestamp {
        /// The value.
        value: String,
    },
    /// The forwarding Lambda's `latest` pointer cannot be used.
    #[error("s3://{bucket}/{key}: invalid latest pointer: {detail}")]
    InvalidPointer {
        /// Destination bucket.
        bucket: String,
        /// The pointer key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// `manifest.json` or its checksum was rejected.
    #[error("s3://{bucket}/{key}: {source}")]
    Manifest {
        /// Destination bucket.
        bucket: String,
        /// The manifest key.
        key: String,
        /// Why.
        source: ManifestError,
    },
    /// The manifest describes another bucket than the one asked for.
    #[error("s3://{bucket}/{key}: the manifest's sourceBucket is {found}, expected {expected}")]
    ManifestSourceMismatch {
        /// Destination bucket.
        bucket: String,
        /// The manifest key.
        key: String,
        /// `sourceBucket` in the manifest.
        found: String,
        /// The source bucket asked for.
        expected: String,
    },
    /// A report file is larger than this run reads.
    #[error("s3://{bucket}/{key} is {size} bytes, more than the {limit} bytes allowed for it")]
    TooLarge {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A data file listed in the manifest does not exist.
    #[error("s3://{bucket}/{key} is listed in the manifest but does not exist")]
    DataFileMissing {
        /// Bucket of the data files.
        bucket: String,
        /// The file.
        key: String,
    },
    /// A data file (or one of its rows) could not be read: checksum, gzip, malformed row.
    #[error("{0}")]
    Row(RowError),
    /// The snapshot could not be built.
    #[error("{0}")]
    Build(BuildError),
    /// The state cannot be read or advanced (includes an older report being refused).
    #[error("{0}")]
    State(StateError),
    /// A snapshot file cannot be read.
    #[error("{0}")]
    Snapshot(SnapshotError),
    /// The state location is unusable (bad URL, temporary directory).
    #[error("state location: {0}")]
    StateLocation(String),
    /// The consumer went away before every record was delivered.
    #[error("the output was closed before every change was delivered")]
    OutputClosed,
    /// Writing or flushing the output failed.
    #[error("the output could not be written: {0}")]
    Output(String),
    /// A bug: an internal task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Stable code of an AWS failure kind.
pub fn aws_code(kind: AwsErrorKind) -> &'static str {
    match kind {
        AwsErrorKind::AccessDenied => "ACCESS_DENIED",
        AwsErrorKind::KmsAccessDenied => "KMS_ACCESS_DENIED",
        AwsErrorKind::NotFound => "OBJECT_NOT_FOUND",
        AwsErrorKind::NoSuchBucket => "BUCKET_NOT_FOUND",
        AwsErrorKind::KmsKeyDisabled => "KMS_KEY_DISABLED",
        AwsErrorKind::KmsKeyPendingDeletion => "KMS_KEY_PENDING_DELETION",
        AwsErrorKind::KmsKeyInvalidState => "KMS_KEY_INVALID_STATE",
        AwsErrorKind::KmsKeyNotFound => "KMS_KEY_NOT_FOUND",
        AwsErrorKind::SseCKeyRequired => "SSE_C_KEY_REQUIRED",
        AwsErrorKind::SseCKeyMismatch => "SSE_C_KEY_MISMATCH",
        AwsErrorKind::Throttled => "THROTTLED",
        AwsErrorKind::Credentials => "NO_CREDENTIALS",
        AwsErrorKind::Network => "NETWORK_ERROR",
        AwsErrorKind::ClientSide(failure) => failure.code(),
        AwsErrorKind::InvalidRange | AwsErrorKind::Other => "S3_ERROR",
    }
}

impl IncrementalError {
    /// Stable code for messages, records and gRPC `ErrorInfo.reason`.
    pub fn code(&self) -> &'static str {
        match self {
            IncrementalError::Aws(e) => aws_code(e.kind),
            IncrementalError::NoConfiguration { .. } => "INVENTORY_NOT_CONFIGURED",
            IncrementalError::AmbiguousConfiguration { .. } => "INVENTORY_CONFIGURATION_AMBIGUOUS",
            IncrementalError::NoReport { .. } => "INVENTORY_NO_REPORT",
            IncrementalError::ReportIncomplete { .. } => "INVENTORY_REPORT_INCOMPLETE",
            IncrementalError::InvalidReportTimestamp { .. } => "INVENTORY_BAD_REPORT_TIMESTAMP",
            IncrementalError::InvalidPointer { .. } => "INVENTORY_INVALID_POINTER",
            IncrementalError::Manifest { source, .. } => source.code(),
            IncrementalError::ManifestSourceMismatch { .. } => "MANIFEST_SOURCE_MISMATCH",
            IncrementalError::TooLarge { .. } => "INVENTORY_FILE_TOO_LARGE",
            IncrementalError::DataFileMissing { .. } => "INVENTORY_FILE_MISSING",
            IncrementalError::Row(e) => e.code(),
            IncrementalError::Build(e) => e.code(),
            IncrementalError::State(e) => e.code(),
            IncrementalError::Snapshot(e) => e.code(),
            IncrementalError::StateLocation(_) => "STATE_LOCATION_INVALID",
            IncrementalError::OutputClosed => "OUTPUT_CLOSED",
            IncrementalError::Output(_) => "OUTPUT_FAILED",
            IncrementalError::Internal(_) => "INTERNAL",
        }
    }
}

impl From<StateError> for IncrementalError {
    fn from(e: StateError) -> Self {
        IncrementalError::State(e)
    }
}

impl From<SnapshotError> for IncrementalError {
    fn from(e: SnapshotError) -> Self {
        IncrementalError::Snapshot(e)
    }
}

impl From<BuildError> for IncrementalError {
    fn from(e: BuildError) -> Self {
        IncrementalError::Build(e)
    }
}

impl From<RowError> for IncrementalError {
    fn from(e: RowError) -> Self {
        IncrementalError::Row(e)
    }
}
