//! Why a [`PolicySetup`](super::PolicySetup) was refused.

/// A setup field that cannot produce a correct policy. Every variant names the field with its
/// path in the setup (for example `source_buckets[1].kms_key_arn`) so the CLI can point at it.
///
/// The external ID is never echoed: only its length or the position of a bad character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The account id is not exactly 12 ASCII digits.
    #[error("{field}: account id {value:?} must be exactly 12 digits")]
    InvalidAccountId {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
    },
    /// The partition is not one whose endpoints and service principals we generate for.
    #[error("{field}: partition {value:?} is not supported (supported: {supported})")]
    UnsupportedPartition {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
        /// The supported partitions, comma-separated.
        supported: &'static str,
    },
    /// The region is not of the form `us-east-1`.
    #[error("{field}: region {value:?} is not a region code such as `us-east-1`")]
    InvalidRegion {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
    },
    /// The region belongs to another partition than the one given.
    #[error("{field}: region {region:?} is not in partition {partition:?}")]
    RegionNotInPartition {
        /// Path of the field in the setup.
        field: String,
        /// The region given.
        region: String,
        /// The partition given.
        partition: String,
    },
    /// A bucket name breaks the S3 naming rules.
    #[error("{field}: bucket name {value:?} is invalid: {reason}")]
    InvalidBucketName {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The same bucket is listed twice.
    #[error("{field}: bucket {value:?} is listed more than once")]
    DuplicateBucket {
        /// Path of the field in the setup.
        field: String,
        /// The bucket name.
        value: String,
    },
    /// No source bucket: there is nothing to grant.
    #[error("{field}: at least one source bucket is required")]
    NoSourceBuckets {
        /// Path of the field in the setup.
        field: String,
    },
    /// A KMS alias (ARN or name) where a key ARN is needed.
    #[error(
        "{field}: {value:?} is a KMS alias; key policies and IAM resources match key ARNs only, \
         so give the key ARN (`aws kms describe-key --key-id <alias>` prints it)"
    )]
    KeyAliasNotAllowed {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
    },
    /// A KMS key ARN that is malformed.
    #[error(
        "{field}: {value:?} is not a KMS key ARN `arn:<partition>:kms:<region>:<account>:key/<id>`: {reason}"
    )]
    InvalidKeyArn {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A KMS key in another region than the buckets: S3 cannot use it for SSE-KMS.
    #[error(
        "{field}: key {key_arn} is in region {key_region:?} but the buckets are in {region:?}; S3 only uses keys of its own region"
    )]
    KeyRegionMismatch {
        /// Path of the field in the setup.
        field: String,
        /// The key ARN.
        key_arn: String,
        /// The key's region.
        key_region: String,
        /// The setup's region.
        region: String,
    },
    /// An ARN in another partition than the setup's.
    #[error("{field}: {value:?} is in partition {arn_partition:?}, the setup is in {partition:?}")]
    PartitionMismatch {
        /// Path of the field in the setup.
        field: String,
        /// The ARN given.
        value: String,
        /// The ARN's partition.
        arn_partition: String,
        /// The setup's partition.
        partition: String,
    },
    /// A Secrets Manager secret ARN that is malformed.
    #[error(
        "{field}: {value:?} is not a Secrets Manager secret ARN `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`: {reason}"
    )]
    InvalidSecretArn {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An IAM role ARN that is malformed.
    #[error(
        "{field}: {value:?} is not an IAM role ARN `arn:<partition>:iam::<account>:role/<name>`: {reason}"
    )]
    InvalidRoleArn {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An IAM role name (or Lambda function name) that is malformed.
    #[error("{field}: name {value:?} is invalid: {reason}")]
    InvalidName {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The trusted principal is neither an account id, an account root ARN nor a role ARN.
    #[error(
        "{field}: {value:?} must be a 12-digit account id, `arn:<partition>:iam::<account>:root` or a role ARN"
    )]
    InvalidTrustedPrincipal {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
    },
    /// The external ID breaks the STS rules (the value itself is not repeated).
    #[error("{field}: external ID {reason} (2 to 1224 characters of `A-Za-z0-9_+=,.@:/-`)")]
    InvalidExternalId {
        /// Path of the field in the setup.
        field: String,
        /// What is wrong, without the value.
        reason: String,
    },
    /// A key prefix that cannot be put in an IAM resource.
    #[error("{field}: prefix {value:?} is invalid: {reason}")]
    InvalidPrefix {
        /// Path of the field in the setup.
        field: String,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The same principal is listed twice.
    #[error("{field}: principal {value:?} is listed more than once")]
    DuplicatePrincipal {
        /// Path of the field in the setup.
        field: String,
        /// The principal ARN.
        value: String,
    },
    /// The forwarding Lambda reads inventory reports, so an inventory must be described.
    #[error("{field}: the forwarding Lambda reads inventory reports; describe `inventory` too")]
    LambdaWithoutInventory {
        /// Path of the field in the setup.
        field: String,
    },
}

impl PolicyError {
    /// Stable code for records, exit messages and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::InvalidAccountId { .. } => "POLICY_INVALID_ACCOUNT_ID",
            PolicyError::UnsupportedPartition { .. } => "POLICY_UNSUPPORTED_PARTITION",
            PolicyError::InvalidRegion { .. } => "POLICY_INVALID_REGION",
            PolicyError::RegionNotInPartition { .. } => "POLICY_REGION_NOT_IN_PARTITION",
            PolicyError::InvalidBucketName { .. } => "POLICY_INVALID_BUCKET_NAME",
            PolicyError::DuplicateBucket { .. } => "POLICY_DUPLICATE_BUCKET",
            PolicyError::NoSourceBuckets { .. } => "POLICY_NO_SOURCE_BUCKETS",
            PolicyError::KeyAliasNotAllowed { .. } => "POLICY_KEY_ALIAS_NOT_ALLOWED",
            PolicyError::InvalidKeyArn { .. } => "POLICY_INVALID_KEY_ARN",
            PolicyError::KeyRegionMismatch { .. } => "POLICY_KEY_REGION_MISMATCH",
            PolicyError::PartitionMismatch { .. } => "POLICY_PARTITION_MISMATCH",
            PolicyError::InvalidRoleArn { .. } => "POLICY_INVALID_ROLE_ARN",
            PolicyError::InvalidSecretArn { .. } => "POLICY_INVALID_SECRET_ARN",
            PolicyError::InvalidName { .. } => "POLICY_INVALID_NAME",
            PolicyError::InvalidTrustedPrincipal { .. } => "POLICY_INVALID_TRUSTED_PRINCIPAL",
            PolicyError::InvalidExternalId { .. } => "POLICY_INVALID_EXTERNAL_ID",
            PolicyError::InvalidPrefix { .. } => "POLICY_INVALID_PREFIX",
            PolicyError::DuplicatePrincipal { .. } => "POLICY_DUPLICATE_PRINCIPAL",
            PolicyError::LambdaWithoutInventory { .. } => "POLICY_LAMBDA_WITHOUT_INVENTORY",
        }
    }

    /// Path of the offending field in the setup, e.g. `source_buckets[1].kms_key_arn`.
    pub fn field(&self) -> &str {
        match self {
            PolicyError::InvalidAccountId { field, .. }
            | PolicyError::UnsupportedPartition { field, .. }
            | PolicyError::InvalidRegion { field, .. }
            | PolicyError::RegionNotInPartition { field, .. }
            | PolicyError::InvalidBucketName { field, .. }
            | PolicyError::DuplicateBucket { field, .. }
            | PolicyError::NoSourceBuckets { field }
            | PolicyError::KeyAliasNotAllowed { field, .. }
            | PolicyError::InvalidKeyArn { field, .. }
            | PolicyError::KeyRegionMismatch { field, .. }
            | PolicyError::PartitionMismatch { field, .. }
            | PolicyError::InvalidRoleArn { field, .. }
            | PolicyError::InvalidSecretArn { field, .. }
            | PolicyError::InvalidName { field, .. }
            | PolicyError::InvalidTrustedPrincipal { field, .. }
            | PolicyError::InvalidExternalId { field, .. }
            | PolicyError::InvalidPrefix { field, .. }
            | PolicyError::DuplicatePrincipal { field, .. }
            | PolicyError::LambdaWithoutInventory { field } => field,
        }
    }
}
