//! Turning AWS and inference failures into problem records with a fix.

use serde_json::json;

use super::report::{Problem, Remediation, Severity};
use crate::aws::{AwsError, AwsErrorKind};
use crate::cse::CseFailure;

/// Context of an object-level failure.
pub struct ObjectContext<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// Dataset prefix.
    pub dataset_prefix: &'a str,
    /// Object key.
    pub key: &'a str,
    /// Caller ARN, when known.
    pub principal: Option<&'a str>,
    /// The KMS key the object is known to use (from a HEAD), when known.
    pub known_kms_key: Option<&'a str>,
    /// Region, for policy conditions.
    pub region: &'a str,
}

fn object_arn(bucket: &str, key_or_prefix: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key_or_prefix}")
}

/// The statement that grants kms:Decrypt on a key for reads through S3.
pub fn kms_decrypt_statement(key_arn: &str, region: &str) -> serde_json::Value {
    json!({
        "Sid": "AllowDecryptThroughS3",
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": key_arn,
        "Condition": {"StringEquals": {"kms:ViaService": format!("s3.{region}.amazonaws.com")}}
    })
}

/// A problem for a failed object read (GET or HEAD).
pub fn object_problem(err: &AwsError, ctx: &ObjectContext<'_>) -> Problem {
    let key_arn = err.kms_key_arn_in_message().or_else(|| ctx.known_kms_key.map(str::to_string));
    let principal = err.principal_in_message().or_else(|| ctx.principal.map(str::to_string));
    let who = principal.as_deref().unwrap_or("the connector's identity");
    let (code, severity, message, remediation) = match err.kind {
        AwsErrorKind::KmsAccessDenied => {
            let key = key_arn.as_deref().unwrap_or("the object's KMS key");
            (
                "KMS_ACCESS_DENIED",
                Severity::Error,
                format!("{who} may not kms:Decrypt with {key}, so S3 cannot decrypt s3://{}/{}", ctx.bucket, ctx.key),
                Some(Remediation {
                    summary: format!("Allow kms:Decrypt on {key} for {who} (identity policy), and make sure the key policy does not deny it."),
                    policy_statement: key_arn.as_deref().map(|k| kms_decrypt_statement(k, ctx.region)),
                }),
            )
        }
        AwsErrorKind::KmsKeyDisabled => (
            "KMS_KEY_DISABLED",
            Severity::Error,
            format!("the KMS key {} of s3://{}/{} is disabled", key_arn.as_deref().unwrap_or("(unknown)"), ctx.bucket, ctx.key),
            Some(Remediation {
                summary: "Enable the key (kms:EnableKey) if the data should stay readable; objects under a disabled key cannot be read by anyone.".into(),
                policy_statement: None,
            }),
        ),
        AwsErrorKind::KmsKeyPendingDeletion => (
            "KMS_KEY_PENDING_DELETION",
            Severity::Error,
            format!("the KMS key {} of s3://{}/{} is pending deletion", key_arn.as_deref().unwrap_or("(unknown)"), ctx.bucket, ctx.key),
            Some(Remediation {
                summary: "Cancel the key deletion (kms:CancelKeyDeletion) and re-enable the key, or the objects become unreadable for good when it is deleted.".into(),
                policy_statement: None,
            }),
        ),
        AwsErrorKind::KmsKeyInvalidState => (
            "KMS_KEY_INVALID_STATE",
            Severity::Error,
            format!("the KMS key {} of s3://{}/{} is not usable in its current state", key_arn.as_deref().unwrap_or("(unknown)"), ctx.bucket, ctx.key),
            None,
        ),
        AwsErrorKind::KmsKeyNotFound => (
            "KMS_KEY_NOT_FOUND",
            Severity::Error,
            format!("the KMS key {} of s3://{}/{} does not exist", key_arn.as_deref().unwrap_or("(unknown)"), ctx.bucket, ctx.key),
            Some(Remediation { summary: "The key was deleted or never existed: the object cannot be decrypted.".into(), policy_statement: None }),
        ),
        AwsErrorKind::SseCKeyRequired => (
            "SSE_C_KEY_REQUIRED",
            Severity::Warning,
            format!("s3://{}/{} is encrypted with a customer-provided key (SSE-C) and no key is configured for it", ctx.bucket, ctx.key),
            Some(Remediation {
                summary: "Configure an SSE-C key for this bucket/prefix to read its schema; the object is catalogued without one.".into(),
                policy_statement: None,
            }),
        ),
        AwsErrorKind::SseCKeyMismatch => (
            "SSE_C_KEY_MISMATCH",
            Severity::Error,
            format!("the SSE-C key configured for s3://{}/{} is not the key the object was written with", ctx.bucket, ctx.key),
            None,
        ),
        AwsErrorKind::AccessDenied => (
            "ACCESS_DENIED",
            Severity::Error,
            format!("{who} may not read s3://{}/{}", ctx.bucket, ctx.key),
            Some(Remediation {
                summary: format!("Allow s3:GetObject on the dataset's objects for {who}, and check the bucket policy."),
                policy_statement: Some(json!({
                    "Sid": "AllowReadDataset",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": object_arn(ctx.bucket, &format!("{}*", ctx.dataset_prefix)),
                })),
            }),
        ),
        AwsErrorKind::NotFound => (
            "OBJECT_NOT_FOUND",
            Severity::Warning,
            format!("s3://{}/{} was deleted during the run", ctx.bucket, ctx.key),
            None,
        ),
        AwsErrorKind::Throttled => (
            "THROTTLED",
            Severity::Error,
            format!("reading s3://{}/{} was throttled after the retries", ctx.bucket, ctx.key),
            Some(Remediation { summary: "Lower the concurrency (--inference-concurrency) or raise --max-attempts.".into(), policy_statement: None }),
        ),
        AwsErrorKind::ClientSide(failure) => client_side_problem(failure, err, ctx, key_arn.as_deref(), who),
        _ => ("S3_ERROR", Severity::Error, format!("reading s3://{}/{} failed: {err}", ctx.bucket, ctx.key), None),
    };
    Problem {
        code,
        severity,
        message,
        bucket: ctx.bucket.to_string(),
        dataset_prefix: Some(ctx.dataset_prefix.to_string()),
        key: Some(ctx.key.to_string()),
        kms_key_arn: key_arn,
        principal,
        operation: Some(match err.kind {
            AwsErrorKind::KmsAccessDenied | AwsErrorKind::ClientSide(CseFailure::KmsDecryptDenied) => {
                "kms:Decrypt".to_string()
            }
            _ => err.operation.to_string(),
        }),
        aws_error_code: err.code.clone(),
        http_status: err.status,
        remediation,
    }
}

/// The statement that lets an identity unwrap client-side data keys with a KMS key: the S3
/// Encryption Client calls KMS directly, so there is no `kms:ViaService` condition.
pub fn cse_kms_decrypt_statement(key_arn: &str) -> serde_json::Value {
    json!({
        "Sid": "AllowClientSideDecrypt",
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": key_arn,
    })
}

type ProblemParts = (&'static str, Severity, String, Option<Remediation>);

/// Code, severity, message and fix of a client-side decryption failure.
fn client_side_problem(
    failure: CseFailure,
    err: &AwsError,
    ctx: &ObjectContext<'_>,
    key_arn: Option<&str>,
    who: &str,
) -> ProblemParts {
    let object = format!("s3://{}/{}", ctx.bucket, ctx.key);
    let detail = err.message.as_deref().unwrap_or("");
    let fix = |summary: &str| Some(Remediation { summary: summary.to_string(), policy_statement: None });
    let (severity, message, remediation) = match failure {
        CseFailure::KmsDecryptDenied => {
            let key = key_arn.unwrap_or("the wrapping KMS key");
            (
                Severity::Error,
                format!(
                    "{who} may not kms:Decrypt with {key}, so the client-side encrypted {object} cannot be decrypted"
                ),
                Some(Remediation {
                    summary: format!(
                        "Allow kms:Decrypt on {key} for {who} (identity policy and key policy); the S3 Encryption Client format calls KMS directly, not through S3."
                    ),
                    policy_statement: key_arn.map(cse_kms_decrypt_statement),
                }),
            )
        }
        CseFailure::KmsInvalidCiphertext => (
            Severity::Error,
            format!(
                "KMS could not decrypt the data key of {object} with its stored encryption context: the wrapped key or the context was altered ({detail})"
            ),
            fix("Do not trust this object: its envelope does not match what the writer stored."),
        ),
        CseFailure::NoKey => (
            Severity::Warning,
            format!(
                "{object} is client-side encrypted and no way to unwrap its data key is configured: {detail}"
            ),
            fix(
                "Enable KMS unwrapping (--cse-kms, sampling.cse_kms) or configure the master key for this bucket/prefix (--cse-master-key).",
            ),
        ),
        CseFailure::KeyCommitmentMismatch => (
            Severity::Error,
            format!(
                "the key commitment of {object} does not match its data key: the metadata was tampered with or the key is wrong; nothing was decrypted"
            ),
            fix(
                "Do not trust this object: the V3 key commitment protects against exactly this substitution.",
            ),
        ),
        CseFailure::LegacyDisabled => (
            Severity::Warning,
            format!("{object} uses a legacy S3 Encryption Client format: {detail}"),
            fix(
                "Legacy V1 content (AES-CBC) is unauthenticated; enable it explicitly (--cse-allow-v1, sampling.cse_allow_v1) only for data you trust, and re-encrypt it with V3.",
            ),
        ),
        CseFailure::UnwrapFailed => (
            Severity::Error,
            format!("the data key of {object} could not be unwrapped: {detail}"),
            fix("Check that the master key configured for this bucket/prefix is the one the writer used."),
        ),
        CseFailure::AuthenticationFailed => (
            Severity::Error,
            format!("the client-side encrypted content of {object} did not authenticate: {detail}"),
            fix("The object is truncated, tampered with or was encrypted with another key."),
        ),
        CseFailure::InvalidEnvelope => (
            Severity::Error,
            format!("the S3 Encryption Client metadata of {object} is invalid: {detail}"),
            None,
        ),
        CseFailure::InstructionFileMissing => (
            Severity::Error,
            format!("{object}: {detail}"),
            fix(
                "Restore the .instruction file: it holds the wrapped data key, without it the object cannot be decrypted.",
            ),
        ),
        CseFailure::Unsupported => {
            (Severity::Warning, format!("{object} cannot be decrypted by the connector: {detail}"), None)
        }
    };
    (failure.code(), severity, message, remediation)
}

/// A problem for a bucket that could not be listed.
pub fn listing_problem(err: &AwsError, bucket: &str, prefix: &str, principal: Option<&str>) -> Problem {
    let who = principal.unwrap_or("the connector's identity");
    let (code, message, remediation) = match err.kind {
        AwsErrorKind::NoSuchBucket => {
            ("BUCKET_NOT_FOUND", format!("bucket {bucket} does not exist (or is in another partition)"), None)
        }
        AwsErrorKind::AccessDenied | AwsErrorKind::KmsAccessDenied => (
            "BUCKET_ACCESS_DENIED",
            format!("{who} may not list s3://{bucket}/{prefix}"),
            Some(Remediation {
                summary: format!(
                    "Allow s3:ListBucket on arn:aws:s3:::{bucket} for {who}, and check the bucket policy."
                ),
                policy_statement: Some(json!({
                    "Sid": "AllowListBucket",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": format!("arn:aws:s3:::{bucket}"),
                })),
            }),
        ),
        AwsErrorKind::Throttled => {
            ("THROTTLED", format!("listing s3://{bucket}/{prefix} was throttled after the retries"), None)
        }
        _ => ("LISTING_FAILED", format!("listing s3://{bucket}/{prefix} failed: {err}"), None),
    };
    Problem {
        code,
        severity: Severity::Error,
        message,
        bucket: bucket.to_string(),
        dataset_prefix: None,
        key: (!prefix.is_empty()).then(|| prefix.to_string()),
        kms_key_arn: None,
        principal: principal.map(str::to_string),
        operation: Some(err.operation.to_string()),
        aws_error_code: err.code.clone(),
        http_status: err.status,
        remediation,
    }
}

/// A problem for a bucket whose default encryption could not be read.
pub fn bucket_encryption_problem(err: &AwsError, bucket: &str, principal: Option<&str>) -> Problem {
    let who = principal.unwrap_or("the connector's identity");
    let denied = matches!(err.kind, AwsErrorKind::AccessDenied);
    Problem {
        code: if denied { "BUCKET_ENCRYPTION_ACCESS_DENIED" } else { "BUCKET_ENCRYPTION_UNREADABLE" },
        severity: Severity::Warning,
        message: format!("the default encryption of bucket {bucket} could not be read: {err}"),
        bucket: bucket.to_string(),
        dataset_prefix: None,
        key: None,
        kms_key_arn: None,
        principal: principal.map(str::to_string),
        operation: Some(err.operation.to_string()),
        aws_error_code: err.code.clone(),
        http_status: err.status,
        remediation: denied.then(|| Remediation {
            summary: format!("Allow s3:GetEncryptionConfiguration on arn:aws:s3:::{bucket} for {who}."),
            policy_statement: Some(json!({
                "Sid": "AllowReadBucketEncryption",
                "Effect": "Allow",
                "Action": ["s3:GetEncryptionConfiguration"],
                "Resource": format!("arn:aws:s3:::{bucket}"),
            })),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ObjectContext<'static> {
        ObjectContext {
            bucket: "b",
            dataset_prefix: "sales/",
            key: "sales/x.csv",
            principal: Some("arn:aws:iam::123456789012:user/cataloguer"),
            known_kms_key: Some("arn:aws:kms:us-east-1:123456789012:key/k1"),
            region: "us-east-1",
        }
    }

    fn err(kind: AwsErrorKind, code: &str, message: &str) -> AwsError {
        AwsError {
            operation: "s3:GetObject",
            bucket: Some("b".into()),
            resource: Some("sales/x.csv".into()),
            kind,
            code: Some(code.into()),
            message: Some(message.into()),
            status: Some(403),
        }
    }

    #[test]
    fn kms_denial_names_key_principal_and_fix() {
        let p = object_problem(&err(AwsErrorKind::KmsAccessDenied, "AccessDenied", "Access Denied"), &ctx());
        assert_eq!(p.code, "KMS_ACCESS_DENIED");
        assert_eq!(p.kms_key_arn.as_deref(), Some("arn:aws:kms:us-east-1:123456789012:key/k1"));
        assert_eq!(p.principal.as_deref(), Some("arn:aws:iam::123456789012:user/cataloguer"));
        assert_eq!(p.operation.as_deref(), Some("kms:Decrypt"));
        let statement = p.remediation.unwrap().policy_statement.unwrap();
        assert_eq!(statement["Action"][0], "kms:Decrypt");
        assert_eq!(statement["Resource"], "arn:aws:kms:us-east-1:123456789012:key/k1");
        assert_eq!(statement["Condition"]["StringEquals"]["kms:ViaService"], "s3.us-east-1.amazonaws.com");
    }

    #[test]
    fn access_denied_gives_a_get_object_statement_on_the_dataset() {
        let p = object_problem(&err(AwsErrorKind::AccessDenied, "AccessDenied", "Access Denied"), &ctx());
        assert_eq!(p.code, "ACCESS_DENIED");
        let statement = p.remediation.unwrap().policy_statement.unwrap();
        assert_eq!(statement["Action"][0], "s3:GetObject");
        assert_eq!(statement["Resource"], "arn:aws:s3:::b/sales/*");
    }

    #[test]
    fn listing_denied_gives_a_list_bucket_statement() {
        let mut e = err(AwsErrorKind::AccessDenied, "AccessDenied", "Access Denied");
        e.operation = "s3:ListBucket";
        let p = listing_problem(&e, "b", "", None);
        assert_eq!(p.code, "BUCKET_ACCESS_DENIED");
        let statement = p.remediation.unwrap().policy_statement.unwrap();
        assert_eq!(statement["Action"][0], "s3:ListBucket");
        assert_eq!(statement["Resource"], "arn:aws:s3:::b");
    }
}
