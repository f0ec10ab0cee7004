//! What `check` produces: plain serde types, free of CLI and gRPC types, so the `CheckAccess`
//! RPC can convert them and the CLI can print them as a table or JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::aws::identity::CallerIdentity;

/// The whole outcome of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The service identity as STS sees it (after the role, when one is configured).
    pub identity: Option<CallerIdentity>,
    /// Every probe, in a stable order (identity, then buckets in the order given, then keys).
    pub probes: Vec<ProbeResult>,
    /// Findings: security issues and facts worth an operator's attention.
    pub findings: Vec<Finding>,
    /// Whether extraction, incremental extraction and sampling can work.
    pub readiness: Readiness,
}

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProbeKind {
    /// sts:GetCallerIdentity as the service identity.
    CallerIdentity,
    /// sts:AssumeRole of the connector role with the configured ExternalId.
    RoleAssumption,
    /// sts:AssumeRole of the connector role *without* the ExternalId (must be refused).
    ConfusedDeputy,
    /// s3:ListBucket (one page).
    ListBucket,
    /// s3:GetBucketLocation.
    BucketRegion,
    /// s3:GetEncryptionConfiguration (default type and key).
    BucketEncryption,
    /// kms:DescribeKey on a key seen (state, spec, manager, region).
    DescribeKey,
    /// A 1-byte ranged GET of an object encrypted under a key: kms:Decrypt through S3.
    Decrypt,
    /// A 1-byte ranged GET of an object not under SSE-KMS: s3:GetObject.
    ReadObject,
    /// s3:GetInventoryConfiguration: one result per configuration (or one failure).
    InventoryConfiguration,
    /// s3:ListBucket on the inventory destination (where reports are read).
    InventoryDestination,
    /// kms:GetKeyPolicy on the report key: may s3.amazonaws.com kms:GenerateDataKey?
    InventoryKeyPolicy,
    /// s3:GetBucketPolicy: does the bucket require encryption on upload?
    BucketPolicy,
    /// The sampling user's identity (AssumeRole / AssumeRoleWithWebIdentity + GetCallerIdentity).
    SamplingIdentity,
    /// A 1-byte ranged GET per key as the sampling user.
    SamplingDecrypt,
    /// secretsmanager:GetSecretValue of a secret holding an SSE-C key, as the connector (the
    /// value is never shown).
    SseCKeySecret,
}

impl ProbeKind {
    /// The stable code (same as the JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::CallerIdentity => "CALLER_IDENTITY",
            ProbeKind::RoleAssumption => "ROLE_ASSUMPTION",
            ProbeKind::ConfusedDeputy => "CONFUSED_DEPUTY",
            ProbeKind::ListBucket => "LIST_BUCKET",
            ProbeKind::BucketRegion => "BUCKET_REGION",
            ProbeKind::BucketEncryption => "BUCKET_ENCRYPTION",
            ProbeKind::DescribeKey => "DESCRIBE_KEY",
            ProbeKind::Decrypt => "DECRYPT",
            ProbeKind::ReadObject => "READ_OBJECT",
            ProbeKind::InventoryConfiguration => "INVENTORY_CONFIGURATION",
            ProbeKind::InventoryDestination => "INVENTORY_DESTINATION",
            ProbeKind::InventoryKeyPolicy => "INVENTORY_KEY_POLICY",
            ProbeKind::BucketPolicy => "BUCKET_POLICY",
            ProbeKind::SamplingIdentity => "SAMPLING_IDENTITY",
            ProbeKind::SamplingDecrypt => "SAMPLING_DECRYPT",
            ProbeKind::SseCKeySecret => "SSE_C_KEY_SECRET",
        }
    }
}

/// Outcome of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProbeStatus {
    /// What was probed works.
    Pass,
    /// What was probed does not work (see evidence and remediation).
    Fail,
    /// Not run (not applicable, not permitted to look, or a prerequisite failed).
    Skipped,
}

impl ProbeStatus {
    /// `PASS`, `FAIL`, `SKIPPED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeStatus::Pass => "PASS",
            ProbeStatus::Fail => "FAIL",
            ProbeStatus::Skipped => "SKIPPED",
        }
    }
}

/// What AWS answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// AWS error code (`AccessDenied`, `KMS.DisabledException`, ...), when there was one.
    pub error_code: Option<String>,
    /// The message (AWS's, or why the probe was skipped).
    pub message: String,
    /// HTTP status, when there was a response.
    pub http_status: Option<u16>,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Which probe.
    pub probe: ProbeKind,
    /// What it was about: a bucket name, a key ARN, a role ARN, `sts`.
    pub resource: String,
    /// Pass, fail or skipped.
    pub status: ProbeStatus,
    /// One line for people.
    pub summary: String,
    /// What AWS answered (failures, skips).
    pub evidence: Option<Evidence>,
    /// The bucket concerned, when there is one.
    pub bucket: Option<String>,
    /// The KMS key concerned, when there is one.
    pub key_arn: Option<String>,
    /// Facts the probe learnt (state, key spec, format, ...), by name.
    pub details: BTreeMap<String, String>,
    /// Stable problem code (see docs/problems.md and docs/check.md), for failures.
    pub problem_code: Option<String>,
    /// What to do, in a sentence or two.
    pub remediation_summary: Option<String>,
    /// The IAM / key-policy / trust-policy statement (JSON) that fixes it.
    pub remediation: Option<String>,
}

impl ProbeResult {
    /// A result with only the essentials.
    pub fn new(
        probe: ProbeKind,
        resource: impl Into<String>,
        status: ProbeStatus,
        summary: impl Into<String>,
    ) -> Self {
        ProbeResult {
            probe,
            resource: resource.into(),
            status,
            summary: summary.into(),
            evidence: None,
            bucket: None,
            key_arn: None,
            details: BTreeMap::new(),
            problem_code: None,
            remediation_summary: None,
            remediation: None,
        }
    }

    pub(crate) fn bucket(mut self, bucket: &str) -> Self {
        self.bucket = Some(bucket.to_string());
        self
    }

    pub(crate) fn key(mut self, key_arn: impl Into<String>) -> Self {
        self.key_arn = Some(key_arn.into());
        self
    }

    pub(crate) fn detail(mut self, name: &str, value: impl Into<String>) -> Self {
        self.details.insert(name.to_string(), value.into());
        self
    }

    pub(crate) fn evidence(mut self, evidence: Evidence) -> Self {
        self.evidence = Some(evidence);
        self
    }

    pub(crate) fn problem(mut self, code: &str) -> Self {
        self.problem_code = Some(code.to_string());
        self
    }

    pub(crate) fn remedy(
        mut self,
        summary: impl Into<String>,
        statement: Option<&serde_json::Value>,
    ) -> Self {
        self.remediation_summary = Some(summary.into());
        self.remediation = statement.map(|s| s.to_string());
        self
    }
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingSeverity {
    /// A security weakness (e.g. the role can be assumed without the ExternalId).
    Security,
    /// Something that breaks or will break reads.
    Error,
    /// Works, but not as it should.
    Warning,
    /// A fact about the estate.
    Info,
}

/// Something the operator should know beyond pass/fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable code (docs/check.md).
    pub code: String,
    /// Severity.
    pub severity: FindingSeverity,
    /// What it is about (role ARN, key ARN, bucket).
    pub resource: String,
    /// Buckets concerned (e.g. the buckets that use a disabled key).
    pub buckets: Vec<String>,
    /// One or two sentences.
    pub message: String,
    /// The statement (JSON) that fixes it, if any.
    pub remediation: Option<String>,
}

/// Whether one capability is in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessItem {
    /// False when it could not be checked (e.g. no sampling identity given); `ready` is then false.
    pub checked: bool,
    /// Everything it needs passed.
    pub ready: bool,
    /// Why not (empty when ready).
    pub reasons: Vec<String>,
}

/// Readiness of what the connector does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// Full extraction (list, read, decrypt).
    pub extraction: ReadinessItem,
    /// Incremental extraction from S3 Inventory reports.
    pub incremental: ReadinessItem,
    /// Sampling object contents as a user.
    pub sampling: ReadinessItem,
}
