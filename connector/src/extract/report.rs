//! What extraction produces, before it becomes records on a wire or in a file.

use s3_connector_domain::dataset::{BucketTally, DatasetAggregate};
use s3_connector_domain::encryption::{BucketDefaultEncryption, EncryptionSummary};
use s3_connector_domain::schema::{InferredFile, MergedSchema};

/// Something extraction emits, in order: datasets and problems as they are found, then the
/// bucket once its datasets are out.
#[derive(Debug)]
pub enum ExtractEvent {
    /// A finished dataset.
    Dataset(Box<DatasetReport>),
    /// A problem (the run goes on).
    Problem(Box<Problem>),
    /// A finished bucket.
    Bucket(Box<BucketReport>),
}

/// How a bucket's default encryption was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultEncryptionStatus {
    /// Read with GetBucketEncryption.
    Ok,
    /// No default configured (404 ServerSideEncryptionConfigurationNotFoundError).
    NotConfigured,
    /// GetBucketEncryption was denied.
    AccessDenied,
    /// Another error.
    Error,
}

impl DefaultEncryptionStatus {
    /// Stable name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultEncryptionStatus::Ok => "OK",
            DefaultEncryptionStatus::NotConfigured => "NOT_CONFIGURED",
            DefaultEncryptionStatus::AccessDenied => "ACCESS_DENIED",
            DefaultEncryptionStatus::Error => "ERROR",
        }
    }
}

/// A bucket's default encryption as reported.
#[derive(Debug, Clone)]
pub struct BucketDefault {
    /// The rule, normalised (key ARN resolved when possible); `None` when unknown (denied/error).
    pub encryption: Option<BucketDefaultEncryption>,
    /// The key id as configured on the bucket (may be an alias or bare id).
    pub configured_key_id: Option<String>,
    /// How it was learnt.
    pub status: DefaultEncryptionStatus,
}

/// One file a schema was read from.
#[derive(Debug, Clone)]
pub struct SchemaSourceReport {
    /// Object key.
    pub key: String,
    /// What inference found.
    pub inferred: InferredFile,
    /// Bytes fetched for this file.
    pub bytes_read: u64,
    /// GET requests for this file.
    pub requests: u32,
}

/// A finished dataset.
#[derive(Debug)]
pub struct DatasetReport {
    /// Bucket name.
    pub bucket: String,
    /// Listing aggregate: counts, sizes, partitions.
    pub aggregate: DatasetAggregate,
    /// The merged schema, `None` when no file could be read.
    pub schema: Option<MergedSchema>,
    /// Files the schema came from.
    pub sources: Vec<SchemaSourceReport>,
    /// Encryption summary over the inspected objects.
    pub encryption: EncryptionSummary,
    /// The bucket's default encryption.
    pub bucket_default: BucketDefault,
    /// Problems recorded for this dataset.
    pub problem_count: u64,
}

/// A finished bucket.
#[derive(Debug)]
pub struct BucketReport {
    /// Bucket name.
    pub bucket: String,
    /// Region used.
    pub region: String,
    /// Prefixes the run was limited to.
    pub prefixes: Vec<String>,
    /// Default encryption.
    pub default: BucketDefault,
    /// Listing counts.
    pub tally: BucketTally,
    /// Datasets emitted.
    pub dataset_count: u64,
    /// Problems about the bucket and its datasets.
    pub problem_count: u64,
    /// Listing shards.
    pub listing_shards: u64,
    /// True when the listing completed.
    pub listed: bool,
    /// `s3://<destination>/<manifest key>` of the inventory report read instead of a listing.
    pub inventory_report: Option<String>,
}

/// Severity of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something could not be read.
    Error,
    /// Read, but incomplete.
    Warning,
}

impl Severity {
    /// Stable name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
        }
    }
}

/// How to fix a problem.
#[derive(Debug, Clone)]
pub struct Remediation {
    /// One or two sentences.
    pub summary: String,
    /// The IAM statement that would allow the failed operation.
    pub policy_statement: Option<serde_json::Value>,
}

/// A problem met during extraction.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Stable code (see docs/problems.md).
    pub code: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Human message.
    pub message: String,
    /// Bucket concerned.
    pub bucket: String,
    /// Dataset prefix, for dataset problems.
    pub dataset_prefix: Option<String>,
    /// Object key, when one object is at fault.
    pub key: Option<String>,
    /// KMS key ARN, for KMS problems.
    pub kms_key_arn: Option<String>,
    /// Principal the request ran as.
    pub principal: Option<String>,
    /// Failed operation.
    pub operation: Option<String>,
    /// AWS error code.
    pub aws_error_code: Option<String>,
    /// HTTP status.
    pub http_status: Option<u16>,
    /// How to fix it.
    pub remediation: Option<Remediation>,
}

impl Problem {
    /// A problem with only the essentials set.
    pub fn new(code: &'static str, severity: Severity, bucket: &str, message: impl Into<String>) -> Problem {
        Problem {
            code,
            severity,
            message: message.into(),
            bucket: bucket.to_string(),
            dataset_prefix: None,
            key: None,
            kms_key_arn: None,
            principal: None,
            operation: None,
            aws_error_code: None,
            http_status: None,
            remediation: None,
        }
    }
}
